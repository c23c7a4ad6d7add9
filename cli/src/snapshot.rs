//! Snapshots: the control-device ioctls and the filter sub-commands that
//! create, fill, take, list, watch and destroy them.
//!
//! A snapshot lives in the module and is named by the [`Uuid`] that
//! SNAPSHOT_CREATE returns. [`Control`] creates, takes, destroys, lists and
//! waits on snapshots through `/dev/blksnap-control`; a member device joins
//! one through its own filter, with the SNAPSHOTADD sub-command of
//! BLKFILTER_CTL ([`BlockDevice::snapshot_add`]), and SNAPSHOTINFO reports
//! its state and image ([`BlockDevice::snapshot_info`]).
//!
//! [`Control::snapshot_create_with_devices`] is what `snapshot_create -d`
//! does: it creates the snapshot, attaches the filter where it is missing
//! and adds each device; when a device cannot be added, it destroys the
//! snapshot it created, so that a failed command leaves none behind.
//! [`Control::events`] waits for events in a loop, for `snapshot_watcher`,
//! until the snapshot is gone.
//!
//! The `format_*` functions give the text the `blksnap` commands print.

use std::ffi::CString;
use std::io;
use std::iter::FusedIterator;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::event::{Event, WaitResult};
use crate::{ioctl, uapi, Attached, BlockDevice, Control, Error, Result, Uuid};

/// How many times [`Control::snapshot_collect`] asks again when snapshots
/// appear between counting them and fetching their identifiers.
const COLLECT_TRIES: usize = 8;

/// How long each wait of [`Control::events`] lasts, in milliseconds: how
/// soon it notices a snapshot destroyed while no wait was under way.
pub const EVENTS_WAIT_MS: u32 = 1000;

/// Returns `id` as the module's UUID structure.
fn raw_id(id: &Uuid) -> uapi::BlksnapUuid {
    uapi::BlksnapUuid { b: *id.as_bytes() }
}

/// Returns an `InvalidInput` error with `message`.
fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_owned())
}

/// Whether `path` is of a kind SNAPSHOT_CREATE takes as difference
/// storage (a regular file, a directory or a block device), as far as this
/// process sees it; `None` if it cannot be looked at.
fn is_storage_kind(path: &Path) -> Option<bool> {
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(kind.is_file() || kind.is_dir() || kind.is_block_device())
}

/// Explains the errnos of SNAPSHOT_CREATE, for a storage of a kind it takes
/// or not (`kind_ok`, `None` if unknown). Its EINVAL is either the kind of
/// the storage or the placement rule (Documentation/blksnap.rst, "Where
/// the storage may live"), its EBUSY a storage in use; the module logs each
/// placement it refuses.
fn create_hint(errno: Option<i32>, kind_ok: Option<bool>) -> Option<&'static str> {
    match (errno?, kind_ok) {
        (libc::EINVAL, Some(false)) => Some(
            "the difference storage must be an existing regular file, directory or block \
             device, and this is none of them",
        ),
        (libc::EINVAL, Some(true)) => Some(
            "the module refused where the difference storage lies: a device in another \
             snapshot keeps its data in it (the storage device itself or a partition of it, \
             a loop device backed by the storage file, a dm or md device over it), or the \
             devices below it are too many to check (over 64 in all); the kernel log \
             (dmesg) says why",
        ),
        (libc::EINVAL, None) => Some(
            "the difference storage must be an existing regular file, directory or block \
             device in which no device of another snapshot keeps its data (the storage \
             device itself or a partition of it, a loop device backed by the storage file, \
             a dm or md device over it), with at most 64 devices below it; the kernel log \
             (dmesg) says why",
        ),
        (libc::EBUSY, _) => Some(
            "the difference storage overlaps the storage of another snapshot (the same file \
             or device under any name, or one lying on the other), or it is a block device \
             that is a partition of a device in another snapshot or is held by someone else \
             (mounted, part of a dm or md device); the kernel log (dmesg) says why, unless \
             a device was held",
        ),
        (libc::ENOENT, _) => Some("the difference storage does not exist"),
        _ => None,
    }
}

