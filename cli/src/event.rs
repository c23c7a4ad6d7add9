//! Snapshot events, decoded from the `blksnap_snapshot_event` the module
//! fills, and their text form.
//!
//! [`Control::wait_event`](crate::Control::wait_event) asks the module for
//! the next event of a snapshot. The answer is a [`WaitResult`]: an
//! [`Event`] or one of the three ways a wait ends without one (the timeout,
//! a signal, a snapshot that does not exist), which are outcomes rather than
//! errors, because `snapshot_waitevent` reports them on stdout.
//! [`Event::from_raw`] decodes the 4096-byte structure: the code says which
//! payload `data` holds, a corrupted event's device and errno or a no_space
//! event's requested size, read at the offsets of their C structures.
//!
//! `snapshot_waitevent` prints an event as `key=value` lines, see
//! [`format_event`] and [`format_wait_result`]; `snapshot_watcher` prints
//! the upstream tool's lines, see [`format_watcher_event`].

use std::io;
use std::mem::offset_of;

use blksnap_uapi as uapi;

/// What happened to a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Copying a chunk to the difference storage failed: the snapshot is
    /// corrupted and its images fail with EIO.
    Corrupted {
        /// Major number of the original device whose chunk was lost.
        dev_major: u32,
        /// Minor number of that device.
        dev_minor: u32,
        /// Positive errno of the failure.
        err_code: i32,
    },
    /// The difference storage reached its limit and cannot grow.
    NoSpace {
        /// Total size, in 512-byte sectors, the storage was asked to have.
        requested_sectors: u64,
    },
    /// An event code this tool does not know.
    Unknown {
        /// The code the module sent.
        code: u32,
    },
}

impl EventKind {
    /// Returns the name of the event as `snapshot_waitevent` prints it.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Corrupted { .. } => "corrupted",
            Self::NoSpace { .. } => "no_space",
            Self::Unknown { .. } => "unknown",
        }
    }
}

/// A snapshot event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// When the event happened, in nanoseconds of the monotonic clock.
    pub time_label: i64,
    /// What happened.
    pub kind: EventKind,
}

/// Returns the `N` bytes of `data` at `offset`.
///
/// The payload structures are far smaller than `data`, so the range is
/// always inside it; zeros stand in if it were not.
fn field<const N: usize>(data: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = data.get(offset..offset + N) {
        out.copy_from_slice(src);
    }
    out
}

impl Event {
    /// Decodes the event the module wrote into `raw` (which it fills by
    /// SNAPSHOT_WAIT_EVENT): its code, time label and payload.
    ///
    /// The payload is read as the little-endian C structure of the code:
    /// `blksnap_event_corrupted` or `blksnap_event_no_space`. An unknown code
    /// keeps only the code.
    pub fn from_raw(raw: &uapi::BlksnapSnapshotEvent) -> Self {
        let data = &raw.data[..];
        let kind = match uapi::BlksnapEventCode::from_u32(raw.code) {
            Some(uapi::BlksnapEventCode::Corrupted) => {
                type C = uapi::BlksnapEventCorrupted;
                EventKind::Corrupted {
                    dev_major: u32::from_le_bytes(field(data, offset_of!(C, dev_id_mj))),
                    dev_minor: u32::from_le_bytes(field(data, offset_of!(C, dev_id_mn))),
                    err_code: i32::from_le_bytes(field(data, offset_of!(C, err_code))),
                }
            }
            Some(uapi::BlksnapEventCode::NoSpace) => {
                type N = uapi::BlksnapEventNoSpace;
                EventKind::NoSpace {
                    requested_sectors: u64::from_le_bytes(field(
                        data,
                        offset_of!(N, requested_nr_sect),
                    )),
                }
            }
            None => EventKind::Unknown { code: raw.code },
        };
        Self {
            time_label: raw.time_label,
            kind,
        }
    }
}

/// How a wait for a snapshot event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// An event came.
    Event(Event),
    /// None came within the timeout (ENOENT).
    Timeout,
    /// A signal interrupted the wait (EINTR).
    Interrupted,
    /// There is no snapshot with that identifier (ESRCH), or no longer.
    NotFound,
}

impl WaitResult {
    /// Returns the outcome a failed SNAPSHOT_WAIT_EVENT with `errno` stands
    /// for, if it stands for one.
    pub(crate) fn from_errno(errno: Option<i32>) -> Option<Self> {
        match errno? {
            libc::ENOENT => Some(Self::Timeout),
            libc::EINTR => Some(Self::Interrupted),
            libc::ESRCH => Some(Self::NotFound),
            _ => None,
        }
    }

    /// Returns the value of the `result=` line: `ok`, `timeout`,
    /// `interrupted` or `not found`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Event(_) => "ok",
            Self::Timeout => "timeout",
            Self::Interrupted => "interrupted",
            Self::NotFound => "not found",
        }
    }
}

