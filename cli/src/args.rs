//! The command line of the `blksnap` tool, as clap definitions.
//!
//! `blksnap` parses its arguments with [`Cli`]; `blksnap-gen` builds the man
//! page and the shell completions from [`command`], so the three never
//! disagree. Commands and options follow the tool of the upstream blksnap
//! proposal: every option has a long and a short form, and `--json` (global,
//! so also accepted after the command) selects the JSON output of
//! [`crate::json`].

use std::path::PathBuf;

use clap::{ArgGroup, CommandFactory, Parser, Subcommand};

use crate::Sectors;

/// Returns the clap command of `blksnap`, for generating its documentation.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Block-device snapshots and change-block tracking.
///
/// blksnap drives the blksnap kernel module: it attaches the module's filter
/// to block devices and reads and marks their change-block tracking, through
/// /dev/blksnap-control and the block-device filter ioctls. Errors are one
/// line on standard error, with exit status 1. With --json, the commands that
/// print something print one JSON object on one line instead.
#[derive(Parser, Debug)]
#[command(name = "blksnap", version)]
pub struct Cli {
    /// Print the output as one JSON object on one line.
    ///
    /// version, attach, cbtinfo and markdirtyblock -f print an object; the
    /// other commands still print nothing, and errors stay one line on
    /// standard error.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `blksnap`.
#[derive(Subcommand, Debug)]
pub enum Command {
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

/// The option of the commands that take only a device.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    pub device: PathBuf,
}

/// The options of `readcbtmap`.
#[derive(clap::Args, Debug)]
pub struct ReadCbtMapArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    pub device: PathBuf,
    /// File to write the map to; created, or truncated if it exists.
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
}

/// The options of `markdirtyblock`.
#[derive(clap::Args, Debug)]
pub struct MarkDirtyArgs {
    /// Block device; needed with --ranges. With --file it may be given, and
    /// must then be the device that holds the file.
    #[arg(short, long, value_name = "DEVICE")]
    pub device: Option<PathBuf>,
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
    pub ranges: Vec<Sectors>,
    /// Regular file whose extents to mark on the block device that holds it.
    /// Prints the marked ranges, one SECTOR:COUNT per line (512-byte
    /// sectors on that device).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn cli_definition_is_consistent() {
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
    fn json_is_global() {
        for args in [
            &["blksnap", "--json", "cbtinfo", "-d", "/dev/loop0"][..],
            &["blksnap", "cbtinfo", "--json", "-d", "/dev/loop0"],
            &["blksnap", "cbtinfo", "-d", "/dev/loop0", "--json"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert!(cli.json, "{args:?}");
            assert!(matches!(cli.command, Command::CbtInfo(_)), "{args:?}");
        }
        for args in [
            &["blksnap", "--json", "version"][..],
            &["blksnap", "version", "--json"],
            &["blksnap", "attach", "--json", "-d", "/dev/loop0"],
            &["blksnap", "markdirtyblock", "-f", "/a", "--json"],
            &["blksnap", "detach", "--json", "-d", "/dev/loop0"],
        ] {
            assert!(Cli::try_parse_from(args).unwrap().json, "{args:?}");
        }
        let cli = Cli::try_parse_from(["blksnap", "cbtinfo", "-d", "/dev/loop0"]).unwrap();
        assert!(!cli.json);
        // A flag: it takes no value.
        assert!(Cli::try_parse_from(["blksnap", "--json=yes", "version"]).is_err());
    }

    #[test]
    fn version_parses() {
        let cli = Cli::try_parse_from(["blksnap", "version"]).unwrap();
        assert!(matches!(cli.command, Command::Version));
    }
}