/// Explains the errnos of SNAPSHOT_DESTROY that have one likely cause.
fn destroy_hint(errno: Option<i32>) -> Option<&'static str> {
    match errno? {
        libc::ESRCH | libc::ENODEV => Some("no snapshot has this id"),
        _ => None,
    }
}

/// Explains the errnos of SNAPSHOT_TAKE that have one likely cause.
fn take_hint(errno: Option<i32>) -> Option<&'static str> {
    match errno? {
        libc::ESRCH => Some("no snapshot has this id"),
        libc::EALREADY => Some("the snapshot is taken already"),
        libc::ENODEV => Some("no device has been added to the snapshot"),
        _ => None,
    }
}

/// Explains nothing: for the ioctls whose errnos have no single cause.
fn no_hint(_errno: Option<i32>) -> Option<&'static str> {
    None
}

impl Control {
    /// Issues `request` on the control device with `arg`; a failure is
    /// described as `what` and, where `hint` has one, explained.
    ///
    /// # Safety
    ///
    /// As for [`ioctl`]: `request` must take a pointer to a `T`, and every
    /// user pointer in `*arg` must be valid for what the module does with it.
    unsafe fn call<T>(
        &self,
        request: u32,
        arg: &mut T,
        what: &str,
        hint: fn(Option<i32>) -> Option<&'static str>,
    ) -> Result<()> {
        // SAFETY: the caller's guarantees are those `ioctl` asks for.
        unsafe { ioctl(&self.file, request, arg) }.map_err(|e| self.fail(what, hint, e))
    }

    /// Returns the error `e` of doing `what`, explained by `hint`.
    fn fail(
        &self,
        what: &str,
        hint: fn(Option<i32>) -> Option<&'static str>,
        e: io::Error,
    ) -> Error {
        let explained = hint(e.raw_os_error());
        self.explained(what, e, explained)
    }

    /// Returns the error `e` of doing `what`, with `hint` after it.
    fn explained(&self, what: &str, e: io::Error, hint: Option<&'static str>) -> Error {
        Error::new(format!("{what} on {}", self.path.display()), e).with_hint(hint)
    }

    /// Creates a snapshot whose difference storage is `storage`, allowed to
    /// grow to `limit_sectors` 512-byte sectors (SNAPSHOT_CREATE), and
    /// returns its identifier.
    ///
    /// `storage` is an existing regular file (used and grown up to the
    /// limit), a directory (an unnamed file is made in it and vanishes with
    /// the snapshot) or a block device (used whole, never grown). A relative
    /// path is taken from the current directory. A limit of 0 means the
    /// storage is not grown beyond the size it has.
    pub fn snapshot_create(&self, storage: impl AsRef<Path>, limit_sectors: u64) -> Result<Uuid> {
        let storage = storage.as_ref();
        let what = format!(
            "creating a snapshot with difference storage {} (SNAPSHOT_CREATE)",
            storage.display()
        );
        let absolute = std::path::absolute(storage).map_err(|e| self.fail(&what, no_hint, e))?;
        let path = CString::new(absolute.as_os_str().as_bytes()).map_err(|_| {
            self.fail(
                &what,
                no_hint,
                invalid_input("the path contains a NUL byte"),
            )
        })?;
        let mut arg = uapi::BlksnapSnapshotCreate {
            diff_storage_limit_sect: limit_sectors,
            diff_storage_filename: path.as_ptr() as u64,
            id: uapi::BlksnapUuid::default(),
        };
        // SAFETY: SNAPSHOT_CREATE reads and writes one
        // `blksnap_snapshot_create` and reads the NUL-terminated string at
        // `diff_storage_filename`, which is `path`, alive until it returns.
        unsafe { ioctl(&self.file, uapi::BLKSNAP_IOCTL_SNAPSHOT_CREATE, &mut arg) }.map_err(
            |e| {
                // The module answers EINVAL for the kind of the storage and
                // for where it lies: what the kind is tells them apart.
                let hint = create_hint(e.raw_os_error(), is_storage_kind(&absolute));
                self.explained(&what, e, hint)
            },
        )?;
        Ok(Uuid::from_bytes(arg.id.b))
    }