/// Formats an event the way `snapshot_waitevent` and `snapshot_watcher`
/// print it: `result=ok`, `time=T`, `event=NAME` and the payload, one
/// `key=value` per line.
///
/// The payload is `dev_id=MAJOR:MINOR` and `err_code=N` for corrupted,
/// `requested_nr_sect=N` for no_space, and `code=N` for an unknown event.
pub fn format_event(event: &Event) -> String {
    let head = format!(
        "result=ok\ntime={}\nevent={}\n",
        event.time_label,
        event.kind.name()
    );
    let payload = match event.kind {
        EventKind::Corrupted {
            dev_major,
            dev_minor,
            err_code,
        } => format!("dev_id={dev_major}:{dev_minor}\nerr_code={err_code}\n"),
        EventKind::NoSpace { requested_sectors } => {
            format!("requested_nr_sect={requested_sectors}\n")
        }
        EventKind::Unknown { code } => format!("code={code}\n"),
    };
    head + &payload
}

/// Formats a wait's outcome the way `snapshot_waitevent` prints it: the
/// lines of [`format_event`], or the one line `result=timeout`,
/// `result=interrupted` or `result=not found`.
pub fn format_wait_result(result: &WaitResult) -> String {
    match result {
        WaitResult::Event(event) => format_event(event),
        other => format!("result={}\n", other.name()),
    }
}

/// The line `snapshot_watcher` starts with.
pub const WATCHER_START: &str = "Start snapshot watcher.\n";

/// The line `snapshot_watcher` prints when its snapshot does not exist (any
/// more).
pub const WATCHER_GONE: &str = "The snapshot no longer exists.\n";

/// The line `snapshot_watcher` ends with when it ends without an error.
pub const WATCHER_FINISH: &str = "Snapshot watcher finished.\n";

/// Returns the system's message for errno `errno`, as strerror(3) words it.
fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.strip_suffix(&format!(" (os error {errno})")) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// Formats an event the way `snapshot_watcher` prints it, in the words of
/// the upstream tool: one line, `T - ...`, with T the time label.
///
/// A corrupted event names the device and the error:
/// `T - The snapshot was corrupted for device [MAJOR:MINOR] with error
/// "MESSAGE".`, where T is cut to its low 32 bits, as the upstream tool
/// prints it. Any other event is `T - unsupported event #CODE.`, as there.
pub fn format_watcher_event(event: &Event) -> String {
    let code = match event.kind {
        EventKind::Corrupted {
            dev_major,
            dev_minor,
            err_code,
        } => {
            return format!(
                "{} - The snapshot was corrupted for device [{dev_major}:{dev_minor}] \
                 with error \"{}\".\n",
                event.time_label as u32,
                strerror(err_code)
            )
        }
        EventKind::NoSpace { .. } => uapi::BlksnapEventCode::NoSpace as u32,
        EventKind::Unknown { code } => code,
    };
    format!("{} - unsupported event #{code}.\n", event.time_label)
}

