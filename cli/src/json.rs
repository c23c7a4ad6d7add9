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
//!
//! These are pure functions of the values the commands got, so the host
//! tests check the exact text.

use std::path::Path;

use serde::Serialize;

use crate::{uapi, Attached, CbtInfo, Sectors};

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
