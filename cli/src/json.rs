//! The `--json` forms of what the `blksnap` commands print.
//!
//! With `--json`, each command that prints something prints one JSON object
//! on one line instead of its text form; commands that print nothing still
//! print nothing. The keys are fixed here, in the order they are written:
//!
//! | command | object |
//! |---|---|
//! | version | `{"major","minor","revision","build"}` |
//! | attach | `{"attached"}`: `true`, or `false` if it was attached already |
//! | cbtinfo | `{"block_size","device_capacity","block_count","generation_id","changes_number"}`, the UUID as a string |
//! | markdirtyblock -f | `{"device","ranges":[{"sector","count"},...]}` |
//! | snapshot_create | `{"id"}` |
//! | snapshot_collect | `{"ids":[...]}` |
//! | snapshot_info | `{"error_code","image"}`, image `"/dev/NAME"` or `""`; with `--field`, that key alone |
//! | snapshot_waitevent | `{"result":"ok","time","event",...}` with the event's payload keys, or `{"result"}` alone: `"timeout"`, `"interrupted"`, `"not found"` |
//! | snapshot_watcher | one `snapshot_waitevent` object of `"result":"ok"` per event, one per line |
//! | backup | `{"id","devices":[{"device","output","mode","fallback"?,"copied","size","sha256","generation_id","changes_number"},...]}`; `"fallback"` (why an incremental backup copied all) only when it did |
//! | verify | `{"file","image"?:{"equal","file_size","image_size","ranges","bytes","differences":[{"offset","length"},...]},"checksum"?:{"ok","expected","actual"}}`, each part only when asked for |
//!
//! The payload keys of an event are those of its text lines:
//! `"dev_id":"MAJOR:MINOR","err_code"` for corrupted, `"requested_nr_sect"`
//! for no_space, `"code"` for an event of unknown code. Identifiers are
//! strings in the 8-4-4-4-12 form.
//!
//! These are pure functions of the values the commands got, so the host
//! tests check the exact text.

use std::path::Path;

use serde::Serialize;

use crate::backup::BackupReport;
use crate::plan::{FullReason, Mode};
use crate::verify::{ChecksumCheck, Comparison};
use crate::{uapi, Attached, CbtInfo, Event, EventKind, InfoField, Sectors, SnapshotInfo, Uuid};

#[derive(Serialize)]
struct Version {
    major: u16,
    minor: u16,
    revision: u16,
    build: u16,
}

#[derive(Serialize)]
struct Attach {
    attached: bool,
}

#[derive(Serialize)]
struct Cbt {
    block_size: u32,
    device_capacity: u64,
    block_count: u32,
    generation_id: String,
    changes_number: u8,
}

#[derive(Serialize)]
struct Range {
    sector: u64,
    count: u64,
}

#[derive(Serialize)]
struct Marked {
    device: String,
    ranges: Vec<Range>,
}

#[derive(Serialize)]
struct Created {
    id: String,
}

#[derive(Serialize)]
struct Collected {
    ids: Vec<String>,
}

