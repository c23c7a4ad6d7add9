//! `blksnap`: the command-line tool for the blksnap module.
//!
//! Commands and their output follow the tool of the upstream blksnap
//! proposal, so scripts written for it run unchanged: every option has a long
//! and a short form, errors are one line on stderr with exit code 1. The
//! command line itself is defined in [`blksnap::args`]; with `--json` the
//! commands print the objects of [`blksnap::json`] instead of text.
//!
//! Output goes through [`emit`], so that a closed stdout (`| head -1` on
//! `snapshot_watcher`) is an error line and status 1, not a panic.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use blksnap::args::{
    BackupArgs, Cli, Command, MarkDirtyArgs, SnapshotCreateArgs, SnapshotInfoArgs, VerifyArgs,
};
use blksnap::backup::{Observer, Storage};
use blksnap::cancel::Cancel;
use blksnap::in_volume::StorageFile;
use blksnap::progress::Terminal;
use blksnap::{json, Attached, BlockDevice, Control};
use clap::Parser;

/// Writes `text` to stdout and flushes it; `text` ends with a newline.
fn emit(text: &str) -> blksnap::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| blksnap::Error::new("writing to standard output", e))
}

/// Writes the JSON object `object` as one line to stdout.
fn emit_json(object: &str) -> blksnap::Result<()> {
    emit(&format!("{object}\n"))
}

/// Runs the command; `Ok(false)` when a check it made failed (`verify`
/// found a difference), which exits with status 1 without an error line.
fn run(cli: Cli) -> blksnap::Result<bool> {
    let as_json = cli.json;
    match cli.command {
        Command::Version => {
            let v = Control::open()?.version()?;
            if as_json {
                emit_json(&json::version(&v))?;
            } else {
                emit(&format!("{}\n", blksnap::format_version(&v)))?;
            }
        }
        Command::Attach(args) => {
            let attached = BlockDevice::open(&args.device)?.attach()?;
            if as_json {
                emit_json(&json::attach(attached))?;
            } else if attached == Attached::Now {
                emit("Attached successfully\n")?;
            } else {
                emit("Already was attached\n")?;
            }
        }
        Command::Detach(args) => BlockDevice::open(&args.device)?.detach()?,
        Command::CbtInfo(args) => {
            let info = BlockDevice::open(&args.device)?.cbt_info()?;
            if as_json {
                emit_json(&json::cbt_info(&info))?;
            } else {
                emit(&blksnap::format_cbt_info(&info))?;
            }
        }
        Command::ReadCbtMap(args) => {
            let map = BlockDevice::open(&args.device)?.read_cbt_map()?;
            write_file(&args.file, &map)?;
        }
        Command::MarkDirtyBlock(args) => mark_dirty_block(args, as_json)?,
        Command::SnapshotCreate(args) => snapshot_create(args, as_json)?,
        Command::SnapshotAdd(args) => {
            BlockDevice::open(&args.device)?.attach_and_add(&args.id)?;
        }
        Command::SnapshotTake(args) => Control::open()?.snapshot_take(&args.id)?,
        Command::SnapshotDestroy(args) => Control::open()?.snapshot_destroy(&args.id)?,
        Command::SnapshotCollect => {
            let ids = Control::open()?.snapshot_collect()?;
            if as_json {
                emit_json(&json::snapshot_collect(&ids))?;
            } else {
                emit(&blksnap::format_collect(&ids))?;
            }
        }
        Command::SnapshotInfo(args) => snapshot_info(args, as_json)?,
        Command::SnapshotWaitEvent(args) => {
            let result = Control::open()?.wait_event(&args.id, args.timeout)?;
            if as_json {
                emit_json(&json::wait_result(&result))?;
            } else {
                emit(&blksnap::format_wait_result(&result))?;
            }
        }
        Command::SnapshotWatcher(args) => snapshot_watcher(args.id, as_json)?,
        Command::Status => {
            let status = blksnap::status::gather()?;
            if as_json {
                emit_json(&blksnap::status::format_json(&status))?;
            } else {
                emit(&blksnap::status::format_text(&status))?;
            }
        }
        Command::Backup(args) => backup(args, as_json)?,
        Command::Verify(args) => return verify(args, as_json),
    }
    Ok(true)
}

/// Returns the error of arguments that do not fit together.
fn invalid(what: &str, why: String) -> blksnap::Error {
    blksnap::Error::new(
        what,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    )
}

