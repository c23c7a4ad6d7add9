//! SNAPSHOTADD racing BLKFILTER_DETACH on one device: two threads released
//! together by a barrier, one of them delayed by a seeded spin, so that a
//! run of rounds sweeps the moments at which they meet.

use std::hint::spin_loop;
use std::path::Path;
use std::sync::Barrier;
use std::thread;

use blksnap::{BlockDevice, Uuid};

/// How one round of the race ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// SNAPSHOTADD returned 0, and the detach EBUSY (the device is in a
    /// snapshot).
    AddFirst,
    /// The detach returned 0, and SNAPSHOTADD ENOENT (nothing attached).
    DetachFirst,
    /// Both returned 0: a detached tracker was added to the snapshot.
    Both,
    /// Anything else, described.
    Other(String),
}

fn errno_name(e: &blksnap::Error) -> String {
    match e.errno() {
        Some(libc::EBUSY) => "EBUSY".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(libc::ENODEV) => "ENODEV".into(),
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EALREADY) => "EALREADY".into(),
        Some(n) => format!("errno {n}"),
        None => e.to_string(),
    }
}

/// The outcome of an ioctl as a short word: `0` or the errno's name.
pub fn result_name(r: &blksnap::Result<()>) -> String {
    match r {
        Ok(()) => "0".into(),
        Err(e) => errno_name(e),
    }
}

/// Runs SNAPSHOTADD of `dev` to `id` and BLKFILTER_DETACH of `dev` at
/// once; `spin` delays one of them (the add if `delay_add`) by that many
/// spin-loop turns after the barrier.
pub fn add_vs_detach(dev: &Path, id: &Uuid, spin: u64, delay_add: bool) -> Result<Outcome, String> {
    let adder = BlockDevice::open(dev).map_err(|e| e.to_string())?;
    let detacher = BlockDevice::open(dev).map_err(|e| e.to_string())?;
    let barrier = Barrier::new(2);
    let delay = |mine: bool| {
        if mine {
            for _ in 0..spin {
                spin_loop();
            }
        }
    };
    let (add, detach) = thread::scope(|s| {
        let a = s.spawn(|| {
            barrier.wait();
            delay(delay_add);
            adder.snapshot_add(id)
        });
        let d = s.spawn(|| {
            barrier.wait();
            delay(!delay_add);
            detacher.detach()
        });
        (a.join(), d.join())
    });
    let (Ok(add), Ok(detach)) = (add, detach) else {
        return Err("a racing thread panicked".into());
    };
    let busy = |r: &blksnap::Result<()>| matches!(r, Err(e) if e.errno() == Some(libc::EBUSY));
    let absent = |r: &blksnap::Result<()>| matches!(r, Err(e) if e.errno() == Some(libc::ENOENT));
    Ok(match (&add, &detach) {
        (Ok(()), Ok(())) => Outcome::Both,
        (Ok(()), d) if busy(d) => Outcome::AddFirst,
        (a, Ok(())) if absent(a) => Outcome::DetachFirst,
        (a, d) => Outcome::Other(format!(
            "SNAPSHOTADD returned {}, BLKFILTER_DETACH {}",
            result_name(a),
            result_name(d)
        )),
    })
}