    /// Creates a snapshot as [`snapshot_create`](Self::snapshot_create)
    /// does, then adds each of `devices` to it, attaching the filter where
    /// it is not attached yet ([`BlockDevice::attach_and_add`]).
    ///
    /// If a device cannot be added, the snapshot is destroyed again and the
    /// error of that device is returned, noting whether destroying worked.
    pub fn snapshot_create_with_devices(
        &self,
        storage: impl AsRef<Path>,
        limit_sectors: u64,
        devices: &[BlockDevice],
    ) -> Result<Uuid> {
        let id = self.snapshot_create(storage, limit_sectors)?;
        add_or_destroy(
            id,
            devices,
            |dev| dev.attach_and_add(&id).map(|_| ()),
            || self.snapshot_destroy(&id),
        )
    }

    /// Destroys snapshot `id` (SNAPSHOT_DESTROY): its images go away and
    /// its difference storage is released; the filters stay attached.
    pub fn snapshot_destroy(&self, id: &Uuid) -> Result<()> {
        let mut arg = raw_id(id);
        let what = format!("destroying snapshot {id} (SNAPSHOT_DESTROY)");
        // SAFETY: SNAPSHOT_DESTROY reads one `blksnap_uuid`.
        unsafe {
            self.call(
                uapi::BLKSNAP_IOCTL_SNAPSHOT_DESTROY,
                &mut arg,
                &what,
                destroy_hint,
            )
        }
    }

    /// Takes snapshot `id` (SNAPSHOT_TAKE): one coherent moment of all its
    /// devices, after which their images appear.
    pub fn snapshot_take(&self, id: &Uuid) -> Result<()> {
        let mut arg = raw_id(id);
        let what = format!("taking snapshot {id} (SNAPSHOT_TAKE)");
        // SAFETY: SNAPSHOT_TAKE reads one `blksnap_uuid`.
        unsafe {
            self.call(
                uapi::BLKSNAP_IOCTL_SNAPSHOT_TAKE,
                &mut arg,
                &what,
                take_hint,
            )
        }
    }

    /// Returns the identifiers of all snapshots (SNAPSHOT_COLLECT).
    ///
    /// The first call counts them, the second fetches that many; if more
    /// appeared in between (ENODATA), it starts over, a few times.
    pub fn snapshot_collect(&self) -> Result<Vec<Uuid>> {
        let mut last = None;
        for _ in 0..COLLECT_TRIES {
            let mut count = uapi::BlksnapSnapshotCollect { count: 0, ids: 0 };
            // SAFETY: SNAPSHOT_COLLECT reads and writes one
            // `blksnap_snapshot_collect`; with `ids` = 0 it only counts.
            unsafe {
                self.call(
                    uapi::BLKSNAP_IOCTL_SNAPSHOT_COLLECT,
                    &mut count,
                    "counting the snapshots (SNAPSHOT_COLLECT)",
                    no_hint,
                )
            }?;
            if count.count == 0 {
                return Ok(Vec::new());
            }
            let mut ids = vec![uapi::BlksnapUuid::default(); count.count as usize];
            let mut arg = uapi::BlksnapSnapshotCollect {
                count: count.count,
                ids: ids.as_mut_ptr() as u64,
            };
            // SAFETY: SNAPSHOT_COLLECT reads and writes one
            // `blksnap_snapshot_collect` and writes at most `count`
            // `blksnap_uuid`s to `ids`, which is `ids`: `count` elements,
            // exclusively borrowed until it returns.
            match unsafe { ioctl(&self.file, uapi::BLKSNAP_IOCTL_SNAPSHOT_COLLECT, &mut arg) } {
                Ok(()) => {
                    ids.truncate(arg.count as usize);
                    return Ok(ids.iter().map(|id| Uuid::from_bytes(id.b)).collect());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => last = Some(e),
                Err(e) => {
                    return Err(self.fail("listing the snapshots (SNAPSHOT_COLLECT)", no_hint, e))
                }
            }
        }
        let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENODATA));
        Err(self
            .fail("listing the snapshots (SNAPSHOT_COLLECT)", no_hint, e)
            .with_hint(Some("snapshots kept being created while they were listed")))
    }

    /// Waits up to `timeout_ms` milliseconds for the next event of snapshot
    /// `id` (SNAPSHOT_WAIT_EVENT).
    ///
    /// The timeout, a signal and an unknown snapshot are outcomes, not
    /// errors: [`WaitResult::Timeout`], [`WaitResult::Interrupted`] and
    /// [`WaitResult::NotFound`]. Other failures are errors.
    pub fn wait_event(&self, id: &Uuid, timeout_ms: u32) -> Result<WaitResult> {
        let mut arg = uapi::BlksnapSnapshotEvent {
            id: raw_id(id),
            timeout_ms,
            ..uapi::BlksnapSnapshotEvent::default()
        };
        // SAFETY: SNAPSHOT_WAIT_EVENT reads and writes one
        // `blksnap_snapshot_event`, which has no pointers.
        match unsafe {
            ioctl(
                &self.file,
                uapi::BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT,
                &mut arg,
            )
        } {
            Ok(()) => Ok(WaitResult::Event(Event::from_raw(&arg))),
            Err(e) => WaitResult::from_errno(e.raw_os_error()).ok_or_else(|| {
                let what = format!("waiting for an event of snapshot {id} (SNAPSHOT_WAIT_EVENT)");
                self.fail(&what, no_hint, e)
            }),
        }
    }

    /// Returns the events of snapshot `id` as they come, until it no longer
    /// exists; timeouts and signals only make it wait again. Each wait lasts
    /// [`EVENTS_WAIT_MS`].
    pub fn events(&self, id: Uuid) -> Events<'_> {
        Events {
            control: self,
            id,
            done: false,
        }
    }
}

