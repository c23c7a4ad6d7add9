//! A safe Rust interface to the blksnap kernel module.
//!
//! [`Control`] is the control device, `/dev/blksnap-control`: the version,
//! and creating, taking, listing, destroying and watching snapshots (in
//! `snapshot.rs`, with the events of `event.rs`). [`BlockDevice`] is a block
//! device node, for the filter ioctls, the change-block-tracking
//! sub-commands and the snapshot sub-commands (SNAPSHOTADD, SNAPSHOTINFO).
//! [`Uuid`], [`Sectors`] and [`Limit`] are the identifiers, sector ranges
//! and storage limits in their text forms, and [`file_sectors`] finds where
//! a file lies on its block device (with FIEMAP). Errors carry the errno the
//! module returned and what was being done when it failed. [`args`] is the
//! command line of the `blksnap` tool and [`json`] the objects it prints
//! with `--json`.
//!
//! [`backup`] backs devices up to files through a snapshot it creates and
//! always destroys, fully or, from the change tracking, incrementally: the
//! plan of what to copy is [`plan`], the copy [`copy`], stopping on a
//! signal [`cancel`], the progress bar [`progress`]; [`verify`] compares a
//! backup with an image and checks its checksum. The SHA-256 checksums are
//! the `sha2` crate's. [`in_volume`] makes the preallocated files of
//! in-volume difference storage and chooses where `backup` puts one.
//!
//! ```no_run
//! let ctl = blksnap::Control::open()?;
//! let v = ctl.version()?;
//! println!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build);
//! # Ok::<(), blksnap::Error>(())
//! ```
//!
//! A snapshot of one device, with a 1 GiB difference storage in a
//! directory, read through its image, then destroyed:
//!
//! ```no_run
//! use blksnap::{BlockDevice, Control, Limit, WaitResult};
//!
//! let ctl = Control::open()?;
//! let limit: Limit = "1G".parse().expect("a valid limit");
//! let dev = BlockDevice::open("/dev/sdb1")?;
//! let id = ctl.snapshot_create_with_devices("/var/tmp", limit.sectors(), &[dev])?;
//! ctl.snapshot_take(&id)?;
//! let info = BlockDevice::open("/dev/sdb1")?.snapshot_info()?;
//! println!("image: {:?}", info.image_path());
//! if let WaitResult::Event(e) = ctl.wait_event(&id, 100)? {
//!     println!("{}", blksnap::format_event(&e));
//! }
//! ctl.snapshot_destroy(&id)?;
//! # Ok::<(), blksnap::Error>(())
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use blksnap_uapi as uapi;

pub mod args;
pub mod backup;
pub mod cancel;
pub mod copy;
mod event;
mod fiemap;
pub mod in_volume;
pub mod json;
mod limit;
pub mod plan;
pub mod progress;
mod sectors;
mod snapshot;
pub mod status;
pub mod verify;

pub use event::{
    ends_watch, format_event, format_wait_result, format_watcher_event, Event, EventKind,
    WaitResult, WATCHER_FINISH, WATCHER_GONE, WATCHER_START,
};

pub use fiemap::{
    block_device_of, extents_to_sectors, file_extents, file_sectors, format_allocated, Extent,
    ExtentError, FileSectors,
};
pub use limit::{Limit, ParseLimitError};
pub use sectors::{ParseSectorsError, Sectors, SECTOR_SIZE};
pub use snapshot::{
    format_collect, format_ids, format_snapshot_info, format_snapshot_info_field, Events,
    InfoField, SnapshotInfo, EVENTS_WAIT_MS,
};
pub use uuid::Uuid;

/// Path of the control device.
pub const CONTROL_PATH: &str = "/dev/blksnap-control";

/// A failed operation: what was being done and the OS error it got.
#[derive(Debug)]
pub struct Error {
    context: String,
    source: io::Error,
    hint: Option<&'static str>,
    note: Option<String>,
}

impl Error {
    /// Returns the error `source` that happened while doing `context`.
    pub fn new(context: impl Into<String>, source: io::Error) -> Self {
        Self {
            context: context.into(),
            source,
            hint: None,
            note: None,
        }
    }

