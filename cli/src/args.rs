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

use crate::{InfoField, Limit, Sectors, Uuid};

/// Parses a snapshot UUID, accepting only the form the tool prints.
fn parse_id(text: &str) -> Result<Uuid, String> {
    text.parse::<uuid::fmt::Hyphenated>()
        .map(|id| id.into_uuid())
        .map_err(|e| {
            format!("invalid UUID: {e} (expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
        })
}

/// Parses a size of in-volume storage: the form of a limit, not 0.
fn parse_size(text: &str) -> Result<Limit, String> {
    let size: Limit = text
        .parse()
        .map_err(|e: crate::ParseLimitError| e.to_string().replacen("limit", "size", 1))?;
    if size.bytes() == 0 {
        return Err(format!("invalid size {text:?}: it is 0"));
    }
    Ok(size)
}

/// Returns the clap command of `blksnap`, for generating its documentation.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Block-device snapshots and change-block tracking.
///
/// blksnap drives the blksnap kernel module: it attaches the module's filter
/// to block devices, reads and marks their change-block tracking, and
/// creates, takes, watches and destroys snapshots of them, through
/// /dev/blksnap-control and the block-device filter ioctls. Snapshots are
/// named by UUIDs in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx. Errors
/// are one line on standard error, with exit status 1. With --json, the
/// commands that print something print one JSON object on one line instead
/// (snapshot_watcher: one per event).
#[derive(Parser, Debug)]
#[command(name = "blksnap", version)]
pub struct Cli {
    /// Print the output as one JSON object on one line.
    ///
    /// version, attach, cbtinfo, markdirtyblock -f, snapshot_create,
    /// snapshot_collect, snapshot_info, snapshot_waitevent, backup and
    /// verify print an object, snapshot_watcher one object per event; the
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
    /// with FIEMAP, are marked on the block device that holds it, which is
    /// printed as `device path: '/dev/block/MAJOR:MINOR'`, then each extent
    /// as `allocate range: ofs=SECTOR cnt=COUNT`.
    #[command(name = "markdirtyblock")]
    #[command(group(ArgGroup::new("what").required(true).args(["ranges", "file"])))]
    MarkDirtyBlock(MarkDirtyArgs),
    /// Create a snapshot and print its UUID.
    ///
    /// The difference storage (--file) holds the original data of the
    /// blocks overwritten while the snapshot is held: an existing regular
    /// file (used and grown up to --limit), a directory (an unnamed file is
    /// created in it and vanishes with the snapshot) or a block device
    /// (used whole, never grown). Each --device is then added to the
    /// snapshot, with the filter attached first where it is not; if one
    /// cannot be added, the snapshot is destroyed again and nothing is
    /// printed. Prints only the new UUID, on one line.
    ///
    /// A regular file on a file system of a --device (or of a partition of
    /// a whole-disk --device) becomes in-volume storage: the module pins it
    /// while the snapshot lives (writing, truncating, renaming or removing
    /// it fails), writes the copies into its blocks below the file system,
    /// never grows it, and the image reads its blocks as zeroes. It must be
    /// fully allocated, on ext4 or xfs, and at least diff_storage_minimum
    /// sectors long (a module parameter). --in-volume-size SIZE makes such a
    /// file: the --file path must not exist; the file is created with mode
    /// 0600 and SIZE bytes allocated by fallocate (no data written), on
    /// ext4 or xfs only. It stays after the snapshot is destroyed: remove it
    /// then. If the snapshot cannot be created, it is removed again.
    #[command(name = "snapshot_create")]
    SnapshotCreate(SnapshotCreateArgs),
    /// Add a block device to a snapshot.
    ///
    /// The snapshot must not be taken yet. The blksnap filter is attached to
    /// the device first if it is not attached yet. Prints nothing.
    #[command(name = "snapshot_add")]
    SnapshotAdd(SnapshotAddArgs),
    /// Take a snapshot.
    ///
    /// The snapshot holds one coherent moment of all its devices; their
    /// images, /dev/blksnap-MAJOR-MINOR, appear. Prints nothing.
    #[command(name = "snapshot_take")]
    SnapshotTake(IdArgs),
    /// Destroy a snapshot.
    ///
    /// Its images are removed and its difference storage is released; the
    /// filters and their change tracking stay attached. Prints nothing.
    #[command(name = "snapshot_destroy")]
    SnapshotDestroy(IdArgs),
    /// Print the UUIDs of all snapshots, each followed by a space on its own
    /// line, then an empty line.
    #[command(name = "snapshot_collect")]
    SnapshotCollect,
    /// Print the snapshot state of a device.
    ///
    /// Two lines: error_code=N (0, or the negative errno that broke the
    /// snapshot, -28 after the difference storage overflowed) and
    /// image=/dev/NAME (`image=/dev/` before the snapshot is taken). With
    /// --field, only that field's value.
    #[command(name = "snapshot_info")]
    SnapshotInfo(SnapshotInfoArgs),
    /// Wait for the next event of a snapshot and print it.
    ///
    /// An event is printed as result=ok, time=T (monotonic nanoseconds),
    /// event=corrupted or event=no_space, then its details: dev_id=MAJOR:MINOR
    /// and err_code=N for corrupted, requested_nr_sect=N for no_space. A
    /// wait without an event prints result=timeout, result=interrupted or
    /// result=not found (no such snapshot); these exit with status 0.
    #[command(name = "snapshot_waitevent")]
    SnapshotWaitEvent(WaitEventArgs),
    /// Print the events of a snapshot until it is corrupted or destroyed.
    ///
    /// Prints `Start snapshot watcher.`, then one line per event as it
    /// comes, `T - The snapshot was corrupted for device [MAJOR:MINOR] with
    /// error "MESSAGE".` (after which it stops) or `T - unsupported event
    /// #CODE.`, then `The snapshot no longer exists.` once it is destroyed,
    /// and last `Snapshot watcher finished.`, with status 0. With --json,
    /// one object per event, as snapshot_waitevent --json prints it, until
    /// the snapshot no longer exists.
    #[command(name = "snapshot_watcher")]
    SnapshotWatcher(IdArgs),
    /// Print everything the module holds: its version and parameters, the
    /// attached devices with their change tracking and snapshot state, and
    /// the snapshots with their members, state and difference storage.
    ///
    /// Tables for a terminal; with --json one object with the keys module
    /// {version, parameters}, devices [{device, dev_id, cbt {block_size,
    /// block_count, device_capacity, generation_id, changes_number,
    /// changed_blocks, dirty_blocks}, snapshot, image, error_code}],
    /// snapshots [{id, state (created, taken or corrupted), error_code,
    /// error_dev, members [{dev_id, device, image}], storage {kind, dev_id,
    /// path, inode, capacity_sectors, used_sectors, limit_sectors}}] and
    /// notes (what could not be read); unknown values are null. Snapshot
    /// details and dirty_blocks (blocks written since the last take) come
    /// from the module's debugfs directory, /sys/kernel/debug/blksnap.
    Status,
    /// Back up devices to files: a snapshot, a copy of each image, and the
    /// snapshot destroyed again.
    ///
    /// Creates a snapshot with the difference storage --file (as
    /// snapshot_create does), attaches the filter to each --device where it
    /// is missing, adds the devices, takes the snapshot and copies each
    /// device's image to its backup file: the first --output is the backup
    /// of the first --device, and so on, or with --dir, DIR/NAME.img where
    /// NAME is the device's file name (sdb1.img for /dev/sdb1). The
    /// snapshot is destroyed at the end, also after an error and on SIGINT,
    /// SIGTERM or SIGHUP, which stop the copy and exit with status 1.
    ///
    /// Without --file, the difference storage is in-volume storage (see
    /// snapshot_create) that backup makes and removes itself, so that a
    /// machine with one disk can be backed up: the first --device that
    /// holds a mounted, writable ext4 or xfs file system (found in
    /// /proc/self/mountinfo; for a whole disk, its partitions count, in
    /// order) gets the file MOUNTPOINT/.blksnap-diff-RANDOM of 10 % of the
    /// size of all --device together, at least the module's
    /// diff_storage_minimum and at most half of the file system's free
    /// space. If no --device holds such a file system, or half of its free
    /// space is below diff_storage_minimum, backup fails and asks for
    /// --file. A line on standard error names the file; it is removed once
    /// the snapshot is destroyed, also after an error or a signal. Its
    /// blocks read as zeroes in the image and are not read, but written as
    /// zeroes (a full backup leaves them sparse); after the snapshot they
    /// are marked as changed in the change tracking, since the copies
    /// written there are not tracked, so the next incremental backup copies
    /// them again.
    ///
    /// Next to each backup file FILE: FILE.sha256, the SHA-256 of the whole
    /// file in the format of sha256sum (check it with `sha256sum -c` or
    /// `blksnap verify --checksum`), and FILE.state.json, the change-tracking
    /// state of the take (generation_id, changes_number, block_size,
    /// device_capacity) for the next incremental backup. A full copy is
    /// written to FILE.partial, sparse, and renamed to FILE once complete.
    ///
    /// With --incremental, only the blocks the change tracking marks as
    /// changed since the state in FILE.state.json are copied, into FILE
    /// itself, which stays a whole image of the device. Where that is not
    /// possible (no state or backup file yet, a new change-tracking
    /// generation, another block size or capacity), the device is copied
    /// whole and a line on standard error says why.
    ///
    /// Prints one line per device: device=DEV output=FILE mode=full|incremental
    /// copied=BYTES size=BYTES sha256=HEX changes_number=N. A progress bar,
    /// with the rate and the time left, is drawn on standard error when it is
    /// a terminal.
    #[command(name = "backup")]
    #[command(group(ArgGroup::new("where").required(true).args(["output", "dir"])))]
    Backup(BackupArgs),
    /// Compare a backup file with an image or a device, or check its
    /// checksum.
    ///
    /// With --image, reads both side by side; where they differ, prints the
    /// differing ranges of 512-byte sectors, the first --max-report of
    /// them, as `differ offset=BYTES length=BYTES`, a line `size file=N
    /// image=M` if the sizes differ, then `different ranges=N bytes=N` and
    /// exits with status 1; when they are equal, prints `equal size=N` and
    /// exits with status 0. With --checksum, checks FILE against the
    /// SHA-256 in FILE.sha256 that backup wrote: prints `checksum ok
    /// sha256=HEX`, or `checksum mismatch expected=HEX actual=HEX` and
    /// exits with status 1. Errors, too, exit with status 1.
    #[command(name = "verify")]
    #[command(group(ArgGroup::new("against").required(true).multiple(true).args(["image", "checksum"])))]
    Verify(VerifyArgs),
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
    /// Prints that device and the extents in 512-byte sectors on it.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// The option of the commands that take only a snapshot.
#[derive(clap::Args, Debug)]
pub struct IdArgs {
    /// Snapshot UUID, as snapshot_create printed it.
    #[arg(short, long, value_name = "UUID", value_parser = parse_id)]
    pub id: Uuid,
}

/// The options of `snapshot_create`.
#[derive(clap::Args, Debug)]
pub struct SnapshotCreateArgs {
    /// Difference storage: a regular file, a directory or a block device.
    #[arg(short, long, value_name = "PATH")]
    pub file: PathBuf,
    /// Most bytes the difference storage may grow to: a decimal number,
    /// optionally followed by K, M or G (2^10, 2^20, 2^30). Rounded down to
    /// 512-byte sectors. 0, the default, grows nothing.
    #[arg(short, long, value_name = "BYTES", default_value = "0")]
    pub limit: Limit,
    /// Create --file as in-volume storage of SIZE bytes (N[K|M|G], as for
    /// --limit, rounded up to the file system's block) on the file system
    /// of a --device: a new file, mode 0600, allocated with fallocate, on
    /// ext4 or xfs. In-volume storage never grows, so --limit does not go
    /// with it.
    #[arg(
        short = 's',
        long,
        value_name = "SIZE",
        conflicts_with = "limit",
        value_parser = parse_size
    )]
    pub in_volume_size: Option<Limit>,
    /// Block device to add to the snapshot. Several may follow one -d
    /// (`-d /dev/sda1 /dev/sdb1`), and -d may be repeated.
    #[arg(short, long, value_name = "DEVICE", num_args = 1..)]
    pub device: Vec<PathBuf>,
}