/// Adds each of `devices` to snapshot `id` with `add`; on the first failure
/// destroys the snapshot with `destroy` and returns that failure, noting
/// what became of the snapshot.
fn add_or_destroy<D>(
    id: Uuid,
    devices: &[D],
    mut add: impl FnMut(&D) -> Result<()>,
    destroy: impl FnOnce() -> Result<()>,
) -> Result<Uuid> {
    for device in devices {
        if let Err(err) = add(device) {
            let note = match destroy() {
                Ok(()) => format!("snapshot {id} was destroyed"),
                Err(e) => format!("snapshot {id} remains, destroying it failed: {e}"),
            };
            return Err(err.with_note(note));
        }
    }
    Ok(id)
}

/// The events of a snapshot, from [`Control::events`].
///
/// Yields each event, ends when the snapshot does not exist (any more), and
/// ends after yielding an error.
pub struct Events<'a> {
    control: &'a Control,
    id: Uuid,
    done: bool,
}

/// Waits with `wait` until it gives an event or the end: the next item of
/// an event iterator whose end is recorded in `done`.
fn next_event(
    done: &mut bool,
    mut wait: impl FnMut() -> Result<WaitResult>,
) -> Option<Result<Event>> {
    while !*done {
        match wait() {
            Ok(WaitResult::Event(event)) => return Some(Ok(event)),
            Ok(WaitResult::Timeout | WaitResult::Interrupted) => {}
            Ok(WaitResult::NotFound) => *done = true,
            Err(e) => {
                *done = true;
                return Some(Err(e));
            }
        }
    }
    None
}

impl Iterator for Events<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        let (control, id) = (self.control, self.id);
        next_event(&mut self.done, || control.wait_event(&id, EVENTS_WAIT_MS))
    }
}

impl FusedIterator for Events<'_> {}

/// Explains the errnos of SNAPSHOTADD that have one likely cause.
pub(crate) fn snapshot_add_hint(errno: Option<i32>) -> Option<&'static str> {
    match errno? {
        libc::ENOENT => Some("the blksnap filter is not attached to this device"),
        libc::ESRCH => Some("no snapshot has this id"),
        libc::EALREADY => Some("the device is in this snapshot already"),
        libc::EBUSY => Some("the device is in another snapshot, or this one is taken already"),
        libc::EINVAL => Some(
            "the device holds the snapshot's difference storage, which cannot be in-volume \
             storage (a regular file, fully allocated, at least diff_storage_minimum sectors; \
             the kernel log says why)",
        ),
        libc::EOPNOTSUPP => Some("in-volume difference storage must be a file on ext4 or xfs"),
        libc::EPERM => {
            Some("devices with integrity metadata or inline encryption cannot be in a snapshot")
        }
        _ => None,
    }
}