/// Runs `backup`: SIGINT, SIGTERM and SIGHUP only stop the copy, so that
/// the snapshot is destroyed before the command exits; prints one line (or
/// with `as_json`, one object) for the devices backed up.
fn backup(args: BackupArgs, as_json: bool) -> blksnap::Result<()> {
    let targets = args
        .targets()
        .map_err(|why| invalid("cannot back up", why))?;
    let cancel = blksnap::cancel::install()
        .map_err(|e| blksnap::Error::new("cannot handle SIGINT and SIGTERM", e))?;
    let control = Control::open()?;
    let mut terminal = Terminal::new(args.quiet);
    let storage = match args.file {
        Some(path) => Storage {
            path,
            limit_sectors: args.limit.unwrap_or_default().sectors(),
            in_volume: None,
        },
        None => {
            let place = blksnap::in_volume::plan_for_backup(&args.device)?;
            terminal.note(&format!(
                "difference storage: {} bytes of in-volume storage in {}, on the file \
                 system of {}",
                place.size,
                place.path.display(),
                place.device.display()
            ));
            Storage {
                path: place.path,
                limit_sectors: 0,
                in_volume: Some(place.size),
            }
        }
    };
    let report = blksnap::backup::backup(
        &control,
        &storage,
        &targets,
        args.incremental,
        cancel,
        &mut terminal,
    )?;
    if as_json {
        emit_json(&json::backup(&report))
    } else {
        emit(&blksnap::backup::format_report(&report))
    }
}

/// Runs `verify`: compares with the image and checks the checksum, as
/// asked; `Ok(false)` if either found a difference.
fn verify(args: VerifyArgs, as_json: bool) -> blksnap::Result<bool> {
    let cancel = Cancel::new();
    let mut terminal = Terminal::new(false);
    let comparison = match &args.image {
        Some(image) => {
            let open = |p: &Path| {
                std::fs::File::open(p)
                    .map_err(|e| blksnap::Error::new(format!("cannot open {}", p.display()), e))
            };
            let mut a = open(&args.file)?;
            let mut b = open(image)?;
            let size = std::io::Seek::seek(&mut a, std::io::SeekFrom::End(0))
                .and_then(|size| std::io::Seek::rewind(&mut a).map(|()| size))
                .map_err(|e| {
                    blksnap::Error::new(format!("cannot read {}", args.file.display()), e)
                })?;
            terminal.start(&format!("comparing with {}", image.display()), size);
            let c = blksnap::verify::compare(&mut a, &mut b, args.max_report, &cancel, &mut |n| {
                terminal.advance(n)
            });
            terminal.finish();
            let c = c.map_err(|e| {
                let path = match e.side {
                    Some(blksnap::verify::Side::B) => image.as_path(),
                    _ => args.file.as_path(),
                };
                blksnap::Error::new(format!("cannot read {}", path.display()), e.source)
            })?;
            Some(c)
        }
        None => None,
    };
    let checksum = if args.checksum {
        let size = std::fs::metadata(&args.file).map_or(0, |m| m.len());
        terminal.start(&format!("checksum of {}", args.file.display()), size);
        let c = blksnap::verify::check_checksum(&args.file, &cancel, &mut |n| terminal.advance(n));
        terminal.finish();
        Some(c?)
    } else {
        None
    };
    if as_json {
        emit_json(&json::verify(
            &args.file,
            comparison.as_ref(),
            checksum.as_ref(),
        ))?;
    } else {
        emit(&blksnap::verify::format_verify(
            comparison.as_ref(),
            checksum.as_ref(),
        ))?;
    }
    let equal = comparison.as_ref().is_none_or(|c| c.equal());
    let sum_ok = checksum.as_ref().is_none_or(|c| c.ok());
    Ok(equal && sum_ok)
}

/// Runs `snapshot_create`: opens the devices first, so that a mistyped one
/// fails before anything is created, then creates the snapshot and adds
/// them; prints the new UUID.
fn snapshot_create(args: SnapshotCreateArgs, as_json: bool) -> blksnap::Result<()> {
    let devices = args
        .device
        .iter()
        .map(BlockDevice::open)
        .collect::<blksnap::Result<Vec<_>>>()?;
    let control = Control::open()?;
    // Removed again when dropped, if the snapshot is not made.
    let made = match args.in_volume_size {
        Some(size) => {
            let minimum = blksnap::in_volume::minimum_bytes();
            if size.bytes() < minimum {
                return Err(invalid(
                    &format!("cannot create in-volume storage {}", args.file.display()),
                    format!(
                        "--in-volume-size {} is below the module's diff_storage_minimum, \
                         {minimum} bytes",
                        size.bytes()
                    ),
                ));
            }
            Some(StorageFile::create(&args.file, size.bytes())?)
        }
        None => None,
    };
    let id = control.snapshot_create_with_devices(&args.file, args.limit.sectors(), &devices)?;
    if let Some(file) = made {
        file.keep();
    }
    if as_json {
        emit_json(&json::snapshot_create(&id))
    } else {
        emit(&blksnap::format_ids(&[id]))
    }
}

