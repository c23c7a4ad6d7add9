//! In-volume difference storage: a preallocated file on a file system of a
//! snapshot's own member device.
//!
//! When a device is added to a snapshot whose difference storage is a
//! regular file on that device (or on a partition of it), the module pins
//! the file, writes the copies straight into its extents below the file
//! system, and makes the image read those extents as zeroes. The file must
//! be fully allocated, on ext4 or xfs, and at least `diff_storage_minimum`
//! sectors long; it never grows.
//!
//! [`StorageFile::create`] makes such a file, for `snapshot_create
//! --in-volume-size` and for `backup` without `--file`: a new file, mode
//! 0600, allocated with `fallocate` (unwritten extents, no data written),
//! synced with its directory, refused (and removed) on any other file
//! system. It also records where the file lies ([`StorageFile::ranges_on`]),
//! so that a backup need not read the extents the image shows as zeroes.
//!
//! [`plan_for_backup`] applies the rule `backup` uses when no `--file` is
//! given: the first `--device` that holds a mounted, writable ext4 or xfs
//! file system (itself, or a partition of it if it is a whole disk) gets
//! the file `MOUNTPOINT/.blksnap-diff-RANDOM`, of [`storage_size`] bytes.
//! The mount point comes from `/proc/self/mountinfo` ([`parse_mountinfo`],
//! [`choose_mount`]), the partitions from sysfs.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::fiemap::{file_extents, FIEMAP_EXTENT_DELALLOC, FIEMAP_EXTENT_UNKNOWN};
use crate::plan::ByteRange;
use crate::sectors::SECTOR_SIZE;
use crate::{Error, Result};

/// `f_type` of ext4 (and ext2/ext3) in `statfs`.
pub const EXT4_SUPER_MAGIC: u64 = 0xef53;
/// `f_type` of xfs in `statfs`.
pub const XFS_SUPER_MAGIC: u64 = 0x5846_5342;

/// The module parameter that bounds the storage from below, in sectors.
pub const MINIMUM_PARAMETER: &str = "/sys/module/blksnap/parameters/diff_storage_minimum";
/// Its default, in sectors (1 GiB), used when the module is not loaded.
pub const DEFAULT_MINIMUM_SECTORS: u64 = 2_097_152;

/// The file name of the storage file `backup` makes, before its suffix.
pub const BACKUP_FILE_PREFIX: &str = ".blksnap-diff-";

/// The names of the file systems that can hold in-volume storage, by
/// `statfs` magic.
fn supported(magic: u64) -> Option<&'static str> {
    match magic {
        EXT4_SUPER_MAGIC => Some("ext4"),
        XFS_SUPER_MAGIC => Some("xfs"),
        _ => None,
    }
}

/// The name of a file system type that cannot hold in-volume storage, for
/// the error that refuses it.
fn unsupported_name(magic: u64) -> String {
    let name = match magic {
        0x0102_1994 => "tmpfs",
        0x9123_683e => "btrfs",
        0x6969 => "nfs",
        0x794c_7630 => "overlayfs",
        0x2fc1_2fc1 => "zfs",
        0x4d44 => "vfat",
        0x5346_544e => "ntfs",
        0xf2f5_2010 => "f2fs",
        _ => return format!("a file system of type 0x{magic:x}"),
    };
    name.to_owned()
}

