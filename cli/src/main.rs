//! `blksnap`: the command-line tool for the blksnap module.
//!
//! Commands and their output follow the tool of the upstream blksnap
//! proposal, so scripts written for it run unchanged: every option has a long
//! and a short form, errors are one line on stderr with exit code 1.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use blksnap::{BlockDevice, Sectors};
use clap::{ArgGroup, Parser, Subcommand};

/// Block-device snapshots and change-block tracking.
#[derive(Parser, Debug)]
#[command(name = "blksnap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the version of the loaded module's interface as M.m.r.b.
    Version,
    /// Attach the blksnap filter to a block device.
    Attach(DeviceArgs),
    /// Detach the blksnap filter from a block device.
    Detach(DeviceArgs),
    /// Print the device's change-tracking state as five key=value lines:
    /// block_size, device_capacity, block_count, generation_id, changes_number.
    #[command(name = "cbtinfo")]
    CbtInfo(DeviceArgs),
    /// Write the device's change-tracking map to a file: block_count raw
    /// bytes, one per block, the snapshot number of the block's last change.
    #[command(name = "readcbtmap")]
    ReadCbtMap(ReadCbtMapArgs),
    /// Mark sectors as changed in the device's change tracking.
    ///
    /// Either give the device and sector ranges (`-d DEVICE -r S:C...`,
    /// prints nothing), or a regular file (`-f FILE`): its extents, found
    /// with FIEMAP, are marked on the block device that holds it, and the
    /// marked ranges are printed, one SECTOR:COUNT per line.
    #[command(name = "markdirtyblock")]
    #[command(group(ArgGroup::new("what").required(true).args(["ranges", "file"])))]
    MarkDirtyBlock(MarkDirtyArgs),
}

#[derive(clap::Args, Debug)]
struct DeviceArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    device: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ReadCbtMapArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    device: PathBuf,
    /// File to write the map to; created, or truncated if it exists.
    #[arg(short, long, value_name = "FILE")]
    file: PathBuf,
}

#[derive(clap::Args, Debug)]
struct MarkDirtyArgs {
    /// Block device; needed with --ranges. With --file it may be given, and
    /// must then be the device that holds the file.
    #[arg(short, long, value_name = "DEVICE")]
    device: Option<PathBuf>,
    /// Sector ranges SECTOR:COUNT in 512-byte sectors, decimal, COUNT >= 1.
    /// Several may follow one -r (`-r 0:8 64:8`), and -r may be repeated.
    #[arg(
        short,
        long,
        value_name = "S:C",
        num_args = 1..,
        requires = "device",
        conflicts_with = "file"
    )]
    ranges: Vec<Sectors>,
    /// Regular file whose extents to mark on the block device that holds it.
    /// Prints the marked ranges, one SECTOR:COUNT per line (512-byte
    /// sectors on that device).
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
}

