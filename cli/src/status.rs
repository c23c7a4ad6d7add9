//! `blksnap status`: everything the loaded module holds, in one view.
//!
//! [`gather`] reads the module's version (VERSION on the control device)
//! and parameters (`/sys/module/blksnap/parameters/`), every attached
//! device with its change tracking (CBTINFO, the read copy of the map
//! through CBTMAP, the write copy from debugfs) and its snapshot state
//! (SNAPSHOTINFO), and every snapshot (SNAPSHOT_COLLECT) with its members,
//! state and difference storage from the module's debugfs list,
//! `/sys/kernel/debug/blksnap/snapshots/list`. What cannot be read (debugfs
//! not mounted, an older module without the list) is left unknown and
//! explained in [`Status::notes`]. [`format_text`] prints it as aligned
//! tables, [`format_json`] as one JSON object.
//!
//! The JSON object (keys in this order; a value that could not be read is
//! `null`):
//!
//! - `module`: `{"version":"M.m.r.b","parameters":{NAME:VALUE,...}}`;
//! - `devices`: `[{"device","dev_id","cbt","snapshot","image","error_code"}]`,
//!   `cbt` being `{"block_size","block_count","device_capacity",
//!   "generation_id","changes_number","changed_blocks","dirty_blocks"}`:
//!   `changed_blocks` counts the blocks of the read copy whose number is
//!   `changes_number` (changed before the last take, since the one before),
//!   `dirty_blocks` the blocks written since the last take;
//! - `snapshots`: `[{"id","state","error_code","error_dev","members",
//!   "storage"}]`, `state` one of `"created"`, `"taken"`, `"corrupted"`,
//!   `members` `[{"dev_id","device","image"}]`, `storage`
//!   `{"kind":"file"|"device"|"in-volume","dev_id","path","inode",
//!   "capacity_sectors","used_sectors","limit_sectors","extents"}`,
//!   `extents` being, for in-volume storage, the file's extents
//!   `[{"start_sector","sectors"}]` on the device `dev_id`, in file order
//!   (`null` for other storage);
//! - `notes`: what could not be read, and why, as sentences.
//!
//! Device numbers are `"MAJOR:MINOR"` strings, images and devices `/dev`
//! paths, sizes bytes unless the key says sectors (512 bytes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::{format_version, uapi, BlockDevice, Control, Error, Result};

/// Where the loaded module shows itself in sysfs.
pub const SYSFS_MODULE: &str = "/sys/module/blksnap";
/// The module's debugfs directory.
pub const DEBUGFS: &str = "/sys/kernel/debug/blksnap";

/// Everything `blksnap status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The module itself.
    pub module: Module,
    /// The devices the filter is attached to, by device number.
    pub devices: Vec<Device>,
    /// The snapshots, in the module's order.
    pub snapshots: Vec<Snapshot>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// The module's version and parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Module {
    /// The interface version, `M.m.r.b`.
    pub version: String,
    /// The module parameters by name.
    pub parameters: BTreeMap<String, u64>,
}

/// A device the filter is attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Its node, `/dev/NAME`.
    pub device: String,
    /// Its number, `MAJOR:MINOR`.
    pub dev_id: String,
    /// Its change tracking; `None` if CBTINFO failed.
    pub cbt: Option<Cbt>,
    /// The snapshot it belongs to, if known.
    pub snapshot: Option<String>,
    /// Its snapshot image, `/dev/NAME`, once taken.
    pub image: Option<String>,
    /// 0, or the negative errno that corrupted its snapshot.
    pub error_code: i32,
}

/// The change tracking of a device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cbt {
    /// Bytes per tracking block.
    pub block_size: u32,
    /// Tracking blocks.
    pub block_count: u32,
    /// Capacity of the device in bytes.
    pub device_capacity: u64,
    /// The generation; a new one means the map was reset.
    pub generation_id: String,
    /// The snapshot number of the read copy of the map.
    pub changes_number: u8,
    /// Blocks of the read copy changed in interval `changes_number`.
    pub changed_blocks: u64,
    /// Blocks written since the last take; `None` without debugfs.
    pub dirty_blocks: Option<u64>,
}

/// The state of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created, not taken yet.
    Created,
    /// Taken, its images readable.
    Taken,
    /// Taken and broken: its images fail with EIO.
    Corrupted,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Taken => "taken",
            State::Corrupted => "corrupted",
        }
    }
}

/// A snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Its UUID.
    pub id: String,
    /// Its state, if known.
    pub state: Option<State>,
    /// 0, or the negative errno that corrupted it, if known.
    pub error_code: Option<i32>,
    /// The device the corruption happened on.
    pub error_dev: Option<String>,
    /// Its member devices, if known.
    pub members: Option<Vec<Member>>,
    /// Its difference storage, if known.
    pub storage: Option<Storage>,
}