/// The options of `snapshot_add`.
#[derive(clap::Args, Debug)]
pub struct SnapshotAddArgs {
    /// Snapshot UUID, as snapshot_create printed it.
    #[arg(short, long, value_name = "UUID", value_parser = parse_id)]
    pub id: Uuid,
    /// Block device to add, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    pub device: PathBuf,
}

/// The options of `snapshot_info`.
#[derive(clap::Args, Debug)]
pub struct SnapshotInfoArgs {
    /// Block device, e.g. /dev/sda1.
    #[arg(short, long, value_name = "DEVICE")]
    pub device: PathBuf,
    /// Print only this field's value.
    #[arg(short, long, value_name = "FIELD")]
    pub field: Option<InfoField>,
}

/// The options of `snapshot_waitevent`.
#[derive(clap::Args, Debug)]
pub struct WaitEventArgs {
    /// Snapshot UUID, as snapshot_create printed it.
    #[arg(short, long, value_name = "UUID", value_parser = parse_id)]
    pub id: Uuid,
    /// How long to wait for an event, in milliseconds.
    #[arg(short, long, value_name = "MS", default_value_t = 1000)]
    pub timeout: u32,
}

/// The options of `backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Difference storage of the snapshot: a regular file, a directory or a
    /// block device, as for snapshot_create. Without it, in-volume storage
    /// is made on a backed-up device (see above).
    #[arg(short, long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Most bytes the difference storage may grow to, N[K|M|G], as for
    /// snapshot_create; 0, the default, grows nothing. Only with --file
    /// (in-volume storage never grows).
    #[arg(short, long, value_name = "BYTES", requires = "file")]
    pub limit: Option<Limit>,
    /// Block device to back up; repeat -d for several.
    #[arg(short, long, value_name = "DEVICE", required = true)]
    pub device: Vec<PathBuf>,
    /// Backup file of the device in the same place among the --device
    /// options; one per --device.
    #[arg(short, long, value_name = "FILE", conflicts_with = "dir")]
    pub output: Vec<PathBuf>,
    /// Directory of the backup files, named NAME.img after each device's
    /// file name, instead of --output.
    #[arg(short = 'D', long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Copy only the blocks changed since the previous backup to the same
    /// files, if its state allows; otherwise the whole device.
    #[arg(short = 'I', long)]
    pub incremental: bool,
    /// Draw no progress bar and print no notes on standard error; the
    /// result lines on standard output and errors stay.
    #[arg(short, long)]
    pub quiet: bool,
}