/// Returns the `statfs` of the open file `file`.
fn fstatfs(file: &File) -> io::Result<libc::statfs> {
    // SAFETY: `statfs` is plain data, for which all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the life of `file`; fstatfs writes one
    // `struct statfs` to `st`.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Free bytes for unprivileged users and the block size of the file system
/// that holds `path`.
fn free_space(path: &Path) -> io::Result<(u64, u64)> {
    let dir = File::open(path)?;
    let st = fstatfs(&dir)?;
    let block = st.f_bsize as u64;
    Ok((st.f_bavail as u64 * block, block.max(SECTOR_SIZE)))
}

/// Returns `path`'s directory, `.` for a bare name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An in-volume storage file this process created; removed when dropped
/// unless [`kept`](Self::keep).
#[derive(Debug)]
pub struct StorageFile {
    path: PathBuf,
    /// Device number of the file system's block device.
    device_number: u64,
    /// Byte ranges of the file's extents on that device, sorted, merged.
    ranges: Vec<ByteRange>,
    /// Bytes allocated.
    size: u64,
    /// Whether dropping removes the file.
    armed: bool,
}

impl StorageFile {
    /// Creates `path` as in-volume storage of at least `size` bytes: a new
    /// file (it must not exist), mode 0600, on ext4 or xfs, `size` rounded
    /// up to the file system's block and allocated with `fallocate`, then
    /// synced with its directory. On failure nothing is left behind.
    pub fn create(path: &Path, size: u64) -> Result<Self> {
        let shown = path.display();
        let what = || format!("cannot create in-volume storage {shown}");
        if size == 0 {
            return Err(Error::new(
                what(),
                io::Error::new(io::ErrorKind::InvalidInput, "its size is 0"),
            ));
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::new(
                        what(),
                        io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "the file exists already; --in-volume-size makes a new file: \
                             name one that does not exist, or leave --in-volume-size out \
                             to use the existing file as it is",
                        ),
                    )
                } else {
                    Error::new(what(), e)
                }
            })?;
        let mut made = Self {
            path: path.to_owned(),
            device_number: 0,
            ranges: Vec::new(),
            size: 0,
            armed: true,
        };
        made.fill(&file, size).map_err(|e| Error::new(what(), e))?;
        Ok(made)
    }

    /// Checks the file system of the new, empty `file`, allocates `size`
    /// bytes (rounded up to its block), syncs and maps the file.
    fn fill(&mut self, file: &File, size: u64) -> io::Result<()> {
        let st = fstatfs(file)?;
        // The type of `f_type` differs between C libraries.
        #[allow(clippy::unnecessary_cast)]
        let magic = st.f_type as u64 & 0xffff_ffff;
        if supported(magic).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "it is on {}, and in-volume storage must be on ext4 or xfs",
                    unsupported_name(magic)
                ),
            ));
        }
        let block = (st.f_bsize as u64).max(SECTOR_SIZE);
        let size = size
            .div_ceil(block)
            .checked_mul(block)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the size is too large"))?;
        let len = libc::off_t::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the size is too large"))?;
        // SAFETY: the fd is open for writing for the life of `file`; mode 0
        // allocates the range and extends the file's size, writing no data.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOSPC) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("the file system has no room for {size} bytes ({e})"),
                ));
            }
            return Err(e);
        }
        file.sync_all()?;
        File::open(parent_dir(&self.path))?.sync_all()?;
        self.size = size;
        self.device_number = file.metadata()?.dev();
        self.ranges = extent_ranges(file, size)?;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes allocated.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Device number of the block device of the file's file system.
    pub fn device_number(&self) -> u64 {
        self.device_number
    }

    /// The file's extents as byte ranges on the device of its file system.
    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    /// The file's extents as byte ranges of device `device` (a device
    /// number): the file system's own device, or the whole disk it is a
    /// partition of; empty for any other device.
    pub fn ranges_on(&self, device: u64) -> Vec<ByteRange> {
        ranges_on(device, self.device_number, &self.ranges)
    }

    /// Leaves the file in place and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.armed = false;
        std::mem::take(&mut self.path)
    }

    /// Removes the file, and syncs its directory.
    pub fn remove(mut self) -> Result<()> {
        self.armed = false;
        fs::remove_file(&self.path)
            .and_then(|()| File::open(parent_dir(&self.path))?.sync_all())
            .map_err(|e| {
                Error::new(
                    format!("cannot remove in-volume storage {}", self.path.display()),
                    e,
                )
            })
    }
}

impl Drop for StorageFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Returns `ranges`, byte ranges of device `holder`, as byte ranges of
/// device `device`: the same device, or the whole disk `holder` is a
/// partition of; empty for any other device.
pub fn ranges_on(device: u64, holder: u64, ranges: &[ByteRange]) -> Vec<ByteRange> {
    match offset_in(device, holder) {
        Some(offset) => shift(ranges, offset),
        None => Vec::new(),
    }
}

/// What the module's debugfs list says of a snapshot's in-volume storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// The snapshot is not listed (or the list is from a module that
    /// lists no extents): nothing is known.
    Unknown,
    /// Its storage is not in-volume storage: no extents read as zeroes.
    NotInVolume,
    /// Its in-volume storage: the device number of the storage's file
    /// system and the extents as sorted, merged byte ranges on it.
    Extents(u64, Vec<ByteRange>),
}