/// A member device of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its number, `MAJOR:MINOR`.
    pub dev_id: String,
    /// Its node, if the device is still there.
    pub device: Option<String>,
    /// Its image, `/dev/NAME`, once taken.
    pub image: Option<String>,
}

/// The difference storage of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// `"file"`, `"device"` or `"in-volume"` (a file on a member's file
    /// system whose blocks the module writes directly).
    pub kind: String,
    /// The storage device, or the device holding the file (`0:0` for a
    /// file system without one).
    pub dev_id: String,
    /// The storage device's node; the module does not tell a file's path.
    pub path: Option<String>,
    /// The file's inode number (files only).
    pub inode: Option<u64>,
    /// Sectors the storage has now.
    pub capacity_sectors: u64,
    /// Sectors holding copies.
    pub used_sectors: u64,
    /// Sectors the storage may grow to.
    pub limit_sectors: u64,
    /// The extents of in-volume storage on `dev_id`, in file order.
    pub extents: Option<Vec<StorageExtent>>,
}

/// One extent of in-volume storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StorageExtent {
    /// Its first sector on the device of the file system.
    pub start_sector: u64,
    /// Its length in sectors.
    pub sectors: u64,
}

/// The storage kind of in-volume storage in the debugfs list.
pub const IN_VOLUME: &str = "in-volume";

/// A snapshot as the module's debugfs list shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedSnapshot {
    /// Its UUID.
    pub id: String,
    /// Whether it is taken.
    pub taken: bool,
    /// 0 or the negative errno that corrupted it.
    pub error: i32,
    /// The device of the corruption, `MAJOR:MINOR`.
    pub error_dev: String,
    /// `"file"`, `"device"` or `"in-volume"`.
    pub storage: String,
    /// The storage's device number.
    pub storage_dev: String,
    /// The storage file's inode, 0 for a device.
    pub storage_ino: u64,
    /// Sectors of storage.
    pub capacity: u64,
    /// Sectors used.
    pub used: u64,
    /// Sector limit.
    pub limit: u64,
    /// Members: device number and image name (without `/dev/`), if taken.
    pub members: Vec<(String, Option<String>)>,
    /// The extents of in-volume storage: first sector and sector count on
    /// the storage's device, in file order.
    pub extents: Vec<(u64, u64)>,
}