    /// Adds a likely explanation, shown after the OS error.
    fn with_hint(mut self, hint: Option<&'static str>) -> Self {
        self.hint = hint;
        self
    }

    /// Adds what else happened because of the failure, shown last; it must
    /// be one line.
    fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    /// The errno of the failure, if it came from the OS.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        if let Some(note) = &self.note {
            write!(f, "; {note}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Issues `request` on `file` with a pointer to `arg`.
///
/// The one place the tool calls `ioctl(2)`. The ioctl support of `rustix`
/// or `nix` would not make the callers safe (their calls are `unsafe` as
/// well, the kernel's use of the argument being beyond what a type can
/// promise), and the request numbers come from the `uapi` crate, which the
/// kernel module compiles too and so cannot take from either.
///
/// # Safety
///
/// `request` must be an ioctl whose argument is a pointer to a `T` that the
/// kernel reads and writes within `size_of::<T>()` bytes, and any user
/// pointers inside `*arg` must be valid for what the kernel does with them.
pub(crate) unsafe fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: the fd is open for the life of `file`; the caller guarantees
    // that the kernel accesses only the `T` that `arg` points to.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The blksnap control device.
pub struct Control {
    file: File,
    path: PathBuf,
}

impl Control {
    /// Opens [`CONTROL_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(CONTROL_PATH)
    }

    /// Opens the control device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::new(format!("cannot open {}", path.display()), e))?;
        Ok(Self { file, path })
    }

    /// Returns the interface version the module speaks.
    pub fn version(&self) -> Result<uapi::BlksnapVersion> {
        let mut v = uapi::BlksnapVersion::default();
        // SAFETY: VERSION writes one `blksnap_version`.
        unsafe { ioctl(&self.file, uapi::BLKSNAP_IOCTL_VERSION, &mut v) }
            .map_err(|e| Error::new(format!("VERSION on {}", self.path.display()), e))?;
        Ok(v)
    }
}

/// A block device, for the filter ioctls of the blksnap filter.
pub struct BlockDevice {
    file: File,
    path: PathBuf,
}

/// What attaching the filter did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The filter was attached now.
    Now,
    /// The filter was attached already.
    Already,
}

/// Returns `name` NUL-padded to the filter-name field.
fn filter_name(name: &[u8]) -> [u8; uapi::BLKFILTER_NAME_LENGTH] {
    let mut out = [0u8; uapi::BLKFILTER_NAME_LENGTH];
    out[..name.len()].copy_from_slice(name);
    out
}