/// Returns what `list`, the text of the module's debugfs snapshot list,
/// says of the in-volume storage of snapshot `id`.
pub fn listed_ranges(list: &str, id: &str) -> Listed {
    let listed = crate::status::parse_list(list);
    let Some(s) = listed.iter().find(|s| s.id == id) else {
        return Listed::Unknown;
    };
    if s.storage != crate::status::IN_VOLUME {
        return Listed::NotInVolume;
    }
    extents_of(s).map_or(Listed::Unknown, |(dev, ranges)| {
        Listed::Extents(dev, ranges)
    })
}

/// Returns the storage device and extents of a listed snapshot with
/// in-volume storage, `None` if they cannot be read.
fn extents_of(s: &crate::status::ListedSnapshot) -> Option<(u64, Vec<ByteRange>)> {
    if s.extents.is_empty() {
        return None;
    }
    let (major, minor) = s.storage_dev.split_once(':')?;
    let dev = libc::makedev(major.parse().ok()?, minor.parse().ok()?);
    let ranges: Vec<ByteRange> = s
        .extents
        .iter()
        .map(|&(start, count)| {
            let start = start.checked_mul(SECTOR_SIZE)?;
            Some(ByteRange::new(
                start,
                start.checked_add(count.checked_mul(SECTOR_SIZE)?)?,
            ))
        })
        .collect::<Option<_>>()?;
    Some((dev, crate::plan::merge_ranges(&ranges, &[], u64::MAX)))
}

/// Returns `ranges` moved `offset` bytes up.
fn shift(ranges: &[ByteRange], offset: u64) -> Vec<ByteRange> {
    ranges
        .iter()
        .map(|r| ByteRange::new(r.start + offset, r.end + offset))
        .collect()
}

/// Returns the byte ranges on its device of the allocated file `file` of
/// `size` bytes, from FIEMAP, sorted and merged; fails if the file has a
/// hole or an extent without a known place.
fn extent_ranges(file: &File, size: u64) -> io::Result<Vec<ByteRange>> {
    let extents = file_extents(file)?;
    let mut covered = 0;
    let mut ranges: Vec<ByteRange> = Vec::with_capacity(extents.len());
    // Only what lies below the file's size: an extent allocated past it is
    // not part of the storage.
    for e in extents.iter().filter(|e| e.length > 0 && e.logical < size) {
        if e.flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC) != 0 || e.logical != covered {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it is not fully allocated at byte {covered} (FIEMAP flags 0x{:x})",
                    e.flags
                ),
            ));
        }
        let length = e.length.min(size - e.logical);
        covered = e.logical + length;
        ranges.push(ByteRange::new(e.physical, e.physical + length));
    }
    if covered < size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is allocated up to byte {covered} only, not to {size}"),
        ));
    }
    Ok(crate::plan::merge_ranges(&ranges, &[], u64::MAX))
}

/// Returns `MAJOR:MINOR` of device number `dev`.
fn dev_id(dev: u64) -> String {
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

/// Returns the byte offset of device `inner` in device `outer`: 0 if they
/// are the same, the partition's start if `inner` is a partition of the
/// whole disk `outer`, else `None`. Reads sysfs.
pub fn offset_in(outer: u64, inner: u64) -> Option<u64> {
    if outer == inner {
        return Some(0);
    }
    let sys = fs::canonicalize(format!("/sys/dev/block/{}", dev_id(inner))).ok()?;
    if !sys.join("partition").exists() {
        return None;
    }
    let parent = fs::read_to_string(sys.parent()?.join("dev")).ok()?;
    if parent.trim() != dev_id(outer) {
        return None;
    }
    let start: u64 = fs::read_to_string(sys.join("start"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    start.checked_mul(SECTOR_SIZE)
}

/// One line of `/proc/self/mountinfo`, the fields a storage place needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The device number of the mounted file system, `(major, minor)`.
    pub dev: (u32, u32),
    /// The directory of the file system mounted here (`/` unless a bind
    /// mount of a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The file system type, `ext4`, `xfs`...
    pub fstype: String,
    /// Whether this mount or the file system is read-only.
    pub read_only: bool,
}

/// Undoes the octal escapes (`\040` for a space...) of a mountinfo field.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Parses the text of `/proc/self/mountinfo`; lines it cannot read are
/// skipped.
///
/// A line is `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] -
/// FSTYPE SOURCE SUPEROPTIONS`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            if dash < 6 {
                return None;
            }
            let (major, minor) = fields[2].split_once(':')?;
            let dev = (major.parse().ok()?, minor.parse().ok()?);
            let fstype = fields.get(dash + 1)?.to_string();
            let super_ro = fields
                .get(dash + 3)
                .is_some_and(|o| o.split(',').any(|o| o == "ro"));
            let mount_ro = fields[5].split(',').any(|o| o == "ro");
            Some(Mount {
                dev,
                root: unescape(fields[3]),
                mount_point: unescape(fields[4]),
                fstype,
                read_only: mount_ro || super_ro,
            })
        })
        .collect()
}

