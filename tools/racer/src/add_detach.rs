//! `racer add-detach`: rounds of SNAPSHOTADD racing BLKFILTER_DETACH on one
//! device (defect 3 of issue 11). Each round attaches the filter, creates
//! an empty snapshot, races the two ioctls, destroys the snapshot and
//! leaves the device detached. Both returning 0 in one round means a
//! tracker that was being detached went into the snapshot.
//!
//! SNAPSHOTADD looks its filter up and then waits for the snapshots' lock;
//! a contender that takes and destroys a snapshot of another device in a
//! loop holds that lock for long stretches (image disks are added and
//! removed under it), as a second backup running at the same time would,
//! which widens the window in which a detach can come between the two.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use blksnap::{BlockDevice, Control};
use tagblk::order::SplitMix64;

use crate::member::sub_seed;
use crate::race::{add_vs_detach, Outcome};
use crate::report::Failures;

/// What `racer add-detach` does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The device.
    pub dev: PathBuf,
    /// The difference storage of the snapshots (never taken).
    pub storage: PathBuf,
    /// Number of rounds.
    pub rounds: u64,
    /// Seed of the delays.
    pub seed: u64,
    /// The largest delay, in spin-loop turns.
    pub spin: u64,
    /// A device whose snapshots a contender takes and destroys meanwhile.
    pub contend: Option<PathBuf>,
}

/// Takes and destroys snapshots of `dev` until `stop`; counts the cycles.
fn contender(
    dev: &Path,
    storage: &Path,
    stop: &AtomicBool,
    cycles: &AtomicU64,
    failures: &Failures,
) {
    let cycle = || -> Result<(), String> {
        let ctl = Control::open().map_err(|e| e.to_string())?;
        let d = BlockDevice::open(dev).map_err(|e| e.to_string())?;
        d.attach().map_err(|e| e.to_string())?;
        while !stop.load(Ordering::Relaxed) {
            let id = ctl
                .snapshot_create(storage, 1 << 14)
                .map_err(|e| e.to_string())?;
            let taken = d.snapshot_add(&id).and_then(|()| ctl.snapshot_take(&id));
            ctl.snapshot_destroy(&id).map_err(|e| e.to_string())?;
            taken.map_err(|e| e.to_string())?;
            cycles.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    };
    if let Err(e) = cycle() {
        failures.fail("contender", || {
            format!("the contender on {}: {e}", dev.display())
        });
    }
}

/// Runs the plan; prints a summary; returns whether no round went wrong.
pub fn run(plan: &Plan) -> Result<bool, String> {
    let failures = Failures::new();
    let stop = AtomicBool::new(false);
    let cycles = AtomicU64::new(0);
    let result = thread::scope(|s| {
        if let Some(other) = &plan.contend {
            let (stop, cycles, failures) = (&stop, &cycles, &failures);
            s.spawn(move || contender(other, &plan.storage, stop, cycles, failures));
        }
        let result = rounds(plan, &failures);
        stop.store(true, Ordering::Relaxed);
        result
    });
    let (add_first, detach_first) = result?;
    println!(
        "racer: rounds={} add_first={add_first} detach_first={detach_first} both={} other={} contender_cycles={}",
        plan.rounds,
        failures.count("both"),
        failures.count("other"),
        cycles.load(Ordering::Relaxed)
    );
    println!("{}", failures.summary());
    Ok(failures.is_empty())
}

/// The rounds; returns how many the add and the detach won.
fn rounds(plan: &Plan, failures: &Failures) -> Result<(u64, u64), String> {
    let ctl = Control::open().map_err(|e| e.to_string())?;
    let dev = BlockDevice::open(&plan.dev).map_err(|e| e.to_string())?;
    let mut rng = SplitMix64::new(sub_seed(plan.seed, &[]));
    let (mut add_first, mut detach_first) = (0u64, 0u64);
    for r in 0..plan.rounds {
        dev.attach().map_err(|e| format!("round {r}: {e}"))?;
        // 8 sectors: the snapshot is never taken.
        let id = ctl
            .snapshot_create(&plan.storage, 8)
            .map_err(|e| format!("round {r}: {e}"))?;
        let spin = rng.below(plan.spin.max(1));
        let delay_add = rng.below(2) == 0;
        let outcome = add_vs_detach(&plan.dev, &id, spin, delay_add);
        let destroyed = ctl.snapshot_destroy(&id);
        match outcome? {
            Outcome::AddFirst => add_first += 1,
            Outcome::DetachFirst => detach_first += 1,
            Outcome::Both => failures.fail("both", || {
                format!(
                    "round {r} (spin {spin}, delayed {}): SNAPSHOTADD and BLKFILTER_DETACH of {} both returned 0: the detached tracker was added to the snapshot (defect 3)",
                    if delay_add { "add" } else { "detach" },
                    plan.dev.display()
                )
            }),
            Outcome::Other(what) => failures.fail("other", || format!("round {r}: {what}")),
        }
        destroyed.map_err(|e| format!("round {r}: {e}"))?;
        // Start the next round detached (the add may have won).
        match dev.detach() {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ENOENT) => {}
            Err(e) => return Err(format!("round {r}: {e}")),
        }
    }
    Ok((add_first, detach_first))
}