impl BlockDevice {
    /// Opens the block device node at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| Error::new(format!("cannot open {}", path.display()), e))?;
        Ok(Self { file, path })
    }

    fn context(&self, what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| Error::new(format!("{what} on {}", self.path.display()), e)
    }

    /// Attaches the blksnap filter (BLKFILTER_ATTACH).
    pub fn attach(&self) -> Result<Attached> {
        let mut arg = uapi::BlkfilterAttach {
            name: filter_name(uapi::BLKSNAP_FILTER_NAME),
            opt: 0,
            optlen: 0,
        };
        // SAFETY: BLKFILTER_ATTACH reads one `blkfilter_attach`; `opt` is 0.
        match unsafe { ioctl(&self.file, uapi::BLKFILTER_ATTACH, &mut arg) } {
            Ok(()) => Ok(Attached::Now),
            Err(e) if e.raw_os_error() == Some(libc::EALREADY) => Ok(Attached::Already),
            Err(e) => Err(self.context("attaching the blksnap filter")(e)),
        }
    }

    /// Detaches the blksnap filter (BLKFILTER_DETACH).
    pub fn detach(&self) -> Result<()> {
        let mut arg = uapi::BlkfilterDetach {
            name: filter_name(uapi::BLKSNAP_FILTER_NAME),
        };
        // SAFETY: BLKFILTER_DETACH reads one `blkfilter_detach`.
        unsafe { ioctl(&self.file, uapi::BLKFILTER_DETACH, &mut arg) }
            .map_err(self.context("detaching the blksnap filter"))
    }

    /// Sends blksnap sub-command `cmd` with its structure `opt` (BLKFILTER_CTL).
    ///
    /// Failures are described as `what` and, for the errnos that have one
    /// likely cause, explained.
    ///
    /// # Safety
    ///
    /// `T` must be the structure of sub-command `cmd`, and every user pointer
    /// in `*opt` must be valid for the access that sub-command makes of it.
    unsafe fn ctl<T>(&self, cmd: uapi::BlkfilterCtlBlksnap, opt: &mut T, what: &str) -> Result<()> {
        let mut arg = uapi::BlkfilterCtl {
            name: filter_name(uapi::BLKSNAP_FILTER_NAME),
            cmd: cmd as u32,
            optlen: size_of::<T>() as u32,
            opt: opt as *mut T as u64,
        };
        // SAFETY: BLKFILTER_CTL reads one `blkfilter_ctl`, and through `opt`
        // at most `optlen` = size_of::<T>() bytes of `*opt`, which the caller
        // vouches is the sub-command's structure with valid pointers.
        unsafe { ioctl(&self.file, uapi::BLKFILTER_CTL, &mut arg) }.map_err(|e| {
            let hint = ctl_hint(cmd, e.raw_os_error());
            self.context(what)(e).with_hint(hint)
        })
    }

    /// Reads the change-tracking state of the device (CBTINFO).
    pub fn cbt_info(&self) -> Result<CbtInfo> {
        let mut info = uapi::BlksnapCbtinfo::default();
        // SAFETY: CBTINFO writes one `blksnap_cbtinfo`, which has no pointers.
        unsafe {
            self.ctl(
                uapi::BlkfilterCtlBlksnap::Cbtinfo,
                &mut info,
                "reading the change-tracking info (CBTINFO)",
            )
        }?;
        Ok(info.into())
    }

    /// Copies `buf.len()` bytes of the CBT map, from byte (block) `offset`
    /// on, into `buf` (CBTMAP).
    ///
    /// The map is the read copy: one byte per block, the snapshot number of
    /// its last change. A range outside the map fails with ENODATA.
    pub fn cbt_map(&self, offset: u32, buf: &mut [u8]) -> Result<()> {
        let what = format!(
            "reading {} bytes of the CBT map at {offset} (CBTMAP)",
            buf.len()
        );
        let length = u32::try_from(buf.len()).map_err(|_| {
            self.context(&what)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer is larger than 4 GiB",
            ))
        })?;
        let mut arg = uapi::BlksnapCbtmap {
            offset,
            length,
            buffer: buf.as_mut_ptr() as u64,
        };
        // SAFETY: CBTMAP reads one `blksnap_cbtmap` and writes at most
        // `length` bytes to `buffer`, which is `buf`, valid and exclusively
        // borrowed for `buf.len()` = `length` bytes.
        unsafe { self.ctl(uapi::BlkfilterCtlBlksnap::Cbtmap, &mut arg, &what) }
    }

    /// Reads the whole CBT map, `block_count` bytes, in slices of
    /// [`CBT_MAP_SLICE`] bytes.
    pub fn read_cbt_map(&self) -> Result<Vec<u8>> {
        let info = self.cbt_info()?;
        let mut map = vec![0u8; info.block_count as usize];
        let mut offset = 0u32;
        for slice in map.chunks_mut(CBT_MAP_SLICE) {
            self.cbt_map(offset, slice)?;
            // Cannot wrap: the offsets stay below block_count, a u32.
            offset += slice.len() as u32;
        }
        Ok(map)
    }

    /// Marks the sector ranges `ranges` as changed in both copies of the CBT
    /// map (CBTDIRTY). An empty slice does nothing.
    pub fn mark_dirty(&self, ranges: &[Sectors]) -> Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        let what = format!("marking {} sector ranges dirty (CBTDIRTY)", ranges.len());
        let count = u32::try_from(ranges.len()).map_err(|_| {
            self.context(&what)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more than 2^32 - 1 ranges",
            ))
        })?;
        let array: Vec<uapi::BlksnapSectors> = ranges.iter().map(|&r| r.into()).collect();
        let mut arg = uapi::BlksnapCbtdirty {
            count,
            dirty_sectors: array.as_ptr() as u64,
        };
        // SAFETY: CBTDIRTY reads one `blksnap_cbtdirty` and `count`
        // `blksnap_sectors` from `dirty_sectors`, which is `array`: exactly
        // `count` elements, alive until this call returns.
        unsafe { self.ctl(uapi::BlkfilterCtlBlksnap::Cbtdirty, &mut arg, &what) }
    }
}