/// Returns the mount through which in-volume storage can be put on the
/// file system of device `dev`: a writable ext4 or xfs mount of it,
/// preferring one of its root directory, the first such in `mounts`.
pub fn choose_mount(mounts: &[Mount], dev: (u32, u32)) -> Option<&Mount> {
    let usable =
        |m: &&Mount| m.dev == dev && !m.read_only && (m.fstype == "ext4" || m.fstype == "xfs");
    mounts
        .iter()
        .filter(usable)
        .find(|m| m.root == Path::new("/"))
        .or_else(|| mounts.iter().find(usable))
}

/// Why no size suits in-volume storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeError {
    /// The smallest size the module takes, bytes.
    pub minimum: u64,
    /// Free bytes on the file system.
    pub free: u64,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "half of its free space ({} of {} bytes) is less than the smallest storage \
             the module takes ({} bytes, diff_storage_minimum)",
            self.free / 2,
            self.free,
            self.minimum
        )
    }
}

/// The size of the in-volume storage `backup` makes: 10 % of `total`, the
/// bytes of the devices backed up, but at least `minimum` (the module's
/// `diff_storage_minimum` in bytes) and at most half of `free`, the free
/// bytes of the file system; whole blocks of `block` bytes. Fails when half
/// of the free space is below the minimum.
pub fn storage_size(
    minimum: u64,
    total: u64,
    free: u64,
    block: u64,
) -> std::result::Result<u64, SizeError> {
    let block = block.max(1);
    let want = minimum
        .max(total / 10)
        .div_ceil(block)
        .saturating_mul(block);
    let cap = free / 2 / block * block;
    let size = want.min(cap);
    if size < minimum || size == 0 {
        return Err(SizeError { minimum, free });
    }
    Ok(size)
}

/// Returns the module's `diff_storage_minimum` in bytes, or its default
/// when it cannot be read.
pub fn minimum_bytes() -> u64 {
    fs::read_to_string(MINIMUM_PARAMETER)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MINIMUM_SECTORS)
        .saturating_mul(SECTOR_SIZE)
}

/// Returns the device number of the block device node `path` and its size
/// in bytes.
fn block_device(path: &Path) -> io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a block device",
        ));
    }
    let dev = meta.rdev();
    let sectors: u64 = fs::read_to_string(format!("/sys/dev/block/{}/size", dev_id(dev)))?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unreadable size in sysfs"))?;
    Ok((dev, sectors * SECTOR_SIZE))
}