/// Returns whether `snapshot_watcher` stops after `event`: a corrupted
/// snapshot has nothing more to tell.
pub fn ends_watch(event: &Event) -> bool {
    matches!(event.kind, EventKind::Corrupted { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the raw event with `code`, `time_label` and `payload` at the
    /// start of `data`; the rest of the 4096 bytes are filled with 0xa5, as
    /// stale memory would be.
    fn raw(code: u32, time_label: i64, payload: &[u8]) -> uapi::BlksnapSnapshotEvent {
        let mut ev = uapi::BlksnapSnapshotEvent {
            id: uapi::BlksnapUuid { b: [0x11; 16] },
            timeout_ms: 1000,
            code,
            time_label,
            data: [0xa5; uapi::EVENT_DATA_SIZE],
        };
        ev.data[..payload.len()].copy_from_slice(payload);
        ev
    }

    #[test]
    fn the_raw_event_is_4096_bytes() {
        assert_eq!(size_of::<uapi::BlksnapSnapshotEvent>(), 4096);
        assert_eq!(raw(0, 0, &[]).data.len(), 4064);
    }

    #[test]
    fn decodes_corrupted() {
        // dev_id_mj = 7, dev_id_mn = 3, err_code = 28 (ENOSPC), little endian.
        let payload = [7, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0];
        let ev = Event::from_raw(&raw(0, 123_456_789_012, &payload));
        assert_eq!(
            ev,
            Event {
                time_label: 123_456_789_012,
                kind: EventKind::Corrupted {
                    dev_major: 7,
                    dev_minor: 3,
                    err_code: 28,
                },
            }
        );
        let payload = [
            0x03, 0x01, 0, 0, 0xff, 0xff, 0x0f, 0, 0xfb, 0xff, 0xff, 0xff,
        ];
        let ev = Event::from_raw(&raw(0, -1, &payload));
        assert_eq!(
            ev.kind,
            EventKind::Corrupted {
                dev_major: 259,
                dev_minor: 0xfffff,
                err_code: -5,
            }
        );
        assert_eq!(ev.time_label, -1);
    }

    #[test]
    fn decodes_no_space() {
        // requested_nr_sect = 0x0000_0001_0020_0000 sectors.
        let payload = [0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00];
        let ev = Event::from_raw(&raw(1, 42, &payload));
        assert_eq!(
            ev,
            Event {
                time_label: 42,
                kind: EventKind::NoSpace {
                    requested_sectors: 0x1_0020_0000,
                },
            }
        );
        let ev = Event::from_raw(&raw(1, i64::MAX, &[0xff; 8]));
        assert_eq!(
            ev.kind,
            EventKind::NoSpace {
                requested_sectors: u64::MAX
            }
        );
        assert_eq!(ev.time_label, i64::MAX);
    }

    #[test]
    fn unknown_codes_keep_the_code() {
        for code in [2, 0x100, u32::MAX] {
            let ev = Event::from_raw(&raw(code, 5, &[1, 2, 3]));
            assert_eq!(ev.kind, EventKind::Unknown { code });
            assert_eq!(ev.time_label, 5);
        }
    }

    #[test]
    fn errnos_map_to_outcomes() {
        assert_eq!(
            WaitResult::from_errno(Some(libc::ENOENT)),
            Some(WaitResult::Timeout)
        );
        assert_eq!(
            WaitResult::from_errno(Some(libc::EINTR)),
            Some(WaitResult::Interrupted)
        );
        assert_eq!(
            WaitResult::from_errno(Some(libc::ESRCH)),
            Some(WaitResult::NotFound)
        );
        for errno in [libc::EINVAL, libc::EFAULT, libc::ENODEV, libc::ENOTTY] {
            assert_eq!(WaitResult::from_errno(Some(errno)), None);
        }
        assert_eq!(WaitResult::from_errno(None), None);
    }

    #[test]
    fn formats_corrupted() {
        let ev = Event {
            time_label: 1_234_567_890,
            kind: EventKind::Corrupted {
                dev_major: 7,
                dev_minor: 0,
                err_code: 28,
            },
        };
        let text = "result=ok\ntime=1234567890\nevent=corrupted\ndev_id=7:0\nerr_code=28\n";
        assert_eq!(format_event(&ev), text);
        assert_eq!(format_wait_result(&WaitResult::Event(ev)), text);
    }

    #[test]
    fn formats_no_space() {
        let ev = Event {
            time_label: 98_765,
            kind: EventKind::NoSpace {
                requested_sectors: 4_194_304,
            },
        };
        assert_eq!(
            format_wait_result(&WaitResult::Event(ev)),
            "result=ok\ntime=98765\nevent=no_space\nrequested_nr_sect=4194304\n"
        );
    }

    #[test]
    fn formats_unknown_and_extremes() {
        let ev = Event {
            time_label: i64::MIN,
            kind: EventKind::Unknown { code: 9 },
        };
        assert_eq!(
            format_event(&ev),
            "result=ok\ntime=-9223372036854775808\nevent=unknown\ncode=9\n"
        );
        let ev = Event {
            time_label: 0,
            kind: EventKind::Corrupted {
                dev_major: u32::MAX,
                dev_minor: u32::MAX,
                err_code: i32::MIN,
            },
        };
        assert_eq!(
            format_event(&ev),
            "result=ok\ntime=0\nevent=corrupted\ndev_id=4294967295:4294967295\n\
             err_code=-2147483648\n"
        );
    }

    #[test]
    fn formats_the_outcomes_without_an_event() {
        assert_eq!(format_wait_result(&WaitResult::Timeout), "result=timeout\n");
        assert_eq!(
            format_wait_result(&WaitResult::Interrupted),
            "result=interrupted\n"
        );
        assert_eq!(
            format_wait_result(&WaitResult::NotFound),
            "result=not found\n"
        );
    }

    #[test]
    fn watcher_lines_are_the_upstream_tools() {
        let corrupted = Event {
            time_label: (7 << 32) + 1_234_567,
            kind: EventKind::Corrupted {
                dev_major: 7,
                dev_minor: 3,
                err_code: libc::ENOSPC,
            },
        };
        assert_eq!(
            format_watcher_event(&corrupted),
            "1234567 - The snapshot was corrupted for device [7:3] with error \"No space left on device\".\n"
        );
        assert!(ends_watch(&corrupted));
        let no_space = Event {
            time_label: 123_456_789_012,
            kind: EventKind::NoSpace {
                requested_sectors: 65536,
            },
        };
        assert_eq!(
            format_watcher_event(&no_space),
            "123456789012 - unsupported event #1.\n"
        );
        assert!(!ends_watch(&no_space));
        let unknown = Event {
            time_label: 5,
            kind: EventKind::Unknown { code: 9 },
        };
        assert_eq!(
            format_watcher_event(&unknown),
            "5 - unsupported event #9.\n"
        );
        assert_eq!(WATCHER_START, "Start snapshot watcher.\n");
        assert_eq!(WATCHER_GONE, "The snapshot no longer exists.\n");
        assert_eq!(WATCHER_FINISH, "Snapshot watcher finished.\n");
    }

    #[test]
    fn errors_are_worded_as_strerror_words_them() {
        assert_eq!(strerror(libc::EIO), "Input/output error");
        assert_eq!(strerror(libc::ENODEV), "No such device");
        assert_eq!(strerror(4242), "Unknown error 4242");
    }
}