/// Bytes of the CBT map that [`BlockDevice::read_cbt_map`] asks for at once.
pub const CBT_MAP_SLICE: usize = 1 << 20;

/// Explains the errnos of BLKFILTER_CTL sub-command `cmd` that have one
/// likely cause.
fn ctl_hint(cmd: uapi::BlkfilterCtlBlksnap, errno: Option<i32>) -> Option<&'static str> {
    use uapi::BlkfilterCtlBlksnap as Cmd;
    match (cmd, errno?) {
        (_, libc::ENOENT) => Some("the blksnap filter is not attached to this device"),
        (Cmd::Snapshotadd, errno) => snapshot::snapshot_add_hint(Some(errno)),
        (Cmd::Cbtinfo | Cmd::Cbtmap | Cmd::Cbtdirty, libc::ESRCH) => {
            Some("the device has no change tracking yet")
        }
        _ => None,
    }
}

/// The change-tracking state of a device, from CBTINFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CbtInfo {
    /// Capacity of the device in bytes.
    pub device_capacity: u64,
    /// Size of one tracking block in bytes.
    pub block_size: u32,
    /// Number of tracking blocks, which is the size of the map in bytes.
    pub block_count: u32,
    /// Generation of the tracker; a new one means the map was reset.
    pub generation_id: Uuid,
    /// Snapshot number of the read copy of the map.
    pub changes_number: u8,
}

impl From<uapi::BlksnapCbtinfo> for CbtInfo {
    fn from(i: uapi::BlksnapCbtinfo) -> Self {
        Self {
            device_capacity: i.device_capacity,
            block_size: i.block_size,
            block_count: i.block_count,
            generation_id: Uuid::from_bytes(i.generation_id.b),
            changes_number: i.changes_number,
        }
    }
}

/// Formats CBT info the way `blksnap cbtinfo` prints it: five `key=value`
/// lines, each ending in a newline.
pub fn format_cbt_info(info: &CbtInfo) -> String {
    format!(
        "block_size={}\ndevice_capacity={}\nblock_count={}\ngeneration_id={}\nchanges_number={}\n",
        info.block_size,
        info.device_capacity,
        info.block_count,
        info.generation_id,
        info.changes_number
    )
}