/// Returns the device `dev` and, if it is a whole disk, its partitions in
/// the order of their numbers, each as `(major, minor)`. Reads sysfs.
pub fn with_partitions(dev: u64) -> Vec<(u32, u32)> {
    let own = (libc::major(dev), libc::minor(dev));
    let mut parts: Vec<(u64, (u32, u32))> = Vec::new();
    if let Ok(dir) = fs::read_dir(format!("/sys/dev/block/{}", dev_id(dev))) {
        for entry in dir.flatten() {
            let p = entry.path();
            let number = fs::read_to_string(p.join("partition"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            let id = fs::read_to_string(p.join("dev")).ok().and_then(|s| {
                let (a, b) = s.trim().split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            });
            if let (Some(n), Some(id)) = (number, id) {
                parts.push((n, id));
            }
        }
    }
    parts.sort_unstable();
    std::iter::once(own)
        .chain(parts.into_iter().map(|(_, id)| id))
        .collect()
}

/// Where `backup` puts in-volume storage, and how large it makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The storage file to create.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The `--device` whose file system holds it.
    pub device: PathBuf,
}

/// Returns a file name `.blksnap-diff-HEX` with 16 random hex digits.
fn random_name() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes to `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes.iter().fold(BACKUP_FILE_PREFIX.to_owned(), |s, b| {
        s + &format!("{b:02x}")
    }))
}

/// The message of `backup` when it finds no place for in-volume storage.
fn give_file(why: String) -> Error {
    Error::new(
        "cannot place the difference storage on a backed-up device",
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{why}; give the difference storage with --file"),
        ),
    )
}

/// Chooses where `backup` without `--file` keeps in-volume storage for a
/// backup of `devices`, by the rule of this module's documentation.
pub fn plan_for_backup(devices: &[PathBuf]) -> Result<Placement> {
    let mut total = 0u64;
    let mut found = Vec::with_capacity(devices.len());
    for d in devices {
        let (dev, size) = block_device(d)
            .map_err(|e| Error::new(format!("cannot examine {}", d.display()), e))?;
        total = total.saturating_add(size);
        found.push(dev);
    }
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::new("cannot read /proc/self/mountinfo", e))?;
    let mounts = parse_mountinfo(&text);
    let chosen = devices.iter().zip(&found).find_map(|(path, &dev)| {
        with_partitions(dev)
            .into_iter()
            .find_map(|id| choose_mount(&mounts, id))
            .map(|m| (path, m))
    });
    let Some((device, mount)) = chosen else {
        return Err(give_file(
            "no --device holds a mounted, writable ext4 or xfs file system".to_owned(),
        ));
    };
    let (free, block) = free_space(&mount.mount_point).map_err(|e| {
        Error::new(
            format!(
                "cannot read the free space of {}",
                mount.mount_point.display()
            ),
            e,
        )
    })?;
    let minimum = minimum_bytes();
    let size = storage_size(minimum, total, free, block).map_err(|e| {
        give_file(format!(
            "{} (on {}) has no room for it: {e}",
            mount.mount_point.display(),
            device.display()
        ))
    })?;
    let name = random_name().map_err(|e| Error::new("cannot draw a file name", e))?;
    Ok(Placement {
        path: mount.mount_point.join(name),
        size,
        device: device.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_size_is_a_tenth_between_the_minimum_and_half_the_free_space() {
        // A tenth of 100 GiB of devices, with plenty of room.
        assert_eq!(storage_size(GIB, 100 * GIB, 500 * GIB, 4096), Ok(10 * GIB));
        // Small devices: the minimum.
        assert_eq!(storage_size(GIB, 2 * GIB, 500 * GIB, 4096), Ok(GIB));
        // Capped at half the free space, in whole blocks.
        assert_eq!(
            storage_size(GIB, 400 * GIB, 16 * GIB + 10_000, 4096),
            Ok(8 * GIB + 4096)
        );
        // Half of the free space exactly the minimum still fits.
        assert_eq!(storage_size(GIB, 100 * GIB, 2 * GIB, 4096), Ok(GIB));
        // Rounded up to a whole block.
        assert_eq!(storage_size(1000, 10_001, 1 << 20, 4096), Ok(4096));
        // Not enough room: the error names both figures.
        let e = storage_size(GIB, 100 * GIB, 2 * GIB - 2, 4096).unwrap_err();
        assert_eq!(
            e,
            SizeError {
                minimum: GIB,
                free: 2 * GIB - 2
            }
        );
        let text = e.to_string();
        assert!(text.contains("1073741823 of 2147483646 bytes"), "{text}");
        assert!(
            text.contains("(1073741824 bytes, diff_storage_minimum)"),
            "{text}"
        );
        assert!(storage_size(GIB, 0, 0, 4096).is_err());
        // A minimum of 0 still asks for something.
        assert!(storage_size(0, 0, 1 << 20, 4096).is_err());
        assert_eq!(storage_size(0, 40960, 1 << 20, 4096), Ok(4096));
    }

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw,fmask=0077
41 22 7:0 /sub /srv/bind rw,relatime shared:20 - ext4 /dev/loop0 rw
42 22 7:0 / /mnt/with\\040space rw,relatime shared:21 - ext4 /dev/loop0 rw
43 22 7:1 / /mnt/ro ro,relatime shared:22 - xfs /dev/loop1 rw,attr2
44 22 7:2 / /mnt/sro rw,relatime - xfs /dev/loop2 ro,attr2
45 22 7:3 / /mnt/x rw,relatime - xfs /dev/loop3 rw,attr2,inode64
46 22 7:4 / /mnt/b rw,relatime - btrfs /dev/loop4 rw
bad line
47 22 x:y / /z rw - ext4 /dev/z rw
";

    #[test]
    fn mountinfo_lines_are_parsed() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 9);
        assert_eq!(
            m[0],
            Mount {
                dev: (259, 2),
                root: "/".into(),
                mount_point: "/".into(),
                fstype: "ext4".to_owned(),
                read_only: false,
            }
        );
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[3].root, Path::new("/sub"));
        assert_eq!(m[4].mount_point, Path::new("/mnt/with space"));
        assert!(m[5].read_only, "a read-only mount");
        assert!(m[6].read_only, "a read-only file system");
        assert!(!m[7].read_only);
        assert_eq!(m[7].fstype, "xfs");
        assert_eq!(unescape("a\\011b\\134c\\012"), Path::new("a\tb\\c\n"));
        assert_eq!(unescape("\\04"), Path::new("\\04"));
        assert_eq!(unescape("\\9aa"), Path::new("\\9aa"));
        assert!(parse_mountinfo("").is_empty());
    }

    #[test]
    fn the_mount_is_a_writable_ext4_or_xfs_preferring_the_root() {
        let m = parse_mountinfo(MOUNTINFO);
        let at = |dev| choose_mount(&m, dev).map(|m| m.mount_point.clone());
        assert_eq!(at((259, 2)), Some("/".into()));
        // The bind mount of a subdirectory comes first, the root wins.
        assert_eq!(at((7, 0)), Some("/mnt/with space".into()));
        assert_eq!(at((7, 1)), None, "mounted read-only");
        assert_eq!(at((7, 2)), None, "read-only file system");
        assert_eq!(at((7, 3)), Some("/mnt/x".into()));
        assert_eq!(at((7, 4)), None, "btrfs");
        assert_eq!(at((259, 1)), None, "vfat");
        assert_eq!(at((8, 0)), None, "not mounted");
        // Only a bind mount: taken.
        let only = parse_mountinfo("41 22 7:0 /sub /srv/bind rw - ext4 /dev/loop0 rw\n");
        assert_eq!(
            choose_mount(&only, (7, 0)).map(|m| m.mount_point.clone()),
            Some("/srv/bind".into())
        );
    }

    #[test]
    fn the_listed_extents_are_the_modules_word() {
        let list = "\
snapshot aaaa taken=1 error=0 error_dev=0:0 storage=in-volume storage_dev=8:1 storage_ino=12 capacity=16 used=0 limit=16
in_volume_extent start=100 count=8
in_volume_extent start=50 count=8
in_volume_extent start=58 count=2
member 8:1 image=blksnap-8-1
snapshot bbbb taken=1 error=0 error_dev=0:0 storage=file storage_dev=8:1 storage_ino=13 capacity=16 used=0 limit=16
member 8:2 image=blksnap-8-2
snapshot cccc taken=0 error=0 error_dev=0:0 storage=in-volume storage_dev=8:1 storage_ino=14 capacity=16 used=0 limit=16
";
        let r = ByteRange::new;
        assert_eq!(
            listed_ranges(list, "aaaa"),
            Listed::Extents(
                libc::makedev(8, 1),
                vec![r(50 * 512, 60 * 512), r(100 * 512, 108 * 512)]
            )
        );
        assert_eq!(listed_ranges(list, "bbbb"), Listed::NotInVolume);
        assert_eq!(
            listed_ranges(list, "cccc"),
            Listed::Unknown,
            "no extents listed"
        );
        assert_eq!(listed_ranges(list, "dddd"), Listed::Unknown, "not listed");
        assert_eq!(listed_ranges("", "aaaa"), Listed::Unknown);
        // The same device: as they are; another: none.
        let dev = libc::makedev(8, 1);
        assert_eq!(ranges_on(dev, dev, &[r(0, 512)]), [r(0, 512)]);
        assert!(ranges_on(libc::makedev(250, 7), dev, &[r(0, 512)]).is_empty());
    }

    #[test]
    fn ranges_shift_to_the_whole_disk() {
        let r = ByteRange::new;
        assert_eq!(
            shift(&[r(0, 512), r(1024, 2048)], 1 << 20),
            [
                r(1 << 20, (1 << 20) + 512),
                r((1 << 20) + 1024, (1 << 20) + 2048)
            ]
        );
    }

    #[test]
    fn unsupported_file_systems_are_named() {
        assert_eq!(supported(EXT4_SUPER_MAGIC), Some("ext4"));
        assert_eq!(supported(XFS_SUPER_MAGIC), Some("xfs"));
        assert_eq!(supported(0x0102_1994), None);
        assert_eq!(unsupported_name(0x0102_1994), "tmpfs");
        assert_eq!(unsupported_name(0x1234), "a file system of type 0x1234");
    }

    #[test]
    fn random_names_differ() {
        let a = random_name().unwrap();
        let b = random_name().unwrap();
        assert!(a.starts_with(".blksnap-diff-") && a.len() == 14 + 16, "{a}");
        assert_ne!(a, b);
    }

    /// The statfs magic of the file system holding `dir`.
    fn magic_of(dir: &Path) -> u64 {
        fstatfs(&File::open(dir).unwrap()).unwrap().f_type as u64 & 0xffff_ffff
    }

    #[test]
    fn a_storage_file_is_made_allocated_or_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let on_supported = supported(magic_of(dir.path())).is_some();
        match StorageFile::create(&path, 1_000_000) {
            Ok(f) => {
                assert!(on_supported);
                let meta = fs::metadata(&path).unwrap();
                assert_eq!(meta.mode() & 0o777, 0o600);
                assert!(meta.len() >= 1_000_000 && meta.len() == f.size());
                assert_eq!(meta.len() % 512, 0);
                // Allocated, not written: every block is there.
                assert!(meta.blocks() * 512 >= meta.len());
                let total: u64 = f.ranges().iter().map(ByteRange::len).sum();
                assert!(total >= meta.len(), "{:?}", f.ranges());
                assert_eq!(f.device_number(), meta.dev());
                assert_eq!(f.ranges_on(meta.dev()), f.ranges());
                assert!(f.ranges_on(libc::makedev(250, 99)).is_empty());
                assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
                // A second one at the same path is refused, the first kept.
                let err = StorageFile::create(&path, 4096).unwrap_err().to_string();
                assert!(err.contains("exists already"), "{err}");
                assert!(path.exists());
                // Dropping removes it; keep() keeps it.
                drop(f);
                assert!(!path.exists());
                let f = StorageFile::create(&path, 4096).unwrap();
                assert_eq!(f.keep(), path);
                assert!(path.exists());
                fs::remove_file(&path).unwrap();
                StorageFile::create(&path, 4096).unwrap().remove().unwrap();
                assert!(!path.exists());
            }
            Err(e) => {
                assert!(!on_supported, "{e}");
                assert!(e.to_string().contains("must be on ext4 or xfs"), "{e}");
                assert!(!path.exists());
            }
        }
        let err = StorageFile::create(&path, 0).unwrap_err().to_string();
        assert!(err.contains("its size is 0"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn a_storage_file_on_tmpfs_is_refused_and_removed() {
        let dir = Path::new("/dev/shm");
        if magic_of(dir) != 0x0102_1994 {
            return;
        }
        let path = dir.join(random_name().unwrap());
        let err = StorageFile::create(&path, 4096).unwrap_err().to_string();
        assert!(
            err.ends_with("it is on tmpfs, and in-volume storage must be on ext4 or xfs"),
            "{err}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn no_device_with_a_file_system_asks_for_file() {
        let err = plan_for_backup(&[PathBuf::from("/dev/null")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a block device"), "{err}");
        let e = give_file("no --device holds a mounted, writable ext4 or xfs file system".into());
        assert_eq!(
            e.to_string(),
            "cannot place the difference storage on a backed-up device: no --device holds a \
             mounted, writable ext4 or xfs file system; give the difference storage with --file"
        );
    }
}