impl BlockDevice {
    /// Adds the device to snapshot `id` (SNAPSHOTADD). The blksnap filter
    /// must be attached.
    pub fn snapshot_add(&self, id: &Uuid) -> Result<()> {
        let mut arg = uapi::BlksnapSnapshotadd { id: raw_id(id) };
        let what = format!("adding the device to snapshot {id} (SNAPSHOTADD)");
        // SAFETY: SNAPSHOTADD reads one `blksnap_snapshotadd`, which has no
        // pointers.
        unsafe { self.ctl(uapi::BlkfilterCtlBlksnap::Snapshotadd, &mut arg, &what) }
    }

    /// Attaches the blksnap filter if it is not attached yet, then adds the
    /// device to snapshot `id`; returns what attaching did.
    pub fn attach_and_add(&self, id: &Uuid) -> Result<Attached> {
        let attached = self.attach()?;
        self.snapshot_add(id)?;
        Ok(attached)
    }

    /// Reads the state of the device's snapshot (SNAPSHOTINFO).
    pub fn snapshot_info(&self) -> Result<SnapshotInfo> {
        let mut info = uapi::BlksnapSnapshotinfo {
            error_code: 0,
            image: [0; uapi::IMAGE_DISK_NAME_LEN],
        };
        // SAFETY: SNAPSHOTINFO writes one `blksnap_snapshotinfo`, which has
        // no pointers.
        unsafe {
            self.ctl(
                uapi::BlkfilterCtlBlksnap::Snapshotinfo,
                &mut info,
                "reading the snapshot info (SNAPSHOTINFO)",
            )
        }?;
        Ok(info.into())
    }
}

/// The snapshot state of a device, from SNAPSHOTINFO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// 0, or the negative errno that broke the snapshot (`-ENOSPC` after
    /// the difference storage overflowed).
    pub error_code: i32,
    /// Disk name of the snapshot image, without `/dev/`; empty before the
    /// snapshot is taken.
    pub image: String,
}

impl SnapshotInfo {
    /// Returns the device node of the image, `/dev/NAME`, if there is one.
    pub fn image_path(&self) -> Option<PathBuf> {
        (!self.image.is_empty()).then(|| Path::new("/dev").join(&self.image))
    }

    /// Returns the image's device node as text, as the upstream tool prints
    /// it: `/dev/NAME`, or `/dev/` alone if there is none.
    fn image_text(&self) -> String {
        format!("/dev/{}", self.image)
    }
}

impl From<uapi::BlksnapSnapshotinfo> for SnapshotInfo {
    fn from(i: uapi::BlksnapSnapshotinfo) -> Self {
        let name = i.image.split(|&b| b == 0).next().unwrap_or_default();
        Self {
            error_code: i.error_code,
            image: String::from_utf8_lossy(name).into_owned(),
        }
    }
}

/// One field of [`SnapshotInfo`], for `snapshot_info --field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoField {
    /// The image's device node, `/dev/NAME`, or nothing before the take.
    #[value(name = "image")]
    Image,
    /// 0, or the negative errno that broke the snapshot.
    #[value(name = "error_code")]
    ErrorCode,
}

/// Formats snapshot info the way `blksnap snapshot_info` prints it:
/// `error_code=N` and `image=/dev/NAME` (`image=/dev/` before the take, as
/// the upstream tool prints it), each line ending in a newline.
pub fn format_snapshot_info(info: &SnapshotInfo) -> String {
    format!(
        "error_code={}\nimage={}\n",
        info.error_code,
        info.image_text()
    )
}

/// Formats one field the way `blksnap snapshot_info --field` prints it:
/// only the value, on one line (`/dev/` for an image not there yet).
pub fn format_snapshot_info_field(info: &SnapshotInfo, field: InfoField) -> String {
    match field {
        InfoField::Image => format!("{}\n", info.image_text()),
        InfoField::ErrorCode => format!("{}\n", info.error_code),
    }
}

/// Formats snapshot identifiers the way `snapshot_create` prints them: one
/// per line.
pub fn format_ids(ids: &[Uuid]) -> String {
    ids.iter().map(|id| format!("{id}\n")).collect()
}

