//! `blksnap backup`: a snapshot of one or more devices, copied to files.
//!
//! [`backup`] creates a snapshot, attaches the filter to each device where
//! it is missing, adds the devices, takes the snapshot and copies each
//! image to its [`Target`]'s output file with [`backup_image`]; then it
//! destroys the snapshot, whatever happened in between (an error, a signal
//! through [`Cancel`], even a panic, through the guard's `Drop`).
//!
//! Next to each output file `FILE` it keeps:
//!
//! - `FILE.state.json`: the [`BackupState`] of the take, for the next
//!   incremental backup;
//! - `FILE.sha256`: the SHA-256 of the whole file, as `sha256sum` writes it
//!   (`HEX  NAME`), so that `sha256sum -c` and `blksnap verify --checksum`
//!   can check it.
//!
//! With in-volume storage ([`Storage::in_volume`]), [`backup`] creates the
//! storage file on a backed-up device's file system first and removes it
//! after the snapshot is destroyed; its extents read as zeroes in the image
//! ([`Image::zeros`]), so they are not read; the module marks them as
//! changed in the change tracking when the snapshot ends, for the next
//! incremental backup.
//!
//! A full copy goes to `FILE.partial`, created sparse at the device's size,
//! and replaces `FILE` only once complete, so an interrupted full backup
//! leaves the previous one as it was. An incremental copy writes only the
//! changed blocks into `FILE` itself, which therefore always holds a whole
//! image: before it starts, the now stale `FILE.sha256` is removed; the
//! state is written only after success. If it is interrupted, the old state
//! stays, and the next incremental backup copies every block changed since
//! that state, which includes all blocks the interrupted one wrote.
//!
//! [`backup_image`] needs no module: it takes the image as any
//! `Read + Seek` and the CBT info and map as values and closures, so the
//! host tests run it on regular files.
//!
//! A backup of one device, incremental where its state allows, with the
//! difference storage in a directory allowed 1 GiB:
//!
//! ```no_run
//! use blksnap::backup::{backup, format_report, Silent, Storage, Target};
//! use blksnap::cancel::Cancel;
//! use blksnap::Control;
//!
//! let control = Control::open()?;
//! let storage = Storage {
//!     path: "/var/tmp".into(),
//!     limit_sectors: 2 << 20,
//!     in_volume: None,
//! };
//! let targets = [Target {
//!     device: "/dev/sdb1".into(),
//!     output: "/backup/sdb1.img".into(),
//! }];
//! let report = backup(&control, &storage, &targets, true, &Cancel::new(), &mut Silent)?;
//! print!("{}", format_report(&report));
//! # Ok::<(), blksnap::Error>(())
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cancel::{self, Cancel, CancelRead};
use crate::copy::{copy_ranges, CopyError, CopyOptions, PIECE};
use crate::in_volume::{listed_ranges, ranges_on, Listed, StorageFile};
use crate::plan::{
    changed_ranges, choose_mode, full_ranges, merge_ranges, total_len, BackupState, ByteRange,
    FullReason, Mode, Previous,
};
use crate::{BlockDevice, CbtInfo, Control, Error, Result, Uuid};

/// A device to back up and the file its image goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The block device.
    pub device: PathBuf,
    /// The backup file.
    pub output: PathBuf,
}

/// Returns `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Returns the state file of backup file `output`, `OUTPUT.state.json`.
pub fn state_path(output: &Path) -> PathBuf {
    with_suffix(output, ".state.json")
}

/// Returns the checksum file of backup file `output`, `OUTPUT.sha256`.
pub fn checksum_path(output: &Path) -> PathBuf {
    with_suffix(output, ".sha256")
}

/// Returns the file a full copy to `output` is written to first,
/// `OUTPUT.partial`.
pub fn partial_path(output: &Path) -> PathBuf {
    with_suffix(output, ".partial")
}

/// Returns the line `sha256sum` writes for a file named `name` with digest
/// `hex`: `HEX  NAME`, with a newline.
pub fn checksum_line(hex: &str, name: &str) -> String {
    format!("{hex}  {name}\n")
}

/// Returns the digest `hash` has computed in lowercase hexadecimal, as
/// `sha256sum` prints it.
pub fn hex_digest(hash: Sha256) -> String {
    format!("{:x}", hash.finalize())
}

/// Returns the SHA-256 of everything `reader` gives, in hexadecimal, read
/// in pieces of [`PIECE`] bytes; `progress` is told the bytes of each piece.
pub fn sha256_reader(reader: &mut impl Read, progress: &mut dyn FnMut(u64)) -> io::Result<String> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; PIECE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(hex_digest(hash)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        progress(n as u64);
    }
}

/// Returns the digest in a line of a checksum file, if it has one.
pub fn parse_checksum_line(text: &str) -> Option<String> {
    let hex = text.split_whitespace().next()?.to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Reads what is known of the previous backup to `output`: its state file
/// and the size of the file.
pub fn read_previous(output: &Path) -> Previous {
    let path = state_path(output);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Previous::Missing,
        Err(e) => return Previous::Unreadable(format!("{}: {e}", path.display())),
    };
    match BackupState::from_json(&text) {
        Ok(state) => {
            let size = fs::metadata(output)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len());
            Previous::Found(state, size)
        }
        Err(e) => Previous::Unreadable(format!("{}: {e}", path.display())),
    }
}