fn run(cli: Cli) -> blksnap::Result<()> {
    match cli.command {
        Command::Version => {
            let v = blksnap::Control::open()?.version()?;
            println!("{}", blksnap::format_version(&v));
        }
        Command::Attach(args) => match blksnap::BlockDevice::open(&args.device)?.attach()? {
            blksnap::Attached::Now => println!("Attached successfully"),
            blksnap::Attached::Already => println!("Already was attached"),
        },
        Command::Detach(args) => blksnap::BlockDevice::open(&args.device)?.detach()?,
        Command::CbtInfo(args) => {
            let info = BlockDevice::open(&args.device)?.cbt_info()?;
            print!("{}", blksnap::format_cbt_info(&info));
        }
        Command::ReadCbtMap(args) => {
            let map = BlockDevice::open(&args.device)?.read_cbt_map()?;
            write_file(&args.file, &map)?;
        }
        Command::MarkDirtyBlock(args) => mark_dirty_block(args)?,
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

/// Runs `markdirtyblock`: explicit ranges on a device, or a file's extents.
fn mark_dirty_block(args: MarkDirtyArgs) -> blksnap::Result<()> {
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
    print!("{}", blksnap::format_ranges(&found.ranges));
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
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_command_is_an_error() {
        let err = Cli::try_parse_from(["blksnap", "frobnicate"]).unwrap_err();
        assert!(err.use_stderr());
    }

    #[test]
    fn device_option_forms() {
        for args in [
            &["blksnap", "attach", "--device", "/dev/loop0"][..],
            &["blksnap", "attach", "--device=/dev/loop0"],
            &["blksnap", "attach", "-d", "/dev/loop0"],
            &["blksnap", "attach", "-d/dev/loop0"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Attach(a) => assert_eq!(a.device.to_str(), Some("/dev/loop0")),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        assert!(Cli::try_parse_from(["blksnap", "detach"]).is_err());
    }

    /// Parses `args` (after the program name), panicking on an error.
    fn parse_ok(args: &[&str]) -> Command {
        let argv = std::iter::once("blksnap").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// Parses `args`, expecting a usage error; returns its first line.
    fn parse_err(args: &[&str]) -> String {
        let argv = std::iter::once("blksnap").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => panic!("{args:?} parsed as {:?}", cli.command),
            Err(e) => {
                assert!(e.use_stderr(), "{args:?}");
                e.render().to_string().lines().next().unwrap().to_owned()
            }
        }
    }

    #[test]
    fn cbtinfo_option_forms() {
        for args in [
            &["cbtinfo", "--device", "/dev/loop0"][..],
            &["cbtinfo", "--device=/dev/loop0"],
            &["cbtinfo", "-d", "/dev/loop0"],
            &["cbtinfo", "-d/dev/loop0"],
        ] {
            match parse_ok(args) {
                Command::CbtInfo(a) => assert_eq!(a.device, Path::new("/dev/loop0")),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        parse_err(&["cbtinfo"]);
        parse_err(&["cbtinfo", "-d"]);
        parse_err(&["cbtinfo", "-d", "/dev/loop0", "extra"]);
        parse_err(&["cbtinfo", "-d", "/dev/loop0", "-f", "x"]);
    }

    #[test]
    fn readcbtmap_option_forms() {
        for args in [
            &["readcbtmap", "--device", "/dev/loop0", "--file", "/tmp/map"][..],
            &["readcbtmap", "--device=/dev/loop0", "--file=/tmp/map"],
            &["readcbtmap", "-d", "/dev/loop0", "-f", "/tmp/map"],
            &["readcbtmap", "-f/tmp/map", "-d/dev/loop0"],
        ] {
            match parse_ok(args) {
                Command::ReadCbtMap(a) => {
                    assert_eq!(a.device, Path::new("/dev/loop0"));
                    assert_eq!(a.file, Path::new("/tmp/map"));
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        parse_err(&["readcbtmap", "-d", "/dev/loop0"]);
        parse_err(&["readcbtmap", "-f", "/tmp/map"]);
    }

    #[test]
    fn markdirtyblock_range_forms() {
        let want = [Sectors::new(0, 8), Sectors::new(2048, 16)];
        for args in [
            &["markdirtyblock", "-d", "/dev/loop0", "-r", "0:8", "2048:16"][..],
            &[
                "markdirtyblock",
                "-d",
                "/dev/loop0",
                "-r",
                "0:8",
                "-r",
                "2048:16",
            ],
            &["markdirtyblock", "-r", "0:8", "2048:16", "-d", "/dev/loop0"],
            &[
                "markdirtyblock",
                "--device=/dev/loop0",
                "--ranges=0:8",
                "--ranges=2048:16",
            ],
            &[
                "markdirtyblock",
                "--device",
                "/dev/loop0",
                "--ranges",
                "0:8",
                "2048:16",
            ],
            &["markdirtyblock", "-d/dev/loop0", "-r0:8", "-r2048:16"],
        ] {
            match parse_ok(args) {
                Command::MarkDirtyBlock(a) => {
                    assert_eq!(a.device.as_deref(), Some(Path::new("/dev/loop0")));
                    assert_eq!(a.ranges, want, "{args:?}");
                    assert_eq!(a.file, None);
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn markdirtyblock_file_forms() {
        for args in [
            &["markdirtyblock", "--file", "/mnt/a"][..],
            &["markdirtyblock", "--file=/mnt/a"],
            &["markdirtyblock", "-f", "/mnt/a"],
            &["markdirtyblock", "-f/mnt/a"],
        ] {
            match parse_ok(args) {
                Command::MarkDirtyBlock(a) => {
                    assert_eq!(a.file.as_deref(), Some(Path::new("/mnt/a")));
                    assert_eq!(a.device, None);
                    assert!(a.ranges.is_empty());
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse_ok(&["markdirtyblock", "-f", "/mnt/a", "-d", "/dev/sda1"]) {
            Command::MarkDirtyBlock(a) => {
                assert_eq!(a.device.as_deref(), Some(Path::new("/dev/sda1")))
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn markdirtyblock_rejects_bad_combinations() {
        // Nothing to mark, ranges without a device, both ranges and a file.
        parse_err(&["markdirtyblock"]);
        parse_err(&["markdirtyblock", "-d", "/dev/loop0"]);
        parse_err(&["markdirtyblock", "-r", "0:8"]);
        parse_err(&["markdirtyblock", "-d", "/dev/loop0", "-r"]);
        parse_err(&[
            "markdirtyblock",
            "-d",
            "/dev/loop0",
            "-r",
            "0:8",
            "-f",
            "/a",
        ]);
    }

    #[test]
    fn markdirtyblock_rejects_malformed_ranges() {
        for (bad, why) in [
            ("abc", "no ':'"),
            ("x:8", "sector is not a decimal number"),
            ("8:y", "count is not a decimal number"),
            ("8:0", "count is 0"),
            ("99999999999999999999:1", "sector is too large"),
            ("18446744073709551615:2", "past the last possible sector"),
        ] {
            let line = parse_err(&["markdirtyblock", "-d", "/dev/loop0", "-r", "0:8", bad]);
            assert!(line.contains(bad), "{bad}: {line}");
            assert!(line.contains(why), "{bad}: {line}");
            let line = parse_err(&[
                "markdirtyblock",
                "-d",
                "/dev/loop0",
                &format!("--ranges={bad}"),
            ]);
            assert!(line.contains(why), "{bad}: {line}");
        }
        // A leading '-' reads as an option, unless joined with '='.
        let line = parse_err(&["markdirtyblock", "-d", "/dev/loop0", "-r", "-8:1"]);
        assert!(line.contains("'-8'"), "{line}");
        let line = parse_err(&["markdirtyblock", "-d", "/dev/loop0", "--ranges=-8:1"]);
        assert!(line.contains("sector is not a decimal number"), "{line}");
    }

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

    #[test]
    fn version_parses() {
        let cli = Cli::try_parse_from(["blksnap", "version"]).unwrap();
        assert!(matches!(cli.command, Command::Version));
    }
}