/// Formats snapshot identifiers the way `snapshot_collect` prints them, as
/// the upstream tool does: each followed by a space on its own line, then
/// an empty line (only the empty line when there are none).
pub fn format_collect(ids: &[Uuid]) -> String {
    ids.iter().map(|id| format!("{id} \n")).collect::<String>() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use std::cell::RefCell;

    const ID: Uuid = Uuid::from_bytes([
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32,
        0x10,
    ]);

    fn raw_info(error_code: i32, image: &[u8]) -> uapi::BlksnapSnapshotinfo {
        let mut raw = uapi::BlksnapSnapshotinfo {
            error_code,
            image: [0; uapi::IMAGE_DISK_NAME_LEN],
        };
        raw.image[..image.len()].copy_from_slice(image);
        raw
    }

    #[test]
    fn info_decodes_the_image_name() {
        let info = SnapshotInfo::from(raw_info(0, b"blksnap-7-0"));
        assert_eq!(info.error_code, 0);
        assert_eq!(info.image, "blksnap-7-0");
        assert_eq!(info.image_path(), Some(PathBuf::from("/dev/blksnap-7-0")));
        // Bytes after the NUL are not part of the name.
        let info = SnapshotInfo::from(raw_info(-28, b"blksnap-259-1\0junk"));
        assert_eq!(info.image, "blksnap-259-1");
        assert_eq!(info.error_code, -28);
        // A name filling all 32 bytes, without a NUL, is taken whole.
        let info = SnapshotInfo::from(raw_info(0, &[b'x'; 32]));
        assert_eq!(info.image, "x".repeat(32));
        let info = SnapshotInfo::from(raw_info(0, b""));
        assert_eq!(info.image, "");
        assert_eq!(info.image_path(), None);
    }

    #[test]
    fn info_is_two_lines() {
        let taken = SnapshotInfo {
            error_code: 0,
            image: "blksnap-7-0".into(),
        };
        assert_eq!(
            format_snapshot_info(&taken),
            "error_code=0\nimage=/dev/blksnap-7-0\n"
        );
        let broken = SnapshotInfo {
            error_code: -28,
            image: "blksnap-252-16".into(),
        };
        assert_eq!(
            format_snapshot_info(&broken),
            "error_code=-28\nimage=/dev/blksnap-252-16\n"
        );
        assert_eq!(
            format_snapshot_info(&SnapshotInfo::default()),
            "error_code=0\nimage=/dev/\n"
        );
    }

    #[test]
    fn info_field_is_the_value_alone() {
        let info = SnapshotInfo {
            error_code: -5,
            image: "blksnap-7-2".into(),
        };
        assert_eq!(
            format_snapshot_info_field(&info, InfoField::Image),
            "/dev/blksnap-7-2\n"
        );
        assert_eq!(
            format_snapshot_info_field(&info, InfoField::ErrorCode),
            "-5\n"
        );
        let empty = SnapshotInfo::default();
        assert_eq!(
            format_snapshot_info_field(&empty, InfoField::Image),
            "/dev/\n"
        );
        assert_eq!(
            format_snapshot_info_field(&empty, InfoField::ErrorCode),
            "0\n"
        );
    }

    #[test]
    fn ids_are_one_per_line() {
        assert_eq!(format_ids(&[]), "");
        assert_eq!(format_ids(&[ID]), "01234567-89ab-cdef-fedc-ba9876543210\n");
        assert_eq!(
            format_ids(&[ID, Uuid::default()]),
            "01234567-89ab-cdef-fedc-ba9876543210\n\
             00000000-0000-0000-0000-000000000000\n"
        );
    }

    #[test]
    fn collect_is_the_upstream_tools_list() {
        assert_eq!(format_collect(&[]), "\n");
        assert_eq!(
            format_collect(&[ID]),
            "01234567-89ab-cdef-fedc-ba9876543210 \n\n"
        );
        assert_eq!(
            format_collect(&[ID, Uuid::default()]),
            "01234567-89ab-cdef-fedc-ba9876543210 \n\
             00000000-0000-0000-0000-000000000000 \n\n"
        );
    }

    /// An error with `errno` while doing `what`.
    fn os_error(what: &str, errno: i32) -> Error {
        Error::new(what, io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn adding_all_devices_keeps_the_snapshot() {
        let added = RefCell::new(Vec::new());
        let got = add_or_destroy(
            ID,
            &["/dev/loop0", "/dev/loop1"],
            |d| {
                added.borrow_mut().push(*d);
                Ok(())
            },
            || panic!("destroyed although every device was added"),
        );
        assert_eq!(got.unwrap(), ID);
        assert_eq!(*added.borrow(), ["/dev/loop0", "/dev/loop1"]);
        // No devices: the snapshot is kept as created.
        let none: [&str; 0] = [];
        let got = add_or_destroy(ID, &none, |_| unreachable!(), || unreachable!());
        assert_eq!(got.unwrap(), ID);
    }

    #[test]
    fn a_failed_add_destroys_the_snapshot() {
        let destroyed = RefCell::new(0);
        let added = RefCell::new(Vec::new());
        let err = add_or_destroy(
            ID,
            &["/dev/loop0", "/dev/loop1", "/dev/loop2"],
            |d| {
                added.borrow_mut().push(*d);
                if *d == "/dev/loop1" {
                    Err(os_error("adding /dev/loop1", libc::EBUSY))
                } else {
                    Ok(())
                }
            },
            || {
                *destroyed.borrow_mut() += 1;
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(*destroyed.borrow(), 1);
        assert_eq!(*added.borrow(), ["/dev/loop0", "/dev/loop1"]);
        assert_eq!(err.errno(), Some(libc::EBUSY));
        let text = err.to_string();
        assert!(text.starts_with("adding /dev/loop1: "), "{text}");
        assert!(
            text.ends_with("; snapshot 01234567-89ab-cdef-fedc-ba9876543210 was destroyed"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn a_failed_destroy_is_reported_with_the_add_error() {
        let err = add_or_destroy(
            ID,
            &["/dev/loop0"],
            |_| Err(os_error("adding /dev/loop0", libc::EPERM)),
            || Err(os_error("destroying", libc::ENOMEM)),
        )
        .unwrap_err();
        assert_eq!(err.errno(), Some(libc::EPERM));
        let text = err.to_string();
        assert!(text.starts_with("adding /dev/loop0: "), "{text}");
        assert!(
            text.contains(
                "; snapshot 01234567-89ab-cdef-fedc-ba9876543210 remains, destroying it failed: \
                 destroying: "
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    fn event(time_label: i64) -> Event {
        Event {
            time_label,
            kind: EventKind::NoSpace {
                requested_sectors: 8,
            },
        }
    }

    /// Runs the event loop over the scripted outcomes `script`, collecting
    /// what it yields; returns that and how many waits it made.
    fn run_events(script: Vec<Result<WaitResult>>) -> (Vec<Result<Event>>, usize) {
        let mut script = script.into_iter();
        let mut waits = 0;
        let mut done = false;
        let mut out = Vec::new();
        let mut wait = || {
            waits += 1;
            script.next().expect("waited past the end of the script")
        };
        while let Some(item) = next_event(&mut done, &mut wait) {
            out.push(item);
        }
        // Ended: stays ended without waiting again.
        assert!(next_event(&mut done, &mut wait).is_none());
        (out, waits)
    }

    #[test]
    fn events_skip_timeouts_and_signals_and_end_with_the_snapshot() {
        let (out, waits) = run_events(vec![
            Ok(WaitResult::Timeout),
            Ok(WaitResult::Event(event(1))),
            Ok(WaitResult::Interrupted),
            Ok(WaitResult::Timeout),
            Ok(WaitResult::Event(event(2))),
            Ok(WaitResult::NotFound),
        ]);
        let times: Vec<_> = out.iter().map(|e| e.as_ref().unwrap().time_label).collect();
        assert_eq!(times, [1, 2]);
        assert_eq!(waits, 6);
    }

    #[test]
    fn events_end_at_once_for_an_unknown_snapshot() {
        let (out, waits) = run_events(vec![Ok(WaitResult::NotFound)]);
        assert!(out.is_empty());
        assert_eq!(waits, 1);
    }

    #[test]
    fn events_end_after_an_error() {
        let (out, waits) = run_events(vec![
            Ok(WaitResult::Event(event(1))),
            Err(os_error("waiting", libc::EFAULT)),
        ]);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().errno(), Some(libc::EFAULT));
        assert_eq!(waits, 2);
    }

    #[test]
    fn hints_name_the_likely_cause() {
        assert_eq!(
            snapshot_add_hint(Some(libc::ESRCH)),
            Some("no snapshot has this id")
        );
        assert_eq!(
            snapshot_add_hint(Some(libc::EBUSY)),
            Some("the device is in another snapshot, or this one is taken already")
        );
        assert!(snapshot_add_hint(Some(libc::EINVAL))
            .unwrap()
            .starts_with("the device holds the snapshot's difference storage, which cannot"));
        assert!(snapshot_add_hint(Some(libc::EOPNOTSUPP))
            .unwrap()
            .contains("ext4 or xfs"));
        assert_eq!(snapshot_add_hint(Some(libc::EIO)), None);
        assert_eq!(snapshot_add_hint(None), None);
        assert_eq!(
            take_hint(Some(libc::ENODEV)),
            Some("no device has been added to the snapshot")
        );
        assert_eq!(
            destroy_hint(Some(libc::ENODEV)),
            Some("no snapshot has this id")
        );
        assert_eq!(no_hint(Some(libc::EINVAL)), None);
    }

    #[test]
    fn create_hints_tell_the_kind_from_the_placement() {
        let hint = |errno, kind| create_hint(Some(errno), kind).unwrap();
        let wrong_kind = hint(libc::EINVAL, Some(false));
        assert!(wrong_kind.starts_with("the difference storage must be an existing regular file"));
        assert!(!wrong_kind.contains("dmesg"), "{wrong_kind}");
        // A storage of a kind the module takes was refused for where it
        // lies, which the module logged.
        let placed = hint(libc::EINVAL, Some(true));
        assert!(placed.starts_with("the module refused where the difference storage lies"));
        assert!(!placed.contains("must be"), "{placed}");
        // Not knowing the kind, both, and the log.
        let either = hint(libc::EINVAL, None);
        assert!(
            either.contains("regular file, directory or block device"),
            "{either}"
        );
        assert!(
            either.contains("another snapshot keeps its data"),
            "{either}"
        );
        for text in [placed, either, hint(libc::EBUSY, Some(true))] {
            assert!(
                text.contains("a loop device") || text.contains("mounted"),
                "{text}"
            );
            assert!(text.contains("the kernel log (dmesg)"), "{text}");
        }
        assert_eq!(hint(libc::EBUSY, None), hint(libc::EBUSY, Some(true)));
        assert_eq!(
            hint(libc::ENOENT, None),
            "the difference storage does not exist"
        );
        assert_eq!(create_hint(Some(libc::EIO), Some(true)), None);
        assert_eq!(create_hint(None, Some(false)), None);
        // Every hint is one line, as errors are.
        for kind in [None, Some(false), Some(true)] {
            for errno in [libc::EINVAL, libc::EBUSY] {
                assert_eq!(hint(errno, kind).lines().count(), 1);
            }
        }
    }

    #[test]
    fn storage_kinds_are_those_the_module_takes() {
        let dir = std::env::temp_dir();
        assert_eq!(is_storage_kind(&dir), Some(true));
        let file = dir.join(format!("blksnap-kind-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        assert_eq!(is_storage_kind(&file), Some(true));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(is_storage_kind(&file), None);
        assert_eq!(is_storage_kind(Path::new("/dev/null")), Some(false));
    }

    #[test]
    fn snapshot_ctl_on_a_non_block_device_fails_with_context() {
        // /dev/null takes no BLKFILTER_CTL; the error names the operation.
        let dev = BlockDevice::open("/dev/null").unwrap();
        let err = dev.snapshot_info().unwrap_err();
        assert!(err.errno().is_some());
        assert!(err.to_string().contains("SNAPSHOTINFO"), "{err}");
        assert!(err.to_string().contains("/dev/null"), "{err}");
        let err = dev.snapshot_add(&ID).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SNAPSHOTADD"), "{text}");
        assert!(text.contains(&ID.to_string()), "{text}");
        // Attaching fails first.
        let err = dev.attach_and_add(&ID).unwrap_err();
        assert!(err.to_string().contains("attaching"), "{err}");
    }
}