/// What a backup reports as it goes.
pub trait Observer {
    /// A remark for the user, such as why an incremental backup copies all.
    fn note(&mut self, text: &str);
    /// A phase begins that will process `bytes` bytes: `label` says what.
    fn start(&mut self, label: &str, bytes: u64);
    /// `bytes` more bytes of the phase are done.
    fn advance(&mut self, bytes: u64);
    /// The phase is over.
    fn finish(&mut self);
}

/// An [`Observer`] that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn note(&mut self, _text: &str) {}
    fn start(&mut self, _label: &str, _bytes: u64) {}
    fn advance(&mut self, _bytes: u64) {}
    fn finish(&mut self) {}
}

/// The image of one device in a taken snapshot, and its change tracking.
pub struct Image<'a, R> {
    /// The image's data, the device as it was at the take.
    pub reader: R,
    /// The CBT info of the device after the take.
    pub info: CbtInfo,
    /// Reads the CBT map of the device (needed only for an incremental
    /// backup).
    pub cbt_map: &'a mut dyn FnMut() -> Result<Vec<u8>>,
    /// Fails if the snapshot broke; called after the copy, before the
    /// backup file is committed.
    pub check: &'a mut dyn FnMut() -> Result<()>,
    /// Ranges of the image that read as zeroes whatever the device held:
    /// the extents of an in-volume difference storage on this device.
    /// Sorted, not overlapping; not read, written as zeroes (left sparse in
    /// a full copy), and always part of an incremental copy, since the
    /// change tracking does not see them become zeroes.
    pub zeros: Vec<ByteRange>,
}

/// What [`backup_image`] did for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceBackup {
    /// The device and its backup file.
    pub target: Target,
    /// How it was copied.
    pub mode: Mode,
    /// Bytes copied from the image.
    pub copied: u64,
    /// The state written next to the backup file.
    pub state: BackupState,
}

/// Returns an error of doing `what` with `path`.
fn file_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::new(format!("{what} {}", path.display()), e)
}

/// Writes `text` to `path` through a temporary file that replaces it, so a
/// reader sees the old content or the new one.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_error("cannot write", path, e)
    })
}

/// Returns the file name of `path`, for the checksum line.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Returns the error of a copy that failed, naming the image and the file.
fn copy_error(target: &Target, to: &Path, e: CopyError) -> Error {
    let what = match &e {
        CopyError::Write { .. } => format!("cannot write {}", to.display()),
        _ => format!(
            "cannot copy the image of {} to {}",
            target.device.display(),
            to.display()
        ),
    };
    Error::new(what, e.into_io())
}

/// Backs up `image`, the snapshot image of `target.device`, to
/// `target.output`: fully, or with `incremental`, only the changed blocks
/// when the saved state allows it (otherwise noting why not). Writes the
/// checksum and state files after the copy.
pub fn backup_image<R: Read + Seek>(
    image: Image<'_, R>,
    target: &Target,
    incremental: bool,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<DeviceBackup> {
    let Image {
        mut reader,
        info,
        cbt_map,
        check,
        zeros,
    } = image;
    let size = reader.seek(SeekFrom::End(0)).map_err(|e| {
        Error::new(
            format!(
                "cannot find the size of the image of {}",
                target.device.display()
            ),
            e,
        )
    })?;
    if size != info.device_capacity {
        return Err(Error::new(
            format!("backing up {}", target.device.display()),
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the image has {size} bytes, the change tracking says {}",
                    info.device_capacity
                ),
            ),
        ));
    }
    let previous = if incremental {
        read_previous(&target.output)
    } else {
        Previous::Missing
    };
    let mode = choose_mode(incremental, &previous, &info);
    if let Mode::Full(reason) = &mode {
        if *reason != FullReason::NotAsked {
            observer.note(&format!(
                "{}: copying all of it, not incrementally: {reason}",
                target.device.display()
            ));
        }
    }
    let (copied, hex) = match mode {
        Mode::Full(_) => full_copy(&mut reader, target, size, &zeros, cancel, observer, check)?,
        Mode::Incremental { since } => {
            let map = cbt_map()?;
            let ranges = changed_ranges(&map, since, info.block_size, size).map_err(|e| {
                Error::new(
                    format!("planning the backup of {}", target.device.display()),
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                )
            })?;
            let ranges = merge_ranges(&ranges, &zeros, size);
            incremental_copy(
                &mut reader,
                target,
                &ranges,
                &zeros,
                cancel,
                observer,
                check,
            )?
        }
    };
    replace_file(
        &checksum_path(&target.output),
        &checksum_line(&hex, &file_name(&target.output)),
    )?;
    let state = BackupState::new(&target.device, &info, hex);
    replace_file(&state_path(&target.output), &state.to_json())?;
    Ok(DeviceBackup {
        target: target.clone(),
        mode,
        copied,
        state,
    })
}