impl BackupArgs {
    /// Returns each device with its backup file, or why they do not pair
    /// up.
    pub fn targets(&self) -> Result<Vec<crate::backup::Target>, String> {
        let outputs = match &self.dir {
            Some(dir) => self
                .device
                .iter()
                .map(|d| {
                    let name = d.file_name().ok_or_else(|| {
                        format!("{} has no file name to name its backup after", d.display())
                    })?;
                    let mut name = name.to_owned();
                    name.push(".img");
                    Ok(dir.join(name))
                })
                .collect::<Result<Vec<_>, String>>()?,
            None if self.output.len() != self.device.len() => {
                return Err(format!(
                    "{} --device but {} --output: give one --output per --device",
                    self.device.len(),
                    self.output.len()
                ))
            }
            None => self.output.clone(),
        };
        let targets: Vec<_> = self
            .device
            .iter()
            .zip(outputs)
            .map(|(device, output)| crate::backup::Target {
                device: device.clone(),
                output,
            })
            .collect();
        crate::backup::check_targets(&targets)?;
        Ok(targets)
    }
}

/// The options of `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The backup file.
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Image or device to compare the file with, e.g.
    /// /dev/blksnap-7-0.
    #[arg(short, long, value_name = "IMAGE")]
    pub image: Option<PathBuf>,
    /// Check the file against the SHA-256 in FILE.sha256.
    #[arg(short, long)]
    pub checksum: bool,
    /// How many differing ranges to print.
    #[arg(short, long, value_name = "N", default_value_t = 10)]
    pub max_report: usize,
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

    const ID: &str = "01234567-89ab-cdef-fedc-ba9876543210";

    fn id() -> Uuid {
        ID.parse().unwrap()
    }

    #[test]
    fn snapshot_create_option_forms() {
        let devices = [Path::new("/dev/loop0"), Path::new("/dev/loop1")];
        for args in [
            &[
                "snapshot_create",
                "-f",
                "/var/diff",
                "-l",
                "1G",
                "-d",
                "/dev/loop0",
                "-d",
                "/dev/loop1",
            ][..],
            &[
                "snapshot_create",
                "--file",
                "/var/diff",
                "--limit",
                "1G",
                "--device",
                "/dev/loop0",
                "/dev/loop1",
            ],
            &[
                "snapshot_create",
                "--file=/var/diff",
                "--limit=1g",
                "--device=/dev/loop0",
                "--device=/dev/loop1",
            ],
            &[
                "snapshot_create",
                "-d/dev/loop0",
                "-d/dev/loop1",
                "-l1073741824",
                "-f/var/diff",
            ],
            &[
                "snapshot_create",
                "-d",
                "/dev/loop0",
                "/dev/loop1",
                "-f",
                "/var/diff",
                "-l",
                "1048576K",
            ],
        ] {
            match parse_ok(args) {
                Command::SnapshotCreate(a) => {
                    assert_eq!(a.file, Path::new("/var/diff"), "{args:?}");
                    assert_eq!(a.limit, Limit::from_bytes(1 << 30), "{args:?}");
                    assert_eq!(a.limit.sectors(), 2_097_152, "{args:?}");
                    assert_eq!(a.device, devices, "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        // The limit defaults to 0 and the devices may be left out.
        match parse_ok(&["snapshot_create", "-f", "/dev/sdz"]) {
            Command::SnapshotCreate(a) => {
                assert_eq!(a.limit, Limit::from_bytes(0));
                assert!(a.device.is_empty());
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse_ok(&["snapshot_create", "-f", "/d", "-l", "512M"]) {
            Command::SnapshotCreate(a) => assert_eq!(a.limit.sectors(), 1 << 20),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn snapshot_create_in_volume_size_forms() {
        for args in [
            &[
                "snapshot_create",
                "-f",
                "/mnt/d",
                "-s",
                "1G",
                "-d",
                "/dev/loop0",
            ][..],
            &[
                "snapshot_create",
                "--file=/mnt/d",
                "--in-volume-size=1024M",
                "-d/dev/loop0",
            ],
            &[
                "snapshot_create",
                "-s1073741824",
                "-f",
                "/mnt/d",
                "--device",
                "/dev/loop0",
            ],
        ] {
            match parse_ok(args) {
                Command::SnapshotCreate(a) => {
                    assert_eq!(
                        a.in_volume_size,
                        Some(Limit::from_bytes(1 << 30)),
                        "{args:?}"
                    );
                    assert_eq!(a.file, Path::new("/mnt/d"), "{args:?}");
                    assert_eq!(a.limit.bytes(), 0, "{args:?}");
                    assert_eq!(a.device, [Path::new("/dev/loop0")], "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse_ok(&["snapshot_create", "-f", "/d"]) {
            Command::SnapshotCreate(a) => assert_eq!(a.in_volume_size, None),
            other => panic!("parsed as {other:?}"),
        }
        // It needs a file, is not 0, has the form of a limit, and does not
        // go with --limit.
        parse_err(&["snapshot_create", "-s", "1G", "-d", "/dev/loop0"]);
        parse_err(&["snapshot_create", "-f", "/d", "-s"]);
        let line = parse_err(&["snapshot_create", "-f", "/d", "-s", "0"]);
        assert!(line.contains("invalid size \"0\": it is 0"), "{line}");
        for bad in ["1T", "x", "1.5G", ""] {
            let line = parse_err(&[
                "snapshot_create",
                "-f",
                "/d",
                &format!("--in-volume-size={bad}"),
            ]);
            assert!(line.contains("invalid size"), "{bad}: {line}");
        }
        let line = parse_err(&["snapshot_create", "-f", "/d", "-s", "1G", "-l", "2G"]);
        assert!(line.contains("--limit"), "{line}");
    }

    #[test]
    fn snapshot_create_rejects_bad_options() {
        parse_err(&["snapshot_create"]);
        parse_err(&["snapshot_create", "-l", "1G", "-d", "/dev/loop0"]);
        parse_err(&["snapshot_create", "-f"]);
        parse_err(&["snapshot_create", "-f", "/d", "-l"]);
        parse_err(&["snapshot_create", "-f", "/d", "-d"]);
        parse_err(&["snapshot_create", "-f", "/d", "-i", ID]);
        for bad in ["1T", "x", "1.5G", "1GB", "", "18446744073709551616"] {
            let line = parse_err(&["snapshot_create", "-f", "/d", &format!("--limit={bad}")]);
            assert!(line.contains("invalid limit"), "{bad}: {line}");
        }
    }

    #[test]
    fn snapshot_add_option_forms() {
        for args in [
            &["snapshot_add", "-i", ID, "-d", "/dev/loop0"][..],
            &["snapshot_add", "--id", ID, "--device", "/dev/loop0"],
            &["snapshot_add", &format!("--id={ID}"), "--device=/dev/loop0"],
            &["snapshot_add", "-d/dev/loop0", &format!("-i{ID}")],
            &[
                "snapshot_add",
                "-i",
                "01234567-89AB-CDEF-FEDC-BA9876543210",
                "-d",
                "/dev/loop0",
            ],
        ] {
            match parse_ok(args) {
                Command::SnapshotAdd(a) => {
                    assert_eq!(a.id, id(), "{args:?}");
                    assert_eq!(a.device, Path::new("/dev/loop0"), "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        parse_err(&["snapshot_add", "-i", ID]);
        parse_err(&["snapshot_add", "-d", "/dev/loop0"]);
        parse_err(&["snapshot_add", "-i", ID, "-d", "/dev/loop0", "/dev/loop1"]);
        let line = parse_err(&["snapshot_add", "-i", "0123", "-d", "/dev/loop0"]);
        assert!(line.contains("invalid UUID"), "{line}");
    }

    #[test]
    fn id_only_commands_option_forms() {
        for name in ["snapshot_take", "snapshot_destroy", "snapshot_watcher"] {
            for args in [
                &[name, "-i", ID][..],
                &[name, "--id", ID],
                &[name, &format!("--id={ID}")],
                &[name, &format!("-i{ID}")],
            ] {
                let got = match parse_ok(args) {
                    Command::SnapshotTake(a) if name == "snapshot_take" => a.id,
                    Command::SnapshotDestroy(a) if name == "snapshot_destroy" => a.id,
                    Command::SnapshotWatcher(a) if name == "snapshot_watcher" => a.id,
                    other => panic!("{args:?} parsed as {other:?}"),
                };
                assert_eq!(got, id(), "{args:?}");
            }
            parse_err(&[name]);
            parse_err(&[name, "-i"]);
            parse_err(&[name, "-i", ID, "extra"]);
            parse_err(&[name, "-d", "/dev/loop0"]);
            for bad in [
                "0123",
                "01234567-89ab-cdef-fedc-ba987654321g",
                "0123456789abcdeffedcba9876543210",
                "{01234567-89ab-cdef-fedc-ba9876543210}",
                "urn:uuid:01234567-89ab-cdef-fedc-ba9876543210",
            ] {
                let line = parse_err(&[name, "-i", bad]);
                assert!(line.contains("invalid UUID"), "{name} {bad}: {line}");
            }
        }
    }

    #[test]
    fn snapshot_collect_takes_no_options() {
        assert!(matches!(
            parse_ok(&["snapshot_collect"]),
            Command::SnapshotCollect
        ));
        parse_err(&["snapshot_collect", "extra"]);
        parse_err(&["snapshot_collect", "-i", ID]);
    }

    #[test]
    fn snapshot_info_option_forms() {
        for (args, want) in [
            (&["snapshot_info", "-d", "/dev/loop0"][..], None),
            (&["snapshot_info", "--device=/dev/loop0"], None),
            (
                &["snapshot_info", "-d", "/dev/loop0", "-f", "image"],
                Some(InfoField::Image),
            ),
            (
                &["snapshot_info", "-d/dev/loop0", "--field=error_code"],
                Some(InfoField::ErrorCode),
            ),
            (
                &[
                    "snapshot_info",
                    "--field",
                    "image",
                    "--device",
                    "/dev/loop0",
                ],
                Some(InfoField::Image),
            ),
            (
                &["snapshot_info", "-ferror_code", "-d", "/dev/loop0"],
                Some(InfoField::ErrorCode),
            ),
        ] {
            match parse_ok(args) {
                Command::SnapshotInfo(a) => {
                    assert_eq!(a.device, Path::new("/dev/loop0"), "{args:?}");
                    assert_eq!(a.field, want, "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        parse_err(&["snapshot_info"]);
        parse_err(&["snapshot_info", "-f", "image"]);
        parse_err(&["snapshot_info", "-d", "/dev/loop0", "-f"]);
        parse_err(&["snapshot_info", "-d", "/dev/loop0", "--field="]);
        for bad in ["error-code", "errorcode", "name", "IMAGE"] {
            let line = parse_err(&["snapshot_info", "-d", "/dev/loop0", "-f", bad]);
            assert!(line.contains("invalid value"), "{bad}: {line}");
        }
    }

    #[test]
    fn snapshot_waitevent_option_forms() {
        for (args, timeout) in [
            (&["snapshot_waitevent", "-i", ID, "-t", "500"][..], 500),
            (&["snapshot_waitevent", "--id", ID, "--timeout", "0"], 0),
            (
                &[
                    "snapshot_waitevent",
                    &format!("--id={ID}"),
                    "--timeout=4294967295",
                ],
                u32::MAX,
            ),
            (
                &["snapshot_waitevent", "-t60000", &format!("-i{ID}")],
                60000,
            ),
            (&["snapshot_waitevent", "-i", ID], 1000),
        ] {
            match parse_ok(args) {
                Command::SnapshotWaitEvent(a) => {
                    assert_eq!(a.id, id(), "{args:?}");
                    assert_eq!(a.timeout, timeout, "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        parse_err(&["snapshot_waitevent"]);
        parse_err(&["snapshot_waitevent", "-t", "100"]);
        parse_err(&["snapshot_waitevent", "-i", ID, "-t"]);
        for bad in ["4294967296", "abc", "1.5", "1s"] {
            parse_err(&["snapshot_waitevent", "-i", ID, "-t", bad]);
        }
        parse_err(&["snapshot_waitevent", "-i", ID, "--timeout=-1"]);
    }

    #[test]
    fn json_is_accepted_by_the_snapshot_commands() {
        for args in [
            &["blksnap", "--json", "snapshot_collect"][..],
            &["blksnap", "snapshot_collect", "--json"],
            &["blksnap", "snapshot_create", "--json", "-f", "/d"],
            &["blksnap", "snapshot_info", "-d", "/dev/loop0", "--json"],
            &["blksnap", "snapshot_waitevent", "-i", ID, "--json"],
            &["blksnap", "--json", "snapshot_watcher", "-i", ID],
            &["blksnap", "snapshot_take", "--json", "-i", ID],
        ] {
            assert!(Cli::try_parse_from(args).unwrap().json, "{args:?}");
        }
    }

    fn backup_args(args: &[&str]) -> BackupArgs {
        match parse_ok(args) {
            Command::Backup(a) => a,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn target(device: &str, output: &str) -> crate::backup::Target {
        crate::backup::Target {
            device: device.into(),
            output: output.into(),
        }
    }

    #[test]
    fn backup_option_forms() {
        let want = [
            target("/dev/loop0", "/b/l0.img"),
            target("/dev/loop1", "/b/l1.img"),
        ];
        for args in [
            &[
                "backup",
                "-f",
                "/var/tmp",
                "-l",
                "1G",
                "-d",
                "/dev/loop0",
                "-o",
                "/b/l0.img",
                "-d",
                "/dev/loop1",
                "-o",
                "/b/l1.img",
            ][..],
            &[
                "backup",
                "--file=/var/tmp",
                "--limit=1024M",
                "--device=/dev/loop0",
                "--device=/dev/loop1",
                "--output=/b/l0.img",
                "--output=/b/l1.img",
            ],
            &[
                "backup",
                "-o/b/l0.img",
                "-d/dev/loop0",
                "-l1073741824",
                "-f/var/tmp",
                "-d/dev/loop1",
                "-o/b/l1.img",
            ],
        ] {
            let a = backup_args(args);
            assert_eq!(a.file.as_deref(), Some(Path::new("/var/tmp")), "{args:?}");
            assert_eq!(a.limit.unwrap_or_default().sectors(), 2_097_152, "{args:?}");
            assert!(!a.incremental && !a.quiet, "{args:?}");
            assert_eq!(a.targets().unwrap(), want, "{args:?}");
        }
        let a = backup_args(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/sdb1",
            "-o",
            "/b/x",
            "-I",
            "-q",
        ]);
        assert!(a.incremental && a.quiet);
        assert_eq!(a.limit.unwrap_or_default().bytes(), 0);
        let a = backup_args(&[
            "backup",
            "--file",
            "/t",
            "--device",
            "/dev/sdb1",
            "--output",
            "/b/x",
            "--incremental",
            "--quiet",
        ]);
        assert!(a.incremental && a.quiet);
        assert!(
            Cli::try_parse_from([
                "blksnap", "backup", "--json", "-f", "/t", "-d", "/d", "-o", "/o"
            ])
            .unwrap()
            .json
        );
    }

    #[test]
    fn backup_dir_names_files_after_the_devices() {
        let a = backup_args(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/sdb1",
            "-d",
            "/dev/mapper/vg-root",
            "-D",
            "/backup",
        ]);
        assert_eq!(
            a.targets().unwrap(),
            [
                target("/dev/sdb1", "/backup/sdb1.img"),
                target("/dev/mapper/vg-root", "/backup/vg-root.img"),
            ]
        );
        let a = backup_args(&["backup", "-f", "/t", "-d", "/", "--dir=/backup"]);
        assert!(a.targets().unwrap_err().contains("no file name"));
        // Two devices of the same name would write the same file.
        let a = backup_args(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/sdb1",
            "-d",
            "/other/sdb1",
            "-D",
            "/b",
        ]);
        assert!(a.targets().unwrap_err().contains("same files"));
    }

    #[test]
    fn backup_without_file_uses_in_volume_storage() {
        for args in [
            &["backup", "-d", "/dev/sda1", "-o", "/mnt/nas/sda1.img"][..],
            &[
                "backup",
                "--device=/dev/sda1",
                "--output=/mnt/nas/sda1.img",
                "-I",
            ],
        ] {
            let a = backup_args(args);
            assert_eq!(a.file, None, "{args:?}");
            assert_eq!(a.limit.unwrap_or_default().bytes(), 0, "{args:?}");
            assert_eq!(
                a.targets().unwrap(),
                [target("/dev/sda1", "/mnt/nas/sda1.img")],
                "{args:?}"
            );
        }
        // A limit is for a storage that grows, which in-volume storage
        // does not.
        let err = Cli::try_parse_from([
            "blksnap",
            "backup",
            "-d",
            "/dev/sda1",
            "-o",
            "/b/x",
            "-l",
            "1G",
        ])
        .unwrap_err()
        .render()
        .to_string();
        assert!(
            err.contains("required arguments were not provided"),
            "{err}"
        );
        assert!(err.contains("--file <PATH>"), "{err}");
    }

    #[test]
    fn backup_rejects_bad_options() {
        // No device, nowhere to write, both places to write.
        parse_err(&["backup", "-f", "/t", "-o", "/b/x"]);
        parse_err(&["backup", "-f", "/t", "-d", "/dev/loop0"]);
        parse_err(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "-o",
            "/b/x",
            "-D",
            "/b",
        ]);
        parse_err(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "-o",
            "/b/x",
            "-l",
            "1T",
        ]);
        parse_err(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "-o",
            "/b/x",
            "-I",
            "state",
        ]);
        parse_err(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "/dev/loop1",
            "-o",
            "/b/x",
        ]);
        // Pairs that do not pair up are refused after parsing.
        let a = backup_args(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "-d",
            "/dev/loop1",
            "-o",
            "/b/x",
        ]);
        let err = a.targets().unwrap_err();
        assert_eq!(
            err,
            "2 --device but 1 --output: give one --output per --device"
        );
        let a = backup_args(&[
            "backup",
            "-f",
            "/t",
            "-d",
            "/dev/loop0",
            "-d",
            "/dev/loop0",
            "-o",
            "/b/x",
            "-o",
            "/b/y",
        ]);
        assert!(a.targets().unwrap_err().contains("named twice"));
    }

    #[test]
    fn verify_option_forms() {
        for (args, image, checksum) in [
            (
                &["verify", "-f", "/b/x", "-i", "/dev/blksnap-7-0"][..],
                Some("/dev/blksnap-7-0"),
                false,
            ),
            (
                &["verify", "--file=/b/x", "--image=/dev/loop0", "--checksum"],
                Some("/dev/loop0"),
                true,
            ),
            (&["verify", "-c", "-f/b/x"], None, true),
        ] {
            match parse_ok(args) {
                Command::Verify(a) => {
                    assert_eq!(a.file, Path::new("/b/x"), "{args:?}");
                    assert_eq!(a.image.as_deref(), image.map(Path::new), "{args:?}");
                    assert_eq!(a.checksum, checksum, "{args:?}");
                    assert_eq!(a.max_report, 10, "{args:?}");
                }
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse_ok(&["verify", "-f", "/b/x", "-c", "--max-report", "3"]) {
            Command::Verify(a) => assert_eq!(a.max_report, 3),
            other => panic!("parsed as {other:?}"),
        }
        parse_err(&["verify", "-f", "/b/x"]);
        parse_err(&["verify", "-i", "/dev/loop0"]);
        parse_err(&["verify", "-f", "/b/x", "-c", "-m", "x"]);
        parse_err(&["verify", "-f", "/b/x", "-c", "extra"]);
    }

    #[test]
    fn version_parses() {
        let cli = Cli::try_parse_from(["blksnap", "version"]).unwrap();
        assert!(matches!(cli.command, Command::Version));
    }
}
