//! `blksnap`: the command-line tool for the blksnap module.
//!
//! Commands and their output follow the tool of the upstream blksnap
//! proposal, so scripts written for it run unchanged: every option has a long
//! and a short form, errors are one line on stderr with exit code 1. The
//! command line itself is defined in [`blksnap::args`]; with `--json` the
//! commands print the objects of [`blksnap::json`] instead of text.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use blksnap::args::{Cli, Command, MarkDirtyArgs};
use blksnap::{json, Attached, BlockDevice};
use clap::Parser;

fn run(cli: Cli) -> blksnap::Result<()> {
    let as_json = cli.json;
    match cli.command {
        Command::Version => {
            let v = blksnap::Control::open()?.version()?;
            if as_json {
                println!("{}", json::version(&v));
            } else {
                println!("{}", blksnap::format_version(&v));
            }
        }
        Command::Attach(args) => {
            let attached = BlockDevice::open(&args.device)?.attach()?;
            if as_json {
                println!("{}", json::attach(attached));
            } else if attached == Attached::Now {
                println!("Attached successfully");
            } else {
                println!("Already was attached");
            }
        }
        Command::Detach(args) => BlockDevice::open(&args.device)?.detach()?,
        Command::CbtInfo(args) => {
            let info = BlockDevice::open(&args.device)?.cbt_info()?;
            if as_json {
                println!("{}", json::cbt_info(&info));
            } else {
                print!("{}", blksnap::format_cbt_info(&info));
            }
        }
        Command::ReadCbtMap(args) => {
            let map = BlockDevice::open(&args.device)?.read_cbt_map()?;
            write_file(&args.file, &map)?;
        }
        Command::MarkDirtyBlock(args) => mark_dirty_block(args, as_json)?,
    }
    Ok(())
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
        println!("{}", json::marked_ranges(&device, &found.ranges));
    } else {
        print!("{}", blksnap::format_ranges(&found.ranges));
    }
    Ok(())
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

/// Parses the command line; help and version go to stdout with status 0,
/// a usage error becomes one line on stderr and status 1.
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|err| {
        if err.use_stderr() {
            eprintln!("blksnap: {}", error_line(&err.render().to_string()));
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
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("blksnap: {err}");
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