/// Copies all `size` bytes of `reader` to `OUTPUT.partial`, checks the
/// snapshot with `check`, then renames the file to the output. Returns the
/// bytes copied and the file's digest.
fn full_copy(
    reader: &mut (impl Read + Seek),
    target: &Target,
    size: u64,
    zeros: &[ByteRange],
    cancel: &Cancel,
    observer: &mut dyn Observer,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<(u64, String)> {
    let partial = partial_path(&target.output);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| file_error("cannot create", &partial, e))?;
        file.set_len(size)
            .map_err(|e| file_error("cannot size", &partial, e))?;
        let mut hash = Sha256::new();
        observer.start(&format!("{} (full)", target.device.display()), size);
        let opts = CopyOptions {
            piece: PIECE,
            sparse: true,
            cancel,
            zeros,
        };
        let copied = copy_ranges(
            reader,
            &mut file,
            &full_ranges(size),
            &opts,
            Some(&mut hash),
            &mut |n| observer.advance(n),
        );
        observer.finish();
        let copied = copied.map_err(|e| copy_error(target, &partial, e))?;
        file.sync_all()
            .map_err(|e| file_error("cannot write", &partial, e))?;
        check()?;
        cancel
            .check()
            .map_err(|e| file_error("backing up to", &target.output, e))?;
        fs::rename(&partial, &target.output)
            .map_err(|e| file_error("cannot rename to", &target.output, e))?;
        Ok((copied.read + copied.known_zero, hex_digest(hash)))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

/// Copies `ranges` of `reader` into the output file in place, checks the
/// snapshot with `check`, then hashes the whole file. Returns the bytes
/// copied and the file's digest.
fn incremental_copy(
    reader: &mut (impl Read + Seek),
    target: &Target,
    ranges: &[ByteRange],
    zeros: &[ByteRange],
    cancel: &Cancel,
    observer: &mut dyn Observer,
    check: &mut dyn FnMut() -> Result<()>,
) -> Result<(u64, String)> {
    let output = &target.output;
    match fs::remove_file(checksum_path(output)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(file_error("cannot remove", &checksum_path(output), e))
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(output)
        .map_err(|e| file_error("cannot open", output, e))?;
    let bytes = total_len(ranges);
    observer.start(&format!("{} (changes)", target.device.display()), bytes);
    let opts = CopyOptions {
        piece: PIECE,
        sparse: false,
        cancel,
        zeros,
    };
    let copied = copy_ranges(reader, &mut file, ranges, &opts, None, &mut |n| {
        observer.advance(n)
    });
    observer.finish();
    let copied = copied.map_err(|e| copy_error(target, output, e))?;
    file.sync_all()
        .map_err(|e| file_error("cannot write", output, e))?;
    check()?;
    let size = file
        .seek(SeekFrom::End(0))
        .and_then(|size| file.seek(SeekFrom::Start(0)).map(|_| size))
        .map_err(|e| file_error("cannot read", output, e))?;
    observer.start(&format!("{} (checksum)", output.display()), size);
    let digest = sha256_reader(&mut CancelRead::new(file, cancel), &mut |n| {
        observer.advance(n)
    });
    observer.finish();
    let digest = digest.map_err(|e| file_error("cannot read", output, e))?;
    Ok((copied.read + copied.known_zero, digest))
}

/// What [`backup`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The snapshot it created and destroyed.
    pub id: Uuid,
    /// One entry per target, in order.
    pub devices: Vec<DeviceBackup>,
}

/// Where and how [`backup`] keeps the snapshot's difference storage.
#[derive(Clone, Debug)]
pub struct Storage {
    /// A regular file, a directory or a block device (see
    /// [`Control::snapshot_create`]).
    pub path: PathBuf,
    /// Most 512-byte sectors it may grow to.
    pub limit_sectors: u64,
    /// `Some(bytes)`: `path` does not exist yet; [`backup`] creates it as
    /// in-volume storage of that size on a backed-up device's file system
    /// ([`StorageFile::create`]) and removes it after the snapshot is
    /// destroyed (see [`crate::in_volume::plan_for_backup`]).
    pub in_volume: Option<u64>,
}

/// Returns an error if two targets name the same device or output file, or
/// one's output is another's state, checksum or partial file.
pub fn check_targets(targets: &[Target]) -> std::result::Result<(), String> {
    if targets.is_empty() {
        return Err("no device to back up".to_owned());
    }
    for (i, a) in targets.iter().enumerate() {
        for b in &targets[i + 1..] {
            if a.device == b.device {
                return Err(format!("{} is named twice", a.device.display()));
            }
        }
        for (j, b) in targets.iter().enumerate() {
            let taken = [
                b.output.clone(),
                state_path(&b.output),
                checksum_path(&b.output),
                partial_path(&b.output),
            ];
            if i != j && taken.contains(&a.output) {
                return Err(format!(
                    "{} and {} write to the same files",
                    a.device.display(),
                    b.device.display()
                ));
            }
        }
    }
    Ok(())
}

/// How long [`backup`] waits for an image's device node to appear.
const IMAGE_WAIT: Duration = Duration::from_secs(10);

/// Opens the image at `path`, waiting for its node to appear.
fn open_image(path: &Path, cancel: &Cancel) -> Result<File> {
    let start = Instant::now();
    loop {
        match File::open(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound && start.elapsed() < IMAGE_WAIT => {
                cancel
                    .check()
                    .map_err(|e| file_error("waiting for", path, e))?;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(file_error("cannot open", path, e)),
        }
    }
}

/// A device being backed up.
struct Member {
    /// The device.
    device: BlockDevice,
    /// Its device number.
    rdev: u64,
    /// The byte ranges of its image that read as zeroes: the extents of
    /// in-volume storage on it.
    zeros: Vec<ByteRange>,
}

/// Destroys the snapshot it holds when dropped, unless released.
struct Held<'a> {
    control: &'a Control,
    id: Uuid,
    armed: bool,
}

impl Held<'_> {
    /// Destroys the snapshot now and reports how that went.
    fn destroy(mut self) -> Result<()> {
        self.armed = false;
        self.control.snapshot_destroy(&self.id)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.control.snapshot_destroy(&self.id);
        }
    }
}