/// Runs `snapshot_watcher`: the upstream tool's lines, stopping after a
/// corrupted event; with `as_json`, one object per event until the
/// snapshot is gone.
fn snapshot_watcher(id: blksnap::Uuid, as_json: bool) -> blksnap::Result<()> {
    let control = Control::open()?;
    let mut events = control.events(id);
    if as_json {
        return events.try_for_each(|event| emit_json(&json::event(&event?)));
    }
    emit(blksnap::WATCHER_START)?;
    loop {
        let Some(event) = events.next() else {
            emit(blksnap::WATCHER_GONE)?;
            break;
        };
        let event = event?;
        emit(&blksnap::format_watcher_event(&event))?;
        if blksnap::ends_watch(&event) {
            break;
        }
    }
    emit(blksnap::WATCHER_FINISH)
}

/// Runs `snapshot_info`: both fields, or the one `--field` names.
fn snapshot_info(args: SnapshotInfoArgs, as_json: bool) -> blksnap::Result<()> {
    let info = BlockDevice::open(&args.device)?.snapshot_info()?;
    if as_json {
        return emit_json(&json::snapshot_info(&info, args.field));
    }
    match args.field {
        Some(field) => emit(&blksnap::format_snapshot_info_field(&info, field)),
        None => emit(&blksnap::format_snapshot_info(&info)),
    }
}

/// Writes `data` to the file at `path`, creating or truncating it.
fn write_file(path: &Path, data: &[u8]) -> blksnap::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut file = std::fs::File::create(path).map_err(|e| blksnap::Error::new(context(), e))?;
    file.write_all(data)
        .map_err(|e| blksnap::Error::new(context(), e))
}

/// Runs `markdirtyblock`: explicit ranges on a device, or a file's extents,
/// which it prints as text or, with `as_json`, as one JSON object.
fn mark_dirty_block(args: MarkDirtyArgs, as_json: bool) -> blksnap::Result<()> {
    let Some(file) = args.file else {
        // clap requires --device with --ranges.
        let device = args.device.unwrap_or_default();
        return BlockDevice::open(&device)?.mark_dirty(&args.ranges);
    };
    let found = blksnap::file_sectors(&file)?;
    let device = match args.device {
        Some(device) => {
            check_holds(&device, &file, found.device_number)?;
            device
        }
        None => found.device,
    };
    BlockDevice::open(&device)?.mark_dirty(&found.ranges)?;
    if as_json {
        emit_json(&json::marked_ranges(&device, &found.ranges))
    } else {
        emit(&blksnap::format_allocated(
            found.device_number,
            &found.extents,
        ))
    }
}

/// Checks that `device` is the block device with number `dev`, the one
/// that holds `file`.
fn check_holds(device: &Path, file: &Path, dev: u64) -> blksnap::Result<()> {
    let meta = std::fs::metadata(device)
        .map_err(|e| blksnap::Error::new(format!("cannot stat {}", device.display()), e))?;
    if meta.rdev() == dev {
        return Ok(());
    }
    Err(blksnap::Error::new(
        format!("cannot mark {} on {}", file.display(), device.display()),
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the file is on device {}:{}, not on this one",
                libc::major(dev),
                libc::minor(dev)
            ),
        ),
    ))
}

/// Writes the error line `line` to stderr, after the tool's name; if stderr
/// itself is gone, there is nobody left to tell.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "blksnap: {line}");
}

/// Parses the command line; help and version go to stdout with status 0,
/// a usage error becomes one line on stderr and status 1.
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|err| {
        if err.use_stderr() {
            report(&error_line(&err.render().to_string()));
            ExitCode::FAILURE
        } else {
            let _ = err.print();
            ExitCode::SUCCESS
        }
    })
}

/// Returns clap's error message as one line: its first paragraph, joined,
/// so that a list such as the missing arguments stays in it.
fn error_line(text: &str) -> String {
    let line = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    match line.strip_prefix("error: ") {
        Some(rest) => rest.to_owned(),
        None if line.is_empty() => "invalid arguments".to_owned(),
        None => line,
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            report(&err.to_string());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_become_one_line() {
        let err = Cli::try_parse_from(["blksnap", "cbtinfo"]).unwrap_err();
        assert_eq!(
            error_line(&err.render().to_string()),
            "the following required arguments were not provided: --device <DEVICE>"
        );
        let err = Cli::try_parse_from(["blksnap", "markdirtyblock"]).unwrap_err();
        let line = error_line(&err.render().to_string());
        assert!(line.contains("--ranges <S:C>"), "{line}");
        assert!(line.contains("--file <FILE>"), "{line}");
        assert_eq!(error_line(""), "invalid arguments");
    }
}