#[derive(Serialize)]
struct Info {
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

/// An event, or the outcome of a wait without one (only `result` set).
#[derive(Serialize)]
struct Waited {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    err_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_nr_sect: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u32>,
}

impl Waited {
    /// Returns the object of a wait that ended with `result` and no event.
    fn without_event(result: &'static str) -> Self {
        Self {
            result,
            time: None,
            event: None,
            dev_id: None,
            err_code: None,
            requested_nr_sect: None,
            code: None,
        }
    }
}

#[derive(Serialize)]
struct BackedUp {
    device: String,
    output: String,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<&'static str>,
    copied: u64,
    size: u64,
    sha256: String,
    generation_id: String,
    changes_number: u8,
}

#[derive(Serialize)]
struct Backup {
    id: String,
    devices: Vec<BackedUp>,
}

#[derive(Serialize)]
struct Difference {
    offset: u64,
    length: u64,
}

#[derive(Serialize)]
struct Compared {
    equal: bool,
    file_size: u64,
    image_size: u64,
    ranges: u64,
    bytes: u64,
    differences: Vec<Difference>,
}

#[derive(Serialize)]
struct Checksum {
    ok: bool,
    expected: String,
    actual: String,
}

#[derive(Serialize)]
struct Verified {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Compared>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<Checksum>,
}

/// Returns `value` as compact JSON.
fn to_json(value: &impl Serialize) -> String {
    // The values above are structs of integers, strings and sequences:
    // serializing them to a string has no way to fail.
    serde_json::to_string(value).expect("plain data serializes to JSON")
}

/// `blksnap --json version`: the interface version of the module.
pub fn version(v: &uapi::BlksnapVersion) -> String {
    to_json(&Version {
        major: v.major,
        minor: v.minor,
        revision: v.revision,
        build: v.build,
    })
}

/// `blksnap --json attach`: whether the filter was attached now (`true`) or
/// already was (`false`).
pub fn attach(attached: Attached) -> String {
    to_json(&Attach {
        attached: attached == Attached::Now,
    })
}

/// `blksnap --json cbtinfo`: the change-tracking state of a device.
pub fn cbt_info(info: &CbtInfo) -> String {
    to_json(&Cbt {
        block_size: info.block_size,
        device_capacity: info.device_capacity,
        block_count: info.block_count,
        generation_id: info.generation_id.to_string(),
        changes_number: info.changes_number,
    })
}

/// `blksnap --json markdirtyblock -f`: the device and the sector ranges
/// marked on it.
///
/// A device path that is not UTF-8 is written with U+FFFD in place of the
/// bytes that are not.
pub fn marked_ranges(device: &Path, ranges: &[Sectors]) -> String {
    to_json(&Marked {
        device: device.to_string_lossy().into_owned(),
        ranges: ranges
            .iter()
            .map(|r| Range {
                sector: r.offset,
                count: r.count,
            })
            .collect(),
    })
}

/// `blksnap --json snapshot_create`: the identifier of the new snapshot.
pub fn snapshot_create(id: &Uuid) -> String {
    to_json(&Created { id: id.to_string() })
}

/// `blksnap --json snapshot_collect`: the identifiers of all snapshots.
pub fn snapshot_collect(ids: &[Uuid]) -> String {
    to_json(&Collected {
        ids: ids.iter().map(Uuid::to_string).collect(),
    })
}

/// `blksnap --json snapshot_info`: the error code and the image's device
/// node (`""` before the take); with `field`, only that key.
pub fn snapshot_info(info: &SnapshotInfo, field: Option<InfoField>) -> String {
    let image = || {
        info.image_path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    to_json(&Info {
        error_code: (field != Some(InfoField::Image)).then_some(info.error_code),
        image: (field != Some(InfoField::ErrorCode)).then(image),
    })
}

/// `blksnap --json snapshot_watcher`, one line per event: the event with
/// `"result":"ok"`, as `snapshot_waitevent` prints it.
pub fn event(event: &Event) -> String {
    let mut out = Waited::without_event("ok");
    out.time = Some(event.time_label);
    out.event = Some(event.kind.name());
    match event.kind {
        EventKind::Corrupted {
            dev_major,
            dev_minor,
            err_code,
        } => {
            out.dev_id = Some(format!("{dev_major}:{dev_minor}"));
            out.err_code = Some(err_code);
        }
        EventKind::NoSpace { requested_sectors } => {
            out.requested_nr_sect = Some(requested_sectors);
        }
        EventKind::Unknown { code } => out.code = Some(code),
    }
    to_json(&out)
}

/// `blksnap --json snapshot_waitevent`: the event as [`event`] writes it,
/// or only the result: `"timeout"`, `"interrupted"` or `"not found"`.
pub fn wait_result(result: &crate::WaitResult) -> String {
    match result {
        crate::WaitResult::Event(e) => event(e),
        other => to_json(&Waited::without_event(other.name())),
    }
}

/// `blksnap --json backup`: the snapshot used and what was done for each
/// device.
pub fn backup(report: &BackupReport) -> String {
    to_json(&Backup {
        id: report.id.to_string(),
        devices: report
            .devices
            .iter()
            .map(|d| BackedUp {
                device: d.target.device.to_string_lossy().into_owned(),
                output: d.target.output.to_string_lossy().into_owned(),
                mode: d.mode.name(),
                fallback: match &d.mode {
                    Mode::Full(FullReason::NotAsked) | Mode::Incremental { .. } => None,
                    Mode::Full(reason) => Some(reason.name()),
                },
                copied: d.copied,
                size: d.state.device_capacity,
                sha256: d.state.sha256.clone(),
                generation_id: d.state.generation_id.to_string(),
                changes_number: d.state.changes_number,
            })
            .collect(),
    })
}

/// `blksnap --json verify`: the comparison of `file` with the image and the
/// check of its checksum, each only if it was made.
pub fn verify(
    file: &Path,
    comparison: Option<&Comparison>,
    checksum: Option<&ChecksumCheck>,
) -> String {
    to_json(&Verified {
        file: file.to_string_lossy().into_owned(),
        image: comparison.map(|c| Compared {
            equal: c.equal(),
            file_size: c.size_a,
            image_size: c.size_b,
            ranges: c.ranges,
            bytes: c.bytes,
            differences: c
                .first
                .iter()
                .map(|r| Difference {
                    offset: r.start,
                    length: r.len(),
                })
                .collect(),
        }),
        checksum: checksum.map(|s| Checksum {
            ok: s.ok(),
            expected: s.expected.clone(),
            actual: s.actual.clone(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Uuid;
    use serde_json::{json, Value};

    /// Parses `text` back, checking that it is one line.
    fn parse(text: &str) -> Value {
        assert!(!text.contains('\n'), "{text}");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn version_object() {
        let v = uapi::BlksnapVersion {
            major: 2,
            minor: 0,
            revision: 7,
            build: 1,
        };
        let text = version(&v);
        assert_eq!(text, r#"{"major":2,"minor":0,"revision":7,"build":1}"#);
        assert_eq!(
            parse(&text),
            json!({"major": 2, "minor": 0, "revision": 7, "build": 1})
        );
    }

    #[test]
    fn attach_object() {
        assert_eq!(attach(Attached::Now), r#"{"attached":true}"#);
        assert_eq!(attach(Attached::Already), r#"{"attached":false}"#);
        assert_eq!(parse(&attach(Attached::Now)), json!({"attached": true}));
        assert_eq!(
            parse(&attach(Attached::Already)),
            json!({"attached": false})
        );
    }

    #[test]
    fn cbt_info_object() {
        let info = CbtInfo {
            device_capacity: 10_737_418_240,
            block_size: 65536,
            block_count: 163_840,
            generation_id: "9f1c2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7".parse().unwrap(),
            changes_number: 3,
        };
        let text = cbt_info(&info);
        assert_eq!(
            text,
            r#"{"block_size":65536,"device_capacity":10737418240,"block_count":163840,"#.to_owned()
                + r#""generation_id":"9f1c2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7","changes_number":3}"#
        );
        assert_eq!(
            parse(&text),
            json!({
                "block_size": 65536,
                "device_capacity": 10_737_418_240u64,
                "block_count": 163_840,
                "generation_id": "9f1c2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7",
                "changes_number": 3,
            })
        );
    }

    #[test]
    fn cbt_info_extremes_parse_back() {
        let max = CbtInfo {
            device_capacity: u64::MAX,
            block_size: u32::MAX,
            block_count: u32::MAX,
            generation_id: Uuid::from_bytes([0xff; 16]),
            changes_number: u8::MAX,
        };
        let value = parse(&cbt_info(&max));
        assert_eq!(value["device_capacity"].as_u64(), Some(u64::MAX));
        assert_eq!(value["block_size"].as_u64(), Some(u32::MAX.into()));
        assert_eq!(
            value["generation_id"],
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        assert_eq!(value["changes_number"], 255);
        let zero = parse(&cbt_info(&CbtInfo::default()));
        assert_eq!(
            zero["generation_id"],
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn marked_ranges_object() {
        let ranges = [Sectors::new(0, 8), Sectors::new(2048, 16)];
        let text = marked_ranges(Path::new("/dev/loop0"), &ranges);
        assert_eq!(
            text,
            r#"{"device":"/dev/loop0","ranges":[{"sector":0,"count":8},{"sector":2048,"count":16}]}"#
        );
        assert_eq!(
            parse(&text),
            json!({
                "device": "/dev/loop0",
                "ranges": [{"sector": 0, "count": 8}, {"sector": 2048, "count": 16}],
            })
        );
        assert_eq!(
            marked_ranges(Path::new("/dev/sda1"), &[]),
            r#"{"device":"/dev/sda1","ranges":[]}"#
        );
    }

    const ID: &str = "01234567-89ab-cdef-fedc-ba9876543210";

    #[test]
    fn snapshot_create_object() {
        let id: Uuid = ID.parse().unwrap();
        let text = snapshot_create(&id);
        assert_eq!(text, format!(r#"{{"id":"{ID}"}}"#));
        assert_eq!(parse(&text), json!({ "id": ID }));
    }

    #[test]
    fn snapshot_collect_object() {
        let id: Uuid = ID.parse().unwrap();
        assert_eq!(snapshot_collect(&[]), r#"{"ids":[]}"#);
        let text = snapshot_collect(&[id, Uuid::default()]);
        assert_eq!(
            text,
            format!(r#"{{"ids":["{ID}","00000000-0000-0000-0000-000000000000"]}}"#)
        );
        assert_eq!(
            parse(&text),
            json!({"ids": [ID, "00000000-0000-0000-0000-000000000000"]})
        );
    }

    #[test]
    fn snapshot_info_object() {
        let info = SnapshotInfo {
            error_code: -28,
            image: "blksnap-7-0".into(),
        };
        assert_eq!(
            snapshot_info(&info, None),
            r#"{"error_code":-28,"image":"/dev/blksnap-7-0"}"#
        );
        assert_eq!(
            snapshot_info(&info, Some(InfoField::Image)),
            r#"{"image":"/dev/blksnap-7-0"}"#
        );
        assert_eq!(
            snapshot_info(&info, Some(InfoField::ErrorCode)),
            r#"{"error_code":-28}"#
        );
        let empty = SnapshotInfo::default();
        assert_eq!(
            snapshot_info(&empty, None),
            r#"{"error_code":0,"image":""}"#
        );
        assert_eq!(
            parse(&snapshot_info(&empty, Some(InfoField::Image))),
            json!({"image": ""})
        );
    }

    #[test]
    fn wait_result_objects() {
        use crate::WaitResult;

        let corrupted = Event {
            time_label: 1_234_567_890,
            kind: EventKind::Corrupted {
                dev_major: 7,
                dev_minor: 0,
                err_code: 28,
            },
        };
        let text = wait_result(&WaitResult::Event(corrupted));
        assert_eq!(
            text,
            r#"{"result":"ok","time":1234567890,"event":"corrupted","dev_id":"7:0","err_code":28}"#
        );
        assert_eq!(event(&corrupted), text);
        let no_space = Event {
            time_label: 98_765,
            kind: EventKind::NoSpace {
                requested_sectors: 4_194_304,
            },
        };
        assert_eq!(
            wait_result(&WaitResult::Event(no_space)),
            r#"{"result":"ok","time":98765,"event":"no_space","requested_nr_sect":4194304}"#
        );
        let unknown = Event {
            time_label: -1,
            kind: EventKind::Unknown { code: 9 },
        };
        assert_eq!(
            event(&unknown),
            r#"{"result":"ok","time":-1,"event":"unknown","code":9}"#
        );
        assert_eq!(wait_result(&WaitResult::Timeout), r#"{"result":"timeout"}"#);
        assert_eq!(
            wait_result(&WaitResult::Interrupted),
            r#"{"result":"interrupted"}"#
        );
        assert_eq!(
            wait_result(&WaitResult::NotFound),
            r#"{"result":"not found"}"#
        );
        let big = Event {
            time_label: i64::MAX,
            kind: EventKind::NoSpace {
                requested_sectors: u64::MAX,
            },
        };
        let value = parse(&event(&big));
        assert_eq!(value["time"].as_i64(), Some(i64::MAX));
        assert_eq!(value["requested_nr_sect"].as_u64(), Some(u64::MAX));
    }

    fn report() -> BackupReport {
        use crate::backup::{DeviceBackup, Target};
        use crate::plan::BackupState;
        let state = |n| BackupState {
            device: "/dev/loop0".into(),
            generation_id: ID.parse().unwrap(),
            changes_number: n,
            block_size: 65536,
            device_capacity: 1 << 26,
            sha256: "ab".repeat(32),
        };
        let device = |mode, copied, n| DeviceBackup {
            target: Target {
                device: "/dev/loop0".into(),
                output: "/b/loop0.img".into(),
            },
            mode,
            copied,
            state: state(n),
        };
        BackupReport {
            id: ID.parse().unwrap(),
            devices: vec![
                device(Mode::Full(FullReason::NotAsked), 1 << 26, 1),
                device(Mode::Incremental { since: 1 }, 65536, 2),
                device(
                    Mode::Full(FullReason::Generation {
                        saved: Uuid::default(),
                        now: ID.parse().unwrap(),
                    }),
                    1 << 26,
                    1,
                ),
            ],
        }
    }

    #[test]
    fn backup_object() {
        let text = backup(&report());
        let sha = "ab".repeat(32);
        let dev = |mode: &str, fallback: Option<&str>, copied: u64, n: u8| {
            let mut v = json!({
                "device": "/dev/loop0",
                "output": "/b/loop0.img",
                "mode": mode,
                "copied": copied,
                "size": 1u64 << 26,
                "sha256": sha,
                "generation_id": ID,
                "changes_number": n,
            });
            if let Some(f) = fallback {
                v["fallback"] = json!(f);
            }
            v
        };
        assert_eq!(
            parse(&text),
            json!({
                "id": ID,
                "devices": [
                    dev("full", None, 1 << 26, 1),
                    dev("incremental", None, 65536, 2),
                    dev("full", Some("generation"), 1 << 26, 1),
                ],
            })
        );
        assert!(text.starts_with(&format!(
            r#"{{"id":"{ID}","devices":[{{"device":"/dev/loop0","output":"/b/loop0.img","mode":"full","copied":"#
        )));
    }

    #[test]
    fn verify_objects() {
        use crate::plan::ByteRange;
        let file = Path::new("/b/loop0.img");
        assert_eq!(verify(file, None, None), r#"{"file":"/b/loop0.img"}"#);
        let mut c = Comparison {
            size_a: 4096,
            size_b: 4096,
            ..Comparison::default()
        };
        assert_eq!(
            parse(&verify(file, Some(&c), None)),
            json!({"file": "/b/loop0.img", "image": {
                "equal": true, "file_size": 4096, "image_size": 4096,
                "ranges": 0, "bytes": 0, "differences": [],
            }})
        );
        c.first = vec![ByteRange::new(512, 1536)];
        c.ranges = 3;
        c.bytes = 2048;
        c.size_b = 8192;
        let sum = ChecksumCheck {
            expected: "00".repeat(32),
            actual: "11".repeat(32),
        };
        assert_eq!(
            parse(&verify(file, Some(&c), Some(&sum))),
            json!({"file": "/b/loop0.img",
                "image": {
                    "equal": false, "file_size": 4096, "image_size": 8192,
                    "ranges": 3, "bytes": 2048,
                    "differences": [{"offset": 512, "length": 1024}],
                },
                "checksum": {"ok": false, "expected": "00".repeat(32), "actual": "11".repeat(32)},
            })
        );
    }

    #[test]
    fn device_names_are_escaped() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let text = marked_ranges(Path::new("/dev/disk/by-label/a\"b\\c"), &[]);
        assert_eq!(parse(&text)["device"], "/dev/disk/by-label/a\"b\\c");
        let odd = Path::new(OsStr::from_bytes(b"/dev/x\xff"));
        assert_eq!(parse(&marked_ranges(odd, &[]))["device"], "/dev/x\u{fffd}");
    }
}