/// Backs up each of `targets`: creates a snapshot with difference storage
/// `storage`, attaches and adds the devices, takes it, copies each image
/// with [`backup_image`], and destroys the snapshot in every case.
///
/// An error says whether the snapshot was destroyed after it. Backups of
/// the devices before the one that failed are complete.
pub fn backup(
    control: &Control,
    storage: &Storage,
    targets: &[Target],
    incremental: bool,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<BackupReport> {
    check_targets(targets).map_err(|why| {
        Error::new(
            "cannot back up",
            io::Error::new(io::ErrorKind::InvalidInput, why),
        )
    })?;
    let devices = targets
        .iter()
        .map(|t| BlockDevice::open(&t.device))
        .collect::<Result<Vec<_>>>()?;
    cancel
        .check()
        .map_err(|e| Error::new("before creating the snapshot", e))?;
    // Dropped (and so removed) after `held` below, which destroys the
    // snapshot first, also on a panic.
    let made = match storage.in_volume {
        Some(size) => Some(StorageFile::create(&storage.path, size)?),
        None => None,
    };
    let mut members = devices
        .into_iter()
        .zip(targets)
        .map(|(device, t)| {
            let rdev = fs::metadata(&t.device)
                .map_err(|e| file_error("cannot stat", &t.device, e))?
                .rdev();
            let zeros = match &made {
                Some(file) => file.ranges_on(rdev),
                None => Vec::new(),
            };
            Ok(Member {
                device,
                rdev,
                zeros,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    cancel
        .check()
        .map_err(|e| Error::new("before creating the snapshot", e))?;
    let id = control.snapshot_create(&storage.path, storage.limit_sectors)?;
    let held = Held {
        control,
        id,
        armed: true,
    };
    let result = (|| {
        for m in &members {
            m.device.attach_and_add(&id)?;
        }
        if made.is_some() {
            use_listed_extents(&mut members, &id);
        }
        in_snapshot(
            control,
            &id,
            &members,
            targets,
            incremental,
            cancel,
            observer,
        )
    })();
    let destroyed = held.destroy();
    let released = match made {
        Some(file) if destroyed.is_ok() => release(file),
        Some(file) => Err(format!(
            "in-volume storage {} remains",
            file.keep().display()
        )),
        None => Ok(()),
    };
    match (result, destroyed, released) {
        (Ok(devices), Ok(()), Ok(())) => Ok(BackupReport { id, devices }),
        (Ok(_), Ok(()), Err(r)) => Err(Error::new(
            format!("cleaning up after snapshot {id}"),
            io::Error::other(r),
        )),
        (Ok(_), Err(e), r) => Err(with_release_note(e, r)),
        (Err(e), Ok(()), r) => {
            Err(e.with_note(format!("snapshot {id} was destroyed{}", note_of(r))))
        }
        (Err(e), Err(d), r) => Err(e.with_note(format!(
            "snapshot {id} remains, destroying it failed: {d}{}",
            note_of(r)
        ))),
    }
}

/// Returns `; WHY` for a failed release, nothing for one that worked.
fn note_of(released: std::result::Result<(), String>) -> String {
    match released {
        Ok(()) => String::new(),
        Err(why) => format!("; {why}"),
    }
}

/// Adds what became of the storage file to the error `e`.
fn with_release_note(e: Error, released: std::result::Result<(), String>) -> Error {
    match released {
        Ok(()) => e,
        Err(why) => e.with_note(why),
    }
}

/// After the snapshot is destroyed: removes the in-volume storage `file`.
/// (The module itself marks its extents as changed in the change tracking
/// when the snapshot ends: the copies it wrote there changed them.)
fn release(file: StorageFile) -> std::result::Result<(), String> {
    file.remove().map_err(|e| e.to_string())
}

/// Takes the extents of in-volume storage from the module's debugfs list
/// of snapshot `id`, when it can be read: what the image reads as zeroes
/// is what the module says. Otherwise the members keep the extents FIEMAP
/// gave when the file was made, which the pinned file keeps.
fn use_listed_extents(members: &mut [Member], id: &Uuid) {
    let list = Path::new(crate::status::DEBUGFS).join("snapshots/list");
    let listed = fs::read_to_string(list).map_or(Listed::Unknown, |text| {
        listed_ranges(&text, &id.to_string())
    });
    for m in members {
        match &listed {
            Listed::Unknown => {}
            Listed::NotInVolume => m.zeros.clear(),
            Listed::Extents(holder, ranges) => m.zeros = ranges_on(m.rdev, *holder, ranges),
        }
    }
}

/// The part of [`backup`] while snapshot `id` exists, its devices added.
fn in_snapshot(
    control: &Control,
    id: &Uuid,
    members: &[Member],
    targets: &[Target],
    incremental: bool,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<Vec<DeviceBackup>> {
    cancel
        .check()
        .map_err(|e| Error::new(format!("before taking snapshot {id}"), e))?;
    control.snapshot_take(id)?;
    let mut done = Vec::new();
    for (Member { device, zeros, .. }, target) in members.iter().zip(targets) {
        cancel
            .check()
            .map_err(|e| file_error("backing up", &target.device, e))?;
        let info = device.cbt_info()?;
        let path = device.snapshot_info()?.image_path().ok_or_else(|| {
            file_error(
                "backing up",
                &target.device,
                io::Error::new(io::ErrorKind::NotFound, "the snapshot has no image of it"),
            )
        })?;
        let reader = open_image(&path, cancel)?;
        let mut cbt_map = || device.read_cbt_map();
        let mut check = || {
            let info = device.snapshot_info()?;
            if info.error_code == 0 {
                return Ok(());
            }
            Err(Error::new(
                format!(
                    "backing up {}: the snapshot broke during the copy",
                    target.device.display()
                ),
                io::Error::from_raw_os_error(-info.error_code),
            ))
        };
        let image = Image {
            reader,
            info,
            cbt_map: &mut cbt_map,
            check: &mut check,
            zeros: zeros.clone(),
        };
        done.push(backup_image(image, target, incremental, cancel, observer)?);
    }
    Ok(done)
}

/// Formats what [`backup`] did the way `blksnap backup` prints it: one line
/// per device, `device=DEV output=FILE mode=full|incremental copied=BYTES
/// size=BYTES sha256=HEX changes_number=N`.
pub fn format_report(report: &BackupReport) -> String {
    report
        .devices
        .iter()
        .map(|d| {
            format!(
                "device={} output={} mode={} copied={} size={} sha256={} changes_number={}\n",
                d.target.device.display(),
                d.target.output.display(),
                d.mode.name(),
                d.copied,
                d.state.device_capacity,
                d.state.sha256,
                d.state.changes_number
            )
        })
        .collect()
}

/// Returns whether `e` ended a backup because of a signal.
pub fn was_interrupted(e: &Error) -> bool {
    e.errno().is_none()
        && std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .is_some_and(cancel::is_interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Cursor;

    const GEN: Uuid = Uuid::from_bytes([3; 16]);
    const BS: u32 = 4096;

    fn info(capacity: u64, changes_number: u8) -> CbtInfo {
        CbtInfo {
            device_capacity: capacity,
            block_size: BS,
            block_count: capacity.div_ceil(u64::from(BS)) as u32,
            generation_id: GEN,
            changes_number,
        }
    }

    fn disk(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| ((i / 512) as u8).wrapping_add(salt) ^ (i as u8))
            .collect()
    }

    /// Notes and phases an observer got.
    #[derive(Default)]
    struct Log {
        notes: Vec<String>,
        phases: Vec<(String, u64, u64)>,
    }

    impl Observer for Log {
        fn note(&mut self, text: &str) {
            self.notes.push(text.to_owned());
        }
        fn start(&mut self, label: &str, bytes: u64) {
            self.phases.push((label.to_owned(), bytes, 0));
        }
        fn advance(&mut self, bytes: u64) {
            if let Some(p) = self.phases.last_mut() {
                p.2 += bytes;
            }
        }
        fn finish(&mut self) {}
    }

    /// Backs up `data` with CBT info `info` and map `map` to `target`.
    fn run(
        data: &[u8],
        info: CbtInfo,
        map: Vec<u8>,
        target: &Target,
        incremental: bool,
        log: &mut Log,
    ) -> (Result<DeviceBackup>, bool) {
        let map_read = Cell::new(false);
        let mut cbt_map = || {
            map_read.set(true);
            Ok(map.clone())
        };
        let mut check = || Ok(());
        let image = Image {
            reader: Cursor::new(data),
            info,
            cbt_map: &mut cbt_map,
            check: &mut check,
            zeros: Vec::new(),
        };
        let r = backup_image(image, target, incremental, &Cancel::new(), log);
        (r, map_read.get())
    }

    fn sha_hex(data: &[u8]) -> String {
        hex_digest(Sha256::new_with_prefix(data))
    }

    fn target(dir: &Path) -> Target {
        Target {
            device: PathBuf::from("/dev/loop9"),
            output: dir.join("loop9.img"),
        }
    }

    #[test]
    fn the_reader_digest_is_sha256_as_sha256sum_prints_it() {
        let data = vec![b'a'; 3_000_000];
        let mut seen = 0;
        let hex = sha256_reader(&mut &data[..1_000_000], &mut |n| seen += n).unwrap();
        assert_eq!(
            hex,
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        assert_eq!(seen, 1_000_000);
        assert_eq!(
            sha256_reader(&mut &data[..], &mut |_| {}).unwrap(),
            sha_hex(&data)
        );
    }

    #[test]
    fn full_then_incremental_gives_the_new_image() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        // 10 blocks of 4 KiB and a partial one of 1000 bytes.
        let cap = 10 * 4096 + 1000;
        let mut data = disk(cap, 1);
        data[4096..3 * 4096].fill(0);
        let mut log = Log::default();
        let (r, map_read) = run(&data, info(cap as u64, 1), vec![1; 11], &t, false, &mut log);
        let r = r.unwrap();
        assert!(!map_read, "a full backup reads no map");
        assert_eq!(r.mode, Mode::Full(FullReason::NotAsked));
        assert_eq!(r.copied, cap as u64);
        assert!(log.notes.is_empty(), "{:?}", log.notes);
        assert_eq!(fs::read(&t.output).unwrap(), data);
        assert!(!partial_path(&t.output).exists());
        let sum = fs::read_to_string(checksum_path(&t.output)).unwrap();
        assert_eq!(sum, format!("{}  loop9.img\n", sha_hex(&data)));
        let state =
            BackupState::from_json(&fs::read_to_string(state_path(&t.output)).unwrap()).unwrap();
        assert_eq!(state, r.state);
        assert_eq!(state.changes_number, 1);
        assert_eq!(state.sha256, sha_hex(&data));

        // Blocks 2, 5 and the partial last one change; the map says so with
        // number 2, and block 7 keeps an old 1.
        let mut new = data.clone();
        for b in [2usize, 5] {
            new[b * 4096..(b + 1) * 4096].copy_from_slice(&disk(4096, 9));
        }
        new[10 * 4096..].fill(0x5a);
        let mut map = vec![0u8; 11];
        map[2] = 2;
        map[5] = 2;
        map[10] = 2;
        map[7] = 1;
        let mut log = Log::default();
        let (r, map_read) = run(&new, info(cap as u64, 2), map, &t, true, &mut log);
        let r = r.unwrap();
        assert!(map_read);
        assert_eq!(r.mode, Mode::Incremental { since: 1 });
        assert_eq!(r.copied, 2 * 4096 + 1000);
        assert!(log.notes.is_empty(), "{:?}", log.notes);
        assert_eq!(fs::read(&t.output).unwrap(), new);
        assert_eq!(
            fs::read_to_string(checksum_path(&t.output)).unwrap(),
            format!("{}  loop9.img\n", sha_hex(&new))
        );
        assert_eq!(r.state.changes_number, 2);
        assert_eq!(log.phases[0].1, 2 * 4096 + 1000);
        assert_eq!(log.phases[0].2, 2 * 4096 + 1000);
        assert_eq!(
            log.phases[1].1, cap as u64,
            "the checksum reads the whole file"
        );
    }

    #[test]
    fn only_the_marked_blocks_are_written() {
        // The incremental copy leaves unmarked blocks of the file alone,
        // even where the image differs.
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let cap = 8 * 4096;
        let old = disk(cap, 1);
        let mut log = Log::default();
        run(&old, info(cap as u64, 1), vec![1; 8], &t, false, &mut log)
            .0
            .unwrap();
        let new = disk(cap, 2);
        let mut map = vec![1u8; 8];
        map[3] = 2;
        let (r, _) = run(&new, info(cap as u64, 2), map, &t, true, &mut log);
        assert_eq!(r.unwrap().copied, 4096);
        let mut want = old.clone();
        want[3 * 4096..4 * 4096].copy_from_slice(&new[3 * 4096..4 * 4096]);
        assert_eq!(fs::read(&t.output).unwrap(), want);
    }

    #[test]
    fn a_new_generation_falls_back_to_a_full_copy() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let cap = 6 * 4096;
        let mut log = Log::default();
        run(
            &disk(cap, 1),
            info(cap as u64, 3),
            vec![1; 6],
            &t,
            false,
            &mut log,
        )
        .0
        .unwrap();
        let new = disk(cap, 7);
        let other = Uuid::from_bytes([4; 16]);
        let now = CbtInfo {
            generation_id: other,
            ..info(cap as u64, 1)
        };
        let (r, map_read) = run(&new, now, vec![0; 6], &t, true, &mut log);
        let r = r.unwrap();
        assert!(!map_read, "the map of another generation is not read");
        assert_eq!(
            r.mode,
            Mode::Full(FullReason::Generation {
                saved: GEN,
                now: other
            })
        );
        assert_eq!(r.copied, cap as u64);
        assert_eq!(fs::read(&t.output).unwrap(), new);
        assert_eq!(log.notes.len(), 1);
        assert!(
            log.notes[0].starts_with("/dev/loop9: copying all of it"),
            "{:?}",
            log.notes
        );
        assert!(log.notes[0].contains("new generation"), "{:?}", log.notes);
        assert_eq!(r.state.generation_id, other);
        assert_eq!(r.state.changes_number, 1);
    }

    #[test]
    fn no_state_falls_back_to_a_full_copy() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let cap = 4096;
        let mut log = Log::default();
        let (r, _) = run(
            &disk(cap, 1),
            info(cap as u64, 1),
            vec![1],
            &t,
            true,
            &mut log,
        );
        assert_eq!(r.unwrap().mode, Mode::Full(FullReason::NoState));
        assert!(log.notes[0].contains("no state"), "{:?}", log.notes);
        // A garbled state: full again, and said why.
        fs::write(state_path(&t.output), "garbage").unwrap();
        let mut log = Log::default();
        let (r, _) = run(
            &disk(cap, 2),
            info(cap as u64, 2),
            vec![2],
            &t,
            true,
            &mut log,
        );
        assert!(matches!(
            r.unwrap().mode,
            Mode::Full(FullReason::BadState(_))
        ));
        assert!(log.notes[0].contains("unusable"), "{:?}", log.notes);
        assert_eq!(fs::read(&t.output).unwrap(), disk(cap, 2));
        // The backup file gone: full.
        fs::remove_file(&t.output).unwrap();
        let (r, _) = run(
            &disk(cap, 3),
            info(cap as u64, 3),
            vec![3],
            &t,
            true,
            &mut log,
        );
        assert_eq!(r.unwrap().mode, Mode::Full(FullReason::NoBackupFile));
        assert_eq!(fs::read(&t.output).unwrap(), disk(cap, 3));
    }

    #[test]
    fn an_interrupted_full_copy_keeps_the_previous_backup() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let cap = 3 << 20;
        let mut log = Log::default();
        run(
            &disk(cap, 1),
            info(cap as u64, 1),
            vec![1; 768],
            &t,
            false,
            &mut log,
        )
        .0
        .unwrap();
        let state = fs::read_to_string(state_path(&t.output)).unwrap();
        let cancel = Cancel::new();
        let mut cbt_map = || Ok(vec![2u8; 768]);
        let mut check = || Ok(());
        // Interrupted by the observer after the first piece.
        struct Stop<'a>(&'a Cancel);
        impl Observer for Stop<'_> {
            fn note(&mut self, _: &str) {}
            fn start(&mut self, _: &str, _: u64) {}
            fn advance(&mut self, _: u64) {
                self.0.set(libc::SIGINT);
            }
            fn finish(&mut self) {}
        }
        let data = disk(cap, 2);
        let image = Image {
            reader: Cursor::new(&data[..]),
            info: info(cap as u64, 2),
            cbt_map: &mut cbt_map,
            check: &mut check,
            zeros: Vec::new(),
        };
        let err = backup_image(image, &t, false, &cancel, &mut Stop(&cancel)).unwrap_err();
        assert!(was_interrupted(&err), "{err}");
        assert!(err.to_string().contains("interrupted by SIGINT"), "{err}");
        assert_eq!(fs::read(&t.output).unwrap(), disk(cap, 1));
        assert!(!partial_path(&t.output).exists());
        assert_eq!(fs::read_to_string(state_path(&t.output)).unwrap(), state);
    }

    #[test]
    fn a_broken_snapshot_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let data = disk(8192, 1);
        let mut cbt_map = || Ok(vec![1u8; 2]);
        let mut check = || {
            Err(Error::new(
                "backing up /dev/loop9",
                io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        };
        let image = Image {
            reader: Cursor::new(&data[..]),
            info: info(8192, 1),
            cbt_map: &mut cbt_map,
            check: &mut check,
            zeros: Vec::new(),
        };
        let err = backup_image(image, &t, false, &Cancel::new(), &mut Silent).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOSPC));
        assert!(!t.output.exists());
        assert!(!partial_path(&t.output).exists());
        assert!(!state_path(&t.output).exists());
    }

    /// An image whose `zeros` read as zeroes and must not be read at all.
    struct ZeroedImage<'a> {
        data: Cursor<&'a [u8]>,
        zeros: &'a [ByteRange],
    }

    impl Read for ZeroedImage<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let (a, b) = (
                self.data.position(),
                self.data.position() + buf.len() as u64,
            );
            if self.zeros.iter().any(|z| z.start < b && a < z.end) {
                return Err(io::Error::other(format!("read {a}..{b} of a zero range")));
            }
            self.data.read(buf)
        }
    }

    impl Seek for ZeroedImage<'_> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.data.seek(pos)
        }
    }

    #[test]
    fn in_volume_extents_are_not_read_and_end_up_as_zeroes() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let cap = 16 * 4096;
        // The storage's extents: blocks 3..5 and 9, which the image reads
        // as zeroes whatever the device held there.
        let zeros = vec![
            ByteRange::new(3 * 4096, 5 * 4096),
            ByteRange::new(9 * 4096, 10 * 4096),
        ];
        let mut data = disk(cap, 1);
        for z in &zeros {
            data[z.start as usize..z.end as usize].fill(0);
        }
        let run_zeroed = |data: &[u8], info: CbtInfo, map: Vec<u8>, incremental| {
            let mut cbt_map = || Ok(map.clone());
            let mut check = || Ok(());
            let image = Image {
                reader: ZeroedImage {
                    data: Cursor::new(data),
                    zeros: &zeros,
                },
                info,
                cbt_map: &mut cbt_map,
                check: &mut check,
                zeros: zeros.clone(),
            };
            backup_image(image, &t, incremental, &Cancel::new(), &mut Silent)
        };
        let r = run_zeroed(&data, info(cap as u64, 1), vec![1; 16], false).unwrap();
        assert_eq!(r.copied, cap as u64, "zero ranges count as copied");
        assert_eq!(fs::read(&t.output).unwrap(), data);
        assert_eq!(r.state.sha256, sha_hex(&data));
        // Left sparse where the extents are.
        let blocks = fs::metadata(&t.output).unwrap().blocks();
        assert!(blocks * 512 < cap as u64, "{blocks} blocks");
        assert_eq!(
            fs::read_to_string(checksum_path(&t.output)).unwrap(),
            format!("{}  loop9.img\n", sha_hex(&data))
        );

        // The backup file holds old data where the extents are (as after a
        // backup made with the storage elsewhere); an incremental backup
        // with nothing marked in the change tracking still zeroes them.
        let mut stale = data.clone();
        stale[3 * 4096..5 * 4096].fill(0x77);
        stale[9 * 4096..10 * 4096].fill(0x66);
        fs::write(&t.output, &stale).unwrap();
        let mut new = data.clone();
        new[12 * 4096..13 * 4096].fill(0x55);
        let mut map = vec![1u8; 16];
        map[12] = 2;
        let r = run_zeroed(&new, info(cap as u64, 2), map, true).unwrap();
        assert_eq!(r.mode, Mode::Incremental { since: 1 });
        assert_eq!(r.copied, 4 * 4096, "the changed block and the three zeroed");
        assert_eq!(fs::read(&t.output).unwrap(), new);
        assert_eq!(r.state.sha256, sha_hex(&new));
    }

    #[test]
    fn an_image_of_another_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let (r, _) = run(
            &[0u8; 4096],
            info(8192, 1),
            vec![1; 2],
            &t,
            false,
            &mut Log::default(),
        );
        let err = r.unwrap_err().to_string();
        assert!(err.contains("the image has 4096 bytes"), "{err}");
        assert!(!t.output.exists());
    }

    #[test]
    fn a_bad_map_fails_the_incremental_backup() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let mut log = Log::default();
        run(
            &disk(8192, 1),
            info(8192, 1),
            vec![1; 2],
            &t,
            false,
            &mut log,
        )
        .0
        .unwrap();
        let (r, _) = run(
            &disk(8192, 2),
            info(8192, 2),
            vec![2; 3],
            &t,
            true,
            &mut log,
        );
        let err = r.unwrap_err().to_string();
        assert!(err.contains("the CBT map has 3 bytes"), "{err}");
    }

    #[test]
    fn report_lines() {
        let state = BackupState {
            device: "/dev/loop0".into(),
            generation_id: GEN,
            changes_number: 2,
            block_size: BS,
            device_capacity: 8192,
            sha256: "ab".repeat(32),
        };
        let report = BackupReport {
            id: GEN,
            devices: vec![
                DeviceBackup {
                    target: Target {
                        device: "/dev/loop0".into(),
                        output: "/b/loop0.img".into(),
                    },
                    mode: Mode::Incremental { since: 1 },
                    copied: 4096,
                    state: state.clone(),
                },
                DeviceBackup {
                    target: Target {
                        device: "/dev/loop1".into(),
                        output: "/b/loop1.img".into(),
                    },
                    mode: Mode::Full(FullReason::NoState),
                    copied: 8192,
                    state,
                },
            ],
        };
        let sha = "ab".repeat(32);
        assert_eq!(
            format_report(&report),
            format!(
                "device=/dev/loop0 output=/b/loop0.img mode=incremental copied=4096 size=8192 sha256={sha} changes_number=2\n\
                 device=/dev/loop1 output=/b/loop1.img mode=full copied=8192 size=8192 sha256={sha} changes_number=2\n"
            )
        );
    }

    #[test]
    fn checksum_lines() {
        let hex = "ab".repeat(32);
        let line = checksum_line(&hex, "sda1.img");
        assert_eq!(line, format!("{hex}  sda1.img\n"));
        assert_eq!(parse_checksum_line(&line), Some(hex.clone()));
        assert_eq!(parse_checksum_line(&line.to_uppercase()), Some(hex));
        assert_eq!(parse_checksum_line("xyz  a\n"), None);
        assert_eq!(parse_checksum_line(""), None);
    }

    #[test]
    fn side_files_are_named_after_the_output() {
        let out = Path::new("/b/sda1.img");
        assert_eq!(state_path(out), Path::new("/b/sda1.img.state.json"));
        assert_eq!(checksum_path(out), Path::new("/b/sda1.img.sha256"));
        assert_eq!(partial_path(out), Path::new("/b/sda1.img.partial"));
    }

    #[test]
    fn targets_must_not_collide() {
        let t = |d: &str, o: &str| Target {
            device: d.into(),
            output: o.into(),
        };
        assert!(check_targets(&[t("/dev/a", "/b/a"), t("/dev/b", "/b/b")]).is_ok());
        assert!(check_targets(&[]).is_err());
        let err = check_targets(&[t("/dev/a", "/b/a"), t("/dev/a", "/b/b")]).unwrap_err();
        assert!(err.contains("named twice"), "{err}");
        let err = check_targets(&[t("/dev/a", "/b/x"), t("/dev/b", "/b/x")]).unwrap_err();
        assert!(err.contains("same files"), "{err}");
        let err = check_targets(&[t("/dev/a", "/b/x"), t("/dev/b", "/b/x.sha256")]).unwrap_err();
        assert!(err.contains("same files"), "{err}");
    }
}