/// Parses the module's snapshot list (`snapshots/list` in debugfs): a
/// `snapshot ID key=value...` line per snapshot, each followed by its
/// `member MAJ:MIN image=NAME` lines (`image=-` before the take) and, for
/// in-volume storage, its `in_volume_extent start=SECTOR count=SECTORS`
/// lines. Unknown keys and lines are skipped.
pub fn parse_list(text: &str) -> Vec<ListedSnapshot> {
    let mut out: Vec<ListedSnapshot> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("in_volume_extent ") {
            let (mut start, mut count) = (None, None);
            for (key, value) in rest.split_whitespace().filter_map(|w| w.split_once('=')) {
                match key {
                    "start" => start = value.parse().ok(),
                    "count" => count = value.parse().ok(),
                    _ => {}
                }
            }
            if let (Some(s), Some(start), Some(count)) = (out.last_mut(), start, count) {
                s.extents.push((start, count));
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let pairs = words.filter_map(|w| w.split_once('='));
        match kind {
            "snapshot" => {
                let mut s = ListedSnapshot {
                    id: name.to_owned(),
                    ..Default::default()
                };
                for (key, value) in pairs {
                    let number = || value.parse().unwrap_or(0);
                    match key {
                        "taken" => s.taken = value == "1",
                        "error" => s.error = value.parse().unwrap_or(0),
                        "error_dev" => s.error_dev = value.to_owned(),
                        "storage" => s.storage = value.to_owned(),
                        "storage_dev" => s.storage_dev = value.to_owned(),
                        "storage_ino" => s.storage_ino = number(),
                        "capacity" => s.capacity = number(),
                        "used" => s.used = number(),
                        "limit" => s.limit = number(),
                        _ => {}
                    }
                }
                out.push(s);
            }
            "member" => {
                if let Some(s) = out.last_mut() {
                    let image = pairs
                        .filter(|(k, _)| *k == "image")
                        .map(|(_, v)| v)
                        .find(|v| *v != "-")
                        .map(str::to_owned);
                    s.members.push((name.to_owned(), image));
                }
            }
            _ => {}
        }
    }
    out
}

/// Joins what COLLECT named (`ids`) and what the list said (`listed`,
/// `None` if it could not be read) into the snapshots of the status; a
/// member's node comes from `node_of`.
pub fn snapshots(
    ids: &[String],
    listed: Option<&[ListedSnapshot]>,
    node_of: impl Fn(&str) -> Option<String>,
) -> Vec<Snapshot> {
    let mut all: Vec<String> = ids.to_vec();
    for s in listed.unwrap_or_default() {
        if !all.contains(&s.id) {
            all.push(s.id.clone());
        }
    }
    all.into_iter()
        .map(|id| {
            let Some(s) = listed.and_then(|l| l.iter().find(|s| s.id == id)) else {
                return Snapshot {
                    id,
                    ..Default::default()
                };
            };
            let state = match (s.taken, s.error) {
                (_, e) if e != 0 => State::Corrupted,
                (true, _) => State::Taken,
                (false, _) => State::Created,
            };
            let is_device = s.storage == "device";
            Snapshot {
                state: Some(state),
                error_code: Some(s.error),
                error_dev: (s.error != 0).then(|| s.error_dev.clone()),
                members: Some(
                    s.members
                        .iter()
                        .map(|(dev, image)| Member {
                            dev_id: dev.clone(),
                            device: node_of(dev),
                            image: image.as_ref().map(|i| format!("/dev/{i}")),
                        })
                        .collect(),
                ),
                storage: Some(Storage {
                    kind: s.storage.clone(),
                    dev_id: s.storage_dev.clone(),
                    path: if is_device {
                        node_of(&s.storage_dev)
                    } else {
                        None
                    },
                    inode: (!is_device).then_some(s.storage_ino),
                    capacity_sectors: s.capacity,
                    used_sectors: s.used,
                    limit_sectors: s.limit,
                    extents: (s.storage == IN_VOLUME).then(|| {
                        s.extents
                            .iter()
                            .map(|&(start_sector, sectors)| StorageExtent {
                                start_sector,
                                sectors,
                            })
                            .collect()
                    }),
                }),
                id,
            }
        })
        .collect()
}

/// Counts the blocks of a read copy of the map changed in interval
/// `changes_number` (none while it is 0: no take yet).
pub fn changed_blocks(read_map: &[u8], changes_number: u8) -> u64 {
    if changes_number == 0 {
        return 0;
    }
    read_map.iter().filter(|&&b| b == changes_number).count() as u64
}

/// Counts the blocks of the write copy of the map written since the last
/// take, whose number, `changes_number`, the writes since exceed.
pub fn dirty_blocks(write_map: &[u8], changes_number: u8) -> u64 {
    write_map.iter().filter(|&&b| b > changes_number).count() as u64
}

/// Returns the node, `/dev/NAME`, of device `dev_id` (`MAJOR:MINOR`), from
/// its uevent in sysfs.
pub fn device_node(dev_id: &str) -> Option<String> {
    let uevent = fs::read_to_string(format!("/sys/dev/block/{dev_id}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|name| format!("/dev/{name}"))
}

/// Whether `text` is two decimal numbers joined by `sep`.
fn is_number_pair(text: &str, sep: char) -> bool {
    text.split_once(sep).is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

/// Whether `name` is a device number, `MAJOR:MINOR`.
fn is_dev_id(name: &str) -> bool {
    is_number_pair(name, ':')
}

/// Whether `name` is the disk name of a snapshot image,
/// `blksnap-MAJOR-MINOR` (`BLKSNAP_IMAGE_NAME`, then its original's device
/// number).
fn is_image_name(name: &str) -> bool {
    name.strip_prefix(uapi::BLKSNAP_IMAGE_NAME)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|numbers| is_number_pair(numbers, '-'))
}

/// Sorts device numbers by major, then minor.
fn dev_key(dev_id: &str) -> (u32, u32) {
    let (a, b) = dev_id.split_once(':').unwrap_or(("0", "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

/// Reads the module parameters, skipping any that is not a number.
fn parameters() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = fs::read_dir(Path::new(SYSFS_MODULE).join("parameters")) else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(v) = fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            out.insert(name, v);
        }
    }
    out
}

/// The devices to look at, and whether the list is only candidates (found
/// without debugfs, so each must be asked whether it is attached).
fn device_ids() -> (Vec<String>, bool) {
    if let Ok(dir) = fs::read_dir(DEBUGFS) {
        let ids = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_dev_id(n))
            .collect();
        return (ids, false);
    }
    let mut ids = Vec::new();
    if let Ok(dir) = fs::read_dir("/sys/class/block") {
        for e in dir.flatten() {
            if is_image_name(&e.file_name().to_string_lossy()) {
                continue;
            }
            if let Ok(dev) = fs::read_to_string(e.path().join("dev")) {
                ids.push(dev.trim().to_owned());
            }
        }
    }
    (ids, true)
}

/// Reads one attached device; `None` if it turns out not to be attached
/// (only asked of `candidate`s).
fn device(dev_id: &str, candidate: bool, notes: &mut Vec<String>) -> Option<Device> {
    let node = device_node(dev_id)?;
    let dev = match BlockDevice::open(&node) {
        Ok(dev) => dev,
        Err(e) => {
            if !candidate {
                notes.push(format!("{dev_id}: {e}"));
            }
            return None;
        }
    };
    let cbt = match dev.cbt_info() {
        Ok(info) => Some(info),
        Err(e) if candidate && e.errno() == Some(libc::ENOENT) => return None,
        Err(e) if candidate && e.errno() == Some(libc::ENOTTY) => return None,
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let cbt = cbt.map(|info| {
        let changed = match dev.read_cbt_map() {
            Ok(map) => changed_blocks(&map, info.changes_number),
            Err(e) => {
                notes.push(e.to_string());
                0
            }
        };
        let dirty = fs::read(Path::new(DEBUGFS).join(dev_id).join("write_map"))
            .ok()
            .map(|map| dirty_blocks(&map, info.changes_number));
        Cbt {
            block_size: info.block_size,
            block_count: info.block_count,
            device_capacity: info.device_capacity,
            generation_id: info.generation_id.to_string(),
            changes_number: info.changes_number,
            changed_blocks: changed,
            dirty_blocks: dirty,
        }
    });
    let (image, error_code) = match dev.snapshot_info() {
        Ok(info) => (
            info.image_path().map(|p| p.display().to_string()),
            info.error_code,
        ),
        Err(e) => {
            notes.push(e.to_string());
            (None, 0)
        }
    };
    Some(Device {
        device: node,
        dev_id: dev_id.to_owned(),
        cbt,
        snapshot: None,
        image,
        error_code,
    })
}

/// Reads the whole state of the loaded module.
pub fn gather() -> Result<Status> {
    if !Path::new(SYSFS_MODULE).exists() {
        return Err(Error::new(
            "reading the module's state",
            io::Error::new(io::ErrorKind::NotFound, "the blksnap module is not loaded"),
        ));
    }
    let control = Control::open()?;
    let mut notes = Vec::new();
    let module = Module {
        version: format_version(&control.version()?),
        parameters: parameters(),
    };
    let ids: Vec<String> = control
        .snapshot_collect()?
        .iter()
        .map(|id| id.to_string())
        .collect();
    let list_path = Path::new(DEBUGFS).join("snapshots/list");
    let listed = match fs::read_to_string(&list_path) {
        Ok(text) => Some(parse_list(&text)),
        Err(e) => {
            notes.push(format!(
                "snapshot members, state and storage are unknown: cannot read {} ({}); \
                 mount debugfs on /sys/kernel/debug",
                list_path.display(),
                e
            ));
            None
        }
    };
    let (mut dev_ids, candidates) = device_ids();
    if candidates {
        notes.push(format!(
            "dirty_blocks are unknown: {DEBUGFS} is not readable (mount debugfs on /sys/kernel/debug)"
        ));
    }
    dev_ids.sort_by_key(|d| dev_key(d));
    let mut devices: Vec<Device> = dev_ids
        .iter()
        .filter_map(|d| device(d, candidates, &mut notes))
        .collect();
    let snapshots = snapshots(&ids, listed.as_deref(), device_node);
    for d in devices.iter_mut() {
        d.snapshot = snapshots
            .iter()
            .find(|s| s.members.iter().flatten().any(|m| m.dev_id == d.dev_id))
            .map(|s| s.id.clone());
    }
    Ok(Status {
        module,
        devices,
        snapshots,
        notes,
    })
}

/// Formats `bytes` in binary units, one decimal where it is not whole:
/// `512B`, `64KiB`, `1.5GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scaled = bytes as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    let text = format!("{scaled:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{}", UNITS[unit])
}

/// Lays `rows` out under `header` in columns two spaces apart, each line
/// indented by two spaces; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(" ");
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, " {cell:<w$}");
            line.push(' ');
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text of an unknown value.
const UNKNOWN: &str = "?";

/// Formats the status as `blksnap status` prints it: the module, then a
/// table of the devices and one of the snapshots, then the corruptions and
/// the notes.
pub fn format_text(status: &Status) -> String {
    let mut out = format!("module  blksnap {}\n", status.module.version);
    let params: Vec<Vec<String>> = status
        .module
        .parameters
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    out += &table(&["PARAMETER", "VALUE"], &params);

    let members_known = status.snapshots.iter().all(|s| s.members.is_some());
    out += "\ndevices\n";
    if status.devices.is_empty() {
        out += "  none attached\n";
    } else {
        let rows: Vec<Vec<String>> = status
            .devices
            .iter()
            .map(|d| {
                let mut row = vec![d.device.clone(), d.dev_id.clone()];
                match &d.cbt {
                    Some(c) => row.extend([
                        human(c.device_capacity),
                        human(u64::from(c.block_size)),
                        c.block_count.to_string(),
                        c.changes_number.to_string(),
                        c.changed_blocks.to_string(),
                        c.dirty_blocks
                            .map_or_else(|| UNKNOWN.to_owned(), |n| n.to_string()),
                        c.generation_id.clone(),
                    ]),
                    None => row.extend(std::iter::repeat_n(UNKNOWN.to_owned(), 7)),
                }
                // No snapshot, or one whose members are unknown.
                let none = if members_known { "-" } else { UNKNOWN };
                row.push(
                    d.snapshot
                        .as_ref()
                        .map_or(none, |s| s.get(..8).unwrap_or(s))
                        .to_owned(),
                );
                row.push(d.image.clone().unwrap_or_else(|| "-".to_owned()));
                row
            })
            .collect();
        out += &table(
            &[
                "DEVICE",
                "MAJ:MIN",
                "SIZE",
                "BLOCK",
                "BLOCKS",
                "CHANGES#",
                "CHANGED",
                "DIRTY",
                "GENERATION",
                "SNAPSHOT",
                "IMAGE",
            ],
            &rows,
        );
    }

    out += "\nsnapshots\n";
    if status.snapshots.is_empty() {
        out += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = status
            .snapshots
            .iter()
            .map(|s| {
                let state = s.state.map_or(UNKNOWN, State::as_str).to_owned();
                let members = match &s.members {
                    None => UNKNOWN.to_owned(),
                    Some(m) if m.is_empty() => "-".to_owned(),
                    Some(m) => m
                        .iter()
                        .map(|m| m.dev_id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let mut row = vec![s.id.clone(), state, members];
                match &s.storage {
                    Some(st) => {
                        let place = match (&st.path, st.inode) {
                            (Some(path), _) => path.clone(),
                            (None, Some(ino)) => format!("{} {} ino {ino}", st.kind, st.dev_id),
                            (None, None) => format!("{} {}", st.kind, st.dev_id),
                        };
                        row.extend([
                            place,
                            human(st.used_sectors << 9),
                            human(st.capacity_sectors << 9),
                            human(st.limit_sectors << 9),
                        ]);
                    }
                    None => row.extend(std::iter::repeat_n(UNKNOWN.to_owned(), 4)),
                }
                row
            })
            .collect();
        out += &table(
            &[
                "SNAPSHOT", "STATE", "MEMBERS", "STORAGE", "USED", "SIZE", "LIMIT",
            ],
            &rows,
        );
        for s in &status.snapshots {
            if let Some((st, extents)) = s
                .storage
                .as_ref()
                .and_then(|st| Some((st, st.extents.as_ref()?)))
            {
                out += &in_volume_line(&s.id, st, extents);
            }
        }
        for s in &status.snapshots {
            if let (Some(State::Corrupted), Some(code)) = (s.state, s.error_code) {
                let _ = writeln!(
                    out,
                    "  {} corrupted on {}: {} (error {code})",
                    s.id,
                    s.error_dev.as_deref().unwrap_or(UNKNOWN),
                    io::Error::from_raw_os_error(-code)
                        .to_string()
                        .split(" (os error")
                        .next()
                        .unwrap_or_default(),
                );
            }
        }
    }
    for note in &status.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

/// How many extents of in-volume storage the text form shows.
const EXTENTS_SHOWN: usize = 4;

/// The line of the text form that places the in-volume storage of
/// snapshot `id`: its device and its first extents, `START+COUNT` in
/// sectors.
fn in_volume_line(id: &str, st: &Storage, extents: &[StorageExtent]) -> String {
    let total: u64 = extents.iter().map(|e| e.sectors).sum();
    let mut line = format!(
        "  {id} in-volume storage on {}: {} extent{}, {}",
        st.dev_id,
        extents.len(),
        if extents.len() == 1 { "" } else { "s" },
        human(total << 9)
    );
    if !extents.is_empty() {
        line += ", sectors";
        for e in extents.iter().take(EXTENTS_SHOWN) {
            let _ = write!(line, " {}+{}", e.start_sector, e.sectors);
        }
        if extents.len() > EXTENTS_SHOWN {
            line += " ...";
        }
    }
    line + "\n"
}

/// Formats the status as `blksnap status --json` prints it: one object on
/// one line, without the newline.
pub fn format_json(status: &Status) -> String {
    serde_json::to_string(status).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const ID2: &str = "11111111-2222-3333-4444-555555555555";

    fn listed_text() -> String {
        format!(
            "snapshot {ID} taken=1 error=-28 error_dev=7:1 storage=file storage_dev=8:1 \
             storage_ino=12 capacity=4096 used=2048 limit=8192 future=1\n\
             member 7:0 image=blksnap-7-0\n\
             member 7:1 image=blksnap-7-1\n\
             snapshot {ID2} taken=0 error=0 error_dev=0:0 storage=device storage_dev=7:5 \
             storage_ino=0 capacity=204800 used=0 limit=204800\n\
             member 7:2 image=-\n\
             garbage\n"
        )
    }

    fn node(dev: &str) -> Option<String> {
        let minor = dev.strip_prefix("7:")?;
        Some(format!("/dev/loop{minor}"))
    }

    /// A status of two snapshots, one corrupted, and three devices.
    fn state() -> Status {
        let listed = parse_list(&listed_text());
        let mut parameters = BTreeMap::new();
        parameters.insert("chunk_minimum_shift".to_owned(), 18);
        parameters.insert("diff_storage_minimum".to_owned(), 2097152);
        let device = |minor: u32, snapshot: &str, image: bool, err: i32, dirty| Device {
            device: format!("/dev/loop{minor}"),
            dev_id: format!("7:{minor}"),
            cbt: Some(Cbt {
                block_size: 65536,
                block_count: 1600,
                device_capacity: 100 << 20,
                generation_id: "a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5".to_owned(),
                changes_number: 1,
                changed_blocks: 12,
                dirty_blocks: dirty,
            }),
            snapshot: Some(snapshot.to_owned()),
            image: image.then(|| format!("/dev/blksnap-7-{minor}")),
            error_code: err,
        };
        Status {
            module: Module {
                version: "2.0.0.1".to_owned(),
                parameters,
            },
            devices: vec![
                device(0, ID, true, -28, Some(3)),
                device(1, ID, true, -28, None),
                device(2, ID2, false, 0, Some(0)),
            ],
            snapshots: snapshots(&[ID.to_owned(), ID2.to_owned()], Some(&listed), node),
            notes: vec![],
        }
    }

    #[test]
    fn parses_the_list() {
        let l = parse_list(&listed_text());
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].id, ID);
        assert!(l[0].taken);
        assert_eq!(l[0].error, -28);
        assert_eq!(l[0].error_dev, "7:1");
        assert_eq!((l[0].capacity, l[0].used, l[0].limit), (4096, 2048, 8192));
        assert_eq!(l[0].storage_ino, 12);
        assert_eq!(
            l[0].members,
            vec![
                ("7:0".to_owned(), Some("blksnap-7-0".to_owned())),
                ("7:1".to_owned(), Some("blksnap-7-1".to_owned()))
            ]
        );
        assert!(!l[1].taken);
        assert_eq!(l[1].members, vec![("7:2".to_owned(), None)]);
        assert!(parse_list("").is_empty());
        assert!(parse_list("member 7:0 image=x\n").is_empty());
    }

    #[test]
    fn knows_image_names_from_device_numbers() {
        assert!(is_dev_id("7:0") && is_dev_id("259:65536"));
        assert!(!is_dev_id("7-0") && !is_dev_id("7:") && !is_dev_id(":0"));
        assert!(is_image_name("blksnap-7-0") && is_image_name("blksnap-259-1"));
        // Neither the old form, nor other disks whose name starts alike.
        for name in [
            "blksnap-image_7:0",
            "blksnap-7:0",
            "blksnap-7",
            "blksnap-x-0",
            "blksnap7-0",
        ] {
            assert!(!is_image_name(name), "{name}");
        }
    }

    const ID3: &str = "33333333-2222-3333-4444-555555555555";

    fn in_volume_text() -> String {
        format!(
            "snapshot {ID3} taken=1 error=0 error_dev=0:0 storage=in-volume storage_dev=8:1 \
             storage_ino=13 capacity=2097152 used=512 limit=2097152\n\
             in_volume_extent start=34816 count=65536\n\
             in_volume_extent start=1050624 count=2031616 future=2\n\
             member 8:0 image=blksnap-8-0\n\
             in_volume_extent start=x count=1\n\
             snapshot {ID} taken=0 error=0 error_dev=0:0 storage=file storage_dev=8:1 \
             storage_ino=12 capacity=4096 used=0 limit=8192\n\
             member 7:0 image=-\n"
        )
    }

    #[test]
    fn parses_in_volume_extents() {
        let l = parse_list(&in_volume_text());
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].storage, "in-volume");
        assert_eq!(l[0].storage_dev, "8:1");
        assert_eq!(l[0].storage_ino, 13);
        assert_eq!(l[0].extents, [(34816, 65536), (1050624, 2031616)]);
        assert_eq!(
            l[0].members,
            [("8:0".to_owned(), Some("blksnap-8-0".to_owned()))]
        );
        assert!(l[1].extents.is_empty());
        // Extent lines before any snapshot line are skipped.
        assert!(parse_list("in_volume_extent start=1 count=2\n").is_empty());
        // An older list, without them, parses as before.
        assert!(parse_list(&listed_text())
            .iter()
            .all(|s| s.extents.is_empty()));

        let s = snapshots(&[ID3.to_owned()], Some(&l), |_| {
            Some("/dev/sda1".to_owned())
        });
        let st = s[0].storage.as_ref().unwrap();
        assert_eq!(st.kind, "in-volume");
        assert_eq!(st.path, None, "the module names no file path");
        assert_eq!(st.inode, Some(13));
        assert_eq!(
            st.extents.as_deref(),
            Some(
                &[
                    StorageExtent {
                        start_sector: 34816,
                        sectors: 65536
                    },
                    StorageExtent {
                        start_sector: 1050624,
                        sectors: 2031616
                    }
                ][..]
            )
        );
        assert_eq!(s[1].storage.as_ref().unwrap().extents, None);

        let status = Status {
            module: Module {
                version: "2.0.0.1".to_owned(),
                parameters: BTreeMap::new(),
            },
            snapshots: s,
            ..Default::default()
        };
        let text = format_text(&status);
        assert!(
            text.contains(&format!(
                "  {ID3}  taken    8:0      in-volume 8:1 ino 13  256KiB  1GiB"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "\n  {ID3} in-volume storage on 8:1: 2 extents, 1GiB, sectors 34816+65536 \
                 1050624+2031616\n"
            )),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&format_json(&status)).unwrap();
        let st = &v["snapshots"][0]["storage"];
        assert_eq!(st["kind"], "in-volume");
        assert_eq!(st["extents"][1]["start_sector"], 1050624);
        assert_eq!(st["extents"][1]["sectors"], 2031616);
        assert!(v["snapshots"][1]["storage"]["extents"].is_null());

        // Many extents: the first few, then an ellipsis.
        let many: Vec<StorageExtent> = (0..6)
            .map(|i| StorageExtent {
                start_sector: i * 100,
                sectors: 8,
            })
            .collect();
        let line = in_volume_line(ID3, status.snapshots[0].storage.as_ref().unwrap(), &many);
        assert!(
            line.ends_with(": 6 extents, 24KiB, sectors 0+8 100+8 200+8 300+8 ...\n"),
            "{line}"
        );
    }

    #[test]
    fn joins_collect_and_list() {
        let s = state().snapshots;
        assert_eq!(s[0].state, Some(State::Corrupted));
        assert_eq!(s[0].error_dev.as_deref(), Some("7:1"));
        assert_eq!(s[1].state, Some(State::Created));
        assert_eq!(
            s[1].storage.as_ref().unwrap().path.as_deref(),
            Some("/dev/loop5")
        );
        // Without the list only the ids are known; ids only in the list
        // (created between the two reads) are kept.
        let bare = snapshots(&[ID.to_owned()], None, node);
        assert_eq!(
            bare,
            vec![Snapshot {
                id: ID.to_owned(),
                ..Default::default()
            }]
        );
        let listed = parse_list(&listed_text());
        assert_eq!(snapshots(&[], Some(&listed), node).len(), 2);
    }

    #[test]
    fn counts_blocks() {
        assert_eq!(changed_blocks(&[0, 1, 2, 1, 3], 1), 2);
        assert_eq!(changed_blocks(&[0, 0], 0), 0);
        assert_eq!(dirty_blocks(&[0, 1, 2, 2, 1], 1), 2);
        assert_eq!(dirty_blocks(&[1, 0, 1], 0), 2);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(512), "512B");
        assert_eq!(human(65536), "64KiB");
        assert_eq!(human(3 << 29), "1.5GiB");
        assert_eq!(human(100 << 20), "100MiB");
    }

    #[test]
    fn text_form() {
        let expected = "\
module  blksnap 2.0.0.1
  PARAMETER             VALUE
  chunk_minimum_shift   18
  diff_storage_minimum  2097152

devices
  DEVICE      MAJ:MIN  SIZE    BLOCK  BLOCKS  CHANGES#  CHANGED  DIRTY  GENERATION                            SNAPSHOT  IMAGE
  /dev/loop0  7:0      100MiB  64KiB  1600    1         12       3      a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5  0f1e2d3c  /dev/blksnap-7-0
  /dev/loop1  7:1      100MiB  64KiB  1600    1         12       ?      a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5  0f1e2d3c  /dev/blksnap-7-1
  /dev/loop2  7:2      100MiB  64KiB  1600    1         12       0      a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5  11111111  -

snapshots
  SNAPSHOT                              STATE      MEMBERS  STORAGE          USED  SIZE    LIMIT
  0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0  corrupted  7:0,7:1  file 8:1 ino 12  1MiB  2MiB    4MiB
  11111111-2222-3333-4444-555555555555  created    7:2      /dev/loop5       0B    100MiB  100MiB
  0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 corrupted on 7:1: No space left on device (error -28)
";
        assert_eq!(format_text(&state()), expected);
    }

    #[test]
    fn text_form_of_an_idle_module_and_of_unknowns() {
        let mut s = Status {
            module: Module {
                version: "2.0.0.1".to_owned(),
                parameters: BTreeMap::new(),
            },
            ..Default::default()
        };
        let idle = format_text(&s);
        assert!(idle.ends_with("\ndevices\n  none attached\n\nsnapshots\n  none\n"));
        s.snapshots = snapshots(&[ID.to_owned()], None, node);
        s.notes.push("the list is missing".to_owned());
        // A device outside any known snapshot may be in this one.
        s.devices.push(Device {
            device: "/dev/loop0".to_owned(),
            dev_id: "7:0".to_owned(),
            ..Default::default()
        });
        let text = format_text(&s);
        assert!(text.contains(&format!("  {ID}  ?      ?        ?        ?     ?     ?\n")));
        assert!(text.contains("\n  /dev/loop0  7:0      ?     ?      ?       ?         ?        ?      ?           ?         -\n"), "{text}");
        assert!(text.ends_with("\nnote: the list is missing\n"));
    }

    #[test]
    fn json_form() {
        let json = format_json(&state());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(!json.contains('\n'));
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&v), ["devices", "module", "notes", "snapshots"]);
        assert_eq!(v["module"]["version"], "2.0.0.1");
        assert_eq!(v["module"]["parameters"]["chunk_minimum_shift"], 18);
        let d = &v["devices"][0];
        assert_eq!(
            keys(d),
            ["cbt", "dev_id", "device", "error_code", "image", "snapshot"]
        );
        assert_eq!(d["dev_id"], "7:0");
        assert_eq!(d["error_code"], -28);
        assert_eq!(d["snapshot"], ID);
        assert_eq!(d["cbt"]["dirty_blocks"], 3);
        assert_eq!(d["cbt"]["changed_blocks"], 12);
        assert!(v["devices"][1]["cbt"]["dirty_blocks"].is_null());
        assert!(v["devices"][2]["image"].is_null());
        let s = &v["snapshots"][0];
        assert_eq!(
            keys(s),
            [
                "error_code",
                "error_dev",
                "id",
                "members",
                "state",
                "storage"
            ]
        );
        assert_eq!(s["state"], "corrupted");
        assert_eq!(s["error_code"], -28);
        assert_eq!(s["members"][1]["image"], "/dev/blksnap-7-1");
        assert_eq!(s["storage"]["kind"], "file");
        assert_eq!(s["storage"]["inode"], 12);
        assert!(s["storage"]["path"].is_null());
        assert_eq!(s["storage"]["used_sectors"], 2048);
        assert_eq!(v["snapshots"][1]["state"], "created");
        assert!(v["snapshots"][1]["storage"]["inode"].is_null());
        // The exact text, so that a change of a key or of the order shows.
        assert!(json.starts_with(
            "{\"module\":{\"version\":\"2.0.0.1\",\"parameters\":{\"chunk_minimum_shift\":18,\
             \"diff_storage_minimum\":2097152}},\"devices\":[{\"device\":\"/dev/loop0\",\
             \"dev_id\":\"7:0\",\"cbt\":{\"block_size\":65536,\"block_count\":1600,\
             \"device_capacity\":104857600,\"generation_id\":\"a0a1a2a3-b0b1-c0c1-d0d1-e0e1e2e3e4e5\",\
             \"changes_number\":1,\"changed_blocks\":12,\"dirty_blocks\":3},\
             \"snapshot\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\",\
             \"image\":\"/dev/blksnap-7-0\",\"error_code\":-28}"
        ));
        assert!(json.ends_with(
            "{\"id\":\"11111111-2222-3333-4444-555555555555\",\"state\":\"created\",\
             \"error_code\":0,\"error_dev\":null,\"members\":[{\"dev_id\":\"7:2\",\
             \"device\":\"/dev/loop2\",\"image\":null}],\"storage\":{\"kind\":\"device\",\
             \"dev_id\":\"7:5\",\"path\":\"/dev/loop5\",\"inode\":null,\
             \"capacity_sectors\":204800,\"used_sectors\":0,\"limit_sectors\":204800,\
             \"extents\":null}}],\
             \"notes\":[]}"
        ));
    }
}