/// Formats a version the way `blksnap version` prints it, `M.m.r.b`.
pub fn format_version(v: &uapi::BlksnapVersion) -> String {
    format!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uapi::BlkfilterCtlBlksnap as Cmd;

    #[test]
    fn version_is_dotted_quad() {
        let v = uapi::BlksnapVersion {
            major: 2,
            minor: 0,
            revision: 7,
            build: 1,
        };
        assert_eq!(format_version(&v), "2.0.7.1");
    }

    #[test]
    fn cbt_info_is_five_lines() {
        let raw = uapi::BlksnapCbtinfo {
            device_capacity: 10_737_418_240,
            block_size: 65536,
            block_count: 163_840,
            generation_id: uapi::BlksnapUuid {
                b: [
                    0x9f, 0x1c, 0x2a, 0x3b, 0x4c, 0x5d, 0x6e, 0x7f, 0x80, 0x91, 0xa2, 0xb3, 0xc4,
                    0xd5, 0xe6, 0xf7,
                ],
            },
            changes_number: 3,
        };
        assert_eq!(
            format_cbt_info(&raw.into()),
            "block_size=65536\n\
             device_capacity=10737418240\n\
             block_count=163840\n\
             generation_id=9f1c2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7\n\
             changes_number=3\n"
        );
        let max = CbtInfo {
            device_capacity: u64::MAX,
            block_size: u32::MAX,
            block_count: u32::MAX,
            generation_id: Uuid::from_bytes([0xff; 16]),
            changes_number: u8::MAX,
        };
        assert_eq!(
            format_cbt_info(&max),
            "block_size=4294967295\n\
             device_capacity=18446744073709551615\n\
             block_count=4294967295\n\
             generation_id=ffffffff-ffff-ffff-ffff-ffffffffffff\n\
             changes_number=255\n"
        );
    }

    #[test]
    fn ctl_errors_explain_enoent() {
        let err = Error::new(
            "reading the change-tracking info (CBTINFO) on /dev/loop0",
            io::Error::from_raw_os_error(libc::ENOENT),
        )
        .with_hint(ctl_hint(Cmd::Cbtinfo, Some(libc::ENOENT)));
        assert_eq!(err.errno(), Some(libc::ENOENT));
        let text = err.to_string();
        assert!(
            text.starts_with("reading the change-tracking info (CBTINFO) on /dev/loop0: "),
            "{text}"
        );
        assert!(
            text.ends_with("; the blksnap filter is not attached to this device"),
            "{text}"
        );
        assert_eq!(ctl_hint(Cmd::Cbtinfo, Some(libc::EINVAL)), None);
        assert_eq!(ctl_hint(Cmd::Cbtinfo, None), None);
    }

    #[test]
    fn ctl_hints_depend_on_the_sub_command() {
        let not_attached = Some("the blksnap filter is not attached to this device");
        for cmd in [
            Cmd::Cbtinfo,
            Cmd::Cbtmap,
            Cmd::Cbtdirty,
            Cmd::Snapshotadd,
            Cmd::Snapshotinfo,
        ] {
            assert_eq!(ctl_hint(cmd, Some(libc::ENOENT)), not_attached, "{cmd:?}");
        }
        // ESRCH: no CBT for the CBT commands, no such snapshot for SNAPSHOTADD.
        let no_cbt = Some("the device has no change tracking yet");
        assert_eq!(ctl_hint(Cmd::Cbtmap, Some(libc::ESRCH)), no_cbt);
        assert_eq!(
            ctl_hint(Cmd::Snapshotadd, Some(libc::ESRCH)),
            Some("no snapshot has this id")
        );
        assert_eq!(
            ctl_hint(Cmd::Snapshotadd, Some(libc::EALREADY)),
            Some("the device is in this snapshot already")
        );
        assert_eq!(ctl_hint(Cmd::Snapshotinfo, Some(libc::ESRCH)), None);
        assert_eq!(ctl_hint(Cmd::Cbtinfo, Some(libc::EBUSY)), None);
    }

    #[test]
    fn notes_come_after_the_hint_on_one_line() {
        let err = Error::new(
            "adding /dev/loop0",
            io::Error::from_raw_os_error(libc::EBUSY),
        )
        .with_hint(Some("the device is in another snapshot"))
        .with_note("snapshot x was destroyed".to_owned());
        let text = err.to_string();
        assert!(text.starts_with("adding /dev/loop0: "), "{text}");
        assert!(
            text.ends_with("; the device is in another snapshot; snapshot x was destroyed"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn ctl_on_a_non_block_device_fails_with_context() {
        // /dev/null takes no BLKFILTER_CTL; the error names the operation.
        let dev = BlockDevice::open("/dev/null").unwrap();
        let err = dev.cbt_info().unwrap_err();
        assert!(err.errno().is_some());
        assert!(err.to_string().contains("CBTINFO"), "{err}");
        assert!(err.to_string().contains("/dev/null"), "{err}");
        let err = dev.mark_dirty(&[Sectors::new(0, 8)]).unwrap_err();
        assert!(err.to_string().contains("CBTDIRTY"), "{err}");
        assert!(dev.mark_dirty(&[]).is_ok());
        let err = dev.cbt_map(0, &mut [0u8; 16]).unwrap_err();
        assert!(err.to_string().contains("CBTMAP"), "{err}");
    }

    #[test]
    fn missing_device_reports_path_and_errno() {
        let err = Control::open_path("/nonexistent/blksnap-control")
            .err()
            .expect("opening a missing path must fail");
        assert_eq!(err.errno(), Some(libc::ENOENT));
        assert!(err.to_string().contains("/nonexistent/blksnap-control"));
    }
}
