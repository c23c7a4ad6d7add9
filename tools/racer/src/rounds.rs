//! Rounds of snapshots of live members: writers write the members all
//! along; each round creates a snapshot, adds the members (one of them,
//! optionally, while a detach races the add), takes it, reads its images
//! while trying to detach and attach the members, and destroys it while
//! the readers and writers still run; between rounds a member may be
//! detached and attached again. Every block every image read returned is
//! judged against the history of its member, and at the end every block
//! of every member against its last write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use blksnap::{Attached, BlockDevice, Control, Uuid};
use tagblk::order::SplitMix64;

use crate::history::{Ticks, Window};
use crate::member::{sub_seed, Member, Pattern};
use crate::race::{add_vs_detach, result_name, Outcome};
use crate::reader::{read_loop, Counts, Expect};
use crate::report::Failures;

/// What a run does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The member devices (each gets a filter if it has none).
    pub members: Vec<PathBuf>,
    /// Difference storages, used in turn, one per round.
    pub storages: Vec<PathBuf>,
    /// The storage limit of each snapshot, sectors.
    pub limit_sectors: u64,
    /// Number of rounds.
    pub rounds: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Writer threads per member.
    pub writers: u64,
    /// How they choose blocks.
    pub pattern: Pattern,
    /// Reader threads per image.
    pub readers: u64,
    /// Whether every other read is of the block written last.
    pub follow: bool,
    /// The destroy comes once every reader did this many reads...
    pub reads_before_destroy: u64,
    /// ...and the writers of every member this many writes in the round.
    pub writes_before_destroy: u64,
    /// BLKFILTER_DETACH (must be EBUSY) and BLKFILTER_ATTACH (must be
    /// EALREADY) attempts per member while the snapshot is taken.
    pub pokes: u64,
    /// Whether a detach races the SNAPSHOTADD of one member each round.
    pub race_add: bool,
    /// Whether one member is detached and attached again after every other
    /// round, while the writers write.
    pub reattach: bool,
}

/// The longest wait for the readers and writers of a round.
const ROUND_WAIT: Duration = Duration::from_secs(60);

/// What the rounds counted besides failures.
#[derive(Debug, Default)]
struct Tally {
    counts: Counts,
    pokes: AtomicU64,
    add_first: AtomicU64,
    detach_first: AtomicU64,
    reattached: AtomicU64,
    slow_rounds: AtomicU64,
}

fn attach(dev: &BlockDevice) -> Result<Attached, String> {
    dev.attach().map_err(|e| e.to_string())
}

/// Runs the plan; prints a summary; returns whether nothing failed.
pub fn run(plan: &Plan) -> Result<bool, String> {
    let ticks = Ticks::new();
    let failures = Failures::new();
    let tally = Tally::default();
    let ctl = Control::open().map_err(|e| e.to_string())?;
    let mut members = Vec::new();
    let mut devs = Vec::new();
    for p in &plan.members {
        members.push(Member::open(p)?);
        let dev = BlockDevice::open(p).map_err(|e| e.to_string())?;
        attach(&dev)?;
        devs.push(dev);
    }
    if plan.storages.is_empty() || members.is_empty() {
        return Err("no member or no storage".into());
    }
    for r in 0..plan.rounds {
        for m in &members {
            m.history.prune();
        }
        let stop_writers = AtomicBool::new(false);
        let result = thread::scope(|s| {
            // Whatever happens in the round, the writers stop with it.
            let _stop = StopOnDrop(&stop_writers);
            for (i, m) in members.iter().enumerate() {
                for t in 0..plan.writers {
                    let seed = sub_seed(plan.seed, &[r, i as u64, t]);
                    let (ticks, stop, failures) = (&ticks, &stop_writers, &failures);
                    s.spawn(move || {
                        m.write_loop(ticks, (t, plan.writers), plan.pattern, seed, stop, failures)
                    });
                }
            }
            round(plan, r, &ctl, &members, &devs, &ticks, &failures, &tally)
        });
        result?;
        println!(
            "round {r}: {} add_first={} detach_first={}",
            tally.counts.summary(),
            tally.add_first.load(Ordering::Relaxed),
            tally.detach_first.load(Ordering::Relaxed)
        );
    }
    let mut bad = 0;
    for m in &members {
        bad += m.verify(&failures)?;
    }
    let writes: u64 = members
        .iter()
        .map(|m| m.writes.load(Ordering::Relaxed))
        .sum();
    println!(
        "racer: rounds={} writes={writes} {} pokes={} add_first={} detach_first={} reattached={} slow_rounds={} original_bad_blocks={bad}",
        plan.rounds,
        tally.counts.summary(),
        tally.pokes.load(Ordering::Relaxed),
        tally.add_first.load(Ordering::Relaxed),
        tally.detach_first.load(Ordering::Relaxed),
        tally.reattached.load(Ordering::Relaxed),
        tally.slow_rounds.load(Ordering::Relaxed),
    );
    println!("{}", failures.summary());
    Ok(failures.is_empty())
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One round, while the writers write.
#[allow(clippy::too_many_arguments)]
fn round(
    plan: &Plan,
    r: u64,
    ctl: &Control,
    members: &[Member],
    devs: &[BlockDevice],
    ticks: &Ticks,
    failures: &Failures,
    tally: &Tally,
) -> Result<(), String> {
    let mut rng = SplitMix64::new(sub_seed(plan.seed, &[r, u64::MAX]));
    let storage = &plan.storages[(r % plan.storages.len() as u64) as usize];
    let writes0: Vec<u64> = members
        .iter()
        .map(|m| m.writes.load(Ordering::Relaxed))
        .collect();
    let mut id = ctl
        .snapshot_create(storage, plan.limit_sectors)
        .map_err(|e| format!("round {r}: {e}"))?;
    let raced = (r % members.len() as u64) as usize;
    let mut rebuild = false;
    for (i, m) in members.iter().enumerate() {
        if plan.race_add && i == raced {
            rebuild = add_racing_detach(r, &mut rng, m, &devs[i], &id, failures, tally)?;
        } else {
            devs[i]
                .snapshot_add(&id)
                .map_err(|e| format!("round {r}: {e}"))?;
        }
    }
    if rebuild {
        // What a snapshot holding a detached tracker does is not this
        // test's business: start the round's snapshot again, without race.
        ctl.snapshot_destroy(&id)
            .map_err(|e| format!("round {r}: {e}"))?;
        let _ = devs[raced].attach();
        id = ctl
            .snapshot_create(storage, plan.limit_sectors)
            .map_err(|e| format!("round {r}: {e}"))?;
        for d in devs {
            d.snapshot_add(&id).map_err(|e| format!("round {r}: {e}"))?;
        }
    }
    let start = ticks.now();
    ctl.snapshot_take(&id)
        .map_err(|e| format!("round {r}: {e}"))?;
    let window = Window {
        start,
        end: ticks.now(),
    };
    let mut images = Vec::new();
    for d in devs {
        let info = d.snapshot_info().map_err(|e| format!("round {r}: {e}"))?;
        let image = info
            .image_path()
            .ok_or_else(|| format!("round {r}: SNAPSHOTINFO names no image after the take"))?;
        images.push(image);
    }
    let seen: Vec<Vec<AtomicU64>> = members
        .iter()
        .map(|m| (0..m.blocks()).map(|_| AtomicU64::new(0)).collect())
        .collect();
    let counts: Vec<Counts> = (0..members.len() * plan.readers as usize)
        .map(|_| Counts::default())
        .collect();
    let stop_readers = AtomicBool::new(false);
    let destroy = AtomicU64::new(0);
    let result = thread::scope(|s| {
        let _stop = StopOnDrop(&stop_readers);
        for (i, m) in members.iter().enumerate() {
            for t in 0..plan.readers as usize {
                let expect = Expect::Take {
                    member: m,
                    window,
                    seen: &seen[i],
                    destroy: &destroy,
                };
                let (image, c, stop) = (
                    &images[i],
                    &counts[i * plan.readers as usize + t],
                    &stop_readers,
                );
                let seed = sub_seed(plan.seed, &[r, i as u64, t as u64, 1]);
                let follow = plan.follow.then_some(&m.last_written);
                let what = format!("round {r}, reader {t}");
                s.spawn(move || {
                    let stop = || stop.load(Ordering::Relaxed);
                    read_loop(image, expect, follow, seed, &what, &stop, c, failures)
                });
            }
        }
        // The members of a taken snapshot cannot be detached, and are
        // attached already.
        for k in 0..plan.pokes {
            for d in devs {
                tally.pokes.fetch_add(1, Ordering::Relaxed);
                let detach = d.detach();
                if !matches!(&detach, Err(e) if e.errno() == Some(libc::EBUSY)) {
                    failures.fail("detach-taken", || {
                        format!(
                            "round {r}, attempt {k}: BLKFILTER_DETACH of {}, a member of a taken snapshot, returned {}, not EBUSY",
                            d_path(d, members, devs),
                            result_name(&detach)
                        )
                    });
                }
                match d.attach() {
                    Ok(Attached::Already) => {}
                    other => failures.fail("attach-taken", || {
                        format!(
                            "round {r}, attempt {k}: BLKFILTER_ATTACH of {}, a member of a taken snapshot, returned {:?}, not EALREADY",
                            d_path(d, members, devs),
                            other.map_err(|e| e.to_string())
                        )
                    }),
                }
            }
            thread::sleep(Duration::from_millis(rng.below(20)));
        }
        // Destroy while the readers read and the writers write.
        let until = Instant::now() + ROUND_WAIT;
        let ready = || {
            counts
                .iter()
                .all(|c| c.reads.load(Ordering::Relaxed) >= plan.reads_before_destroy)
                && members.iter().zip(&writes0).all(|(m, w0)| {
                    m.writes.load(Ordering::Relaxed) - w0 >= plan.writes_before_destroy
                })
        };
        while !ready() {
            if Instant::now() >= until {
                tally.slow_rounds.fetch_add(1, Ordering::Relaxed);
                println!("round {r}: readers or writers too slow, destroying after {ROUND_WAIT:?}");
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        ctl.snapshot_destroy(&id)
            .map_err(|e| format!("round {r}: {e}"))
    });
    for c in &counts {
        tally.counts.add(c);
    }
    result?;
    // Between rounds: a member leaves and comes back under the writes.
    if plan.reattach && r % 2 == 1 {
        let i = ((r / 2) % members.len() as u64) as usize;
        let d = &devs[i];
        if let Err(e) = d.detach() {
            failures.fail("reattach", || {
                format!(
                    "round {r}: detaching {} after the destroy: {e}",
                    members[i].path.display()
                )
            });
        }
        match d.attach() {
            Ok(Attached::Now) => {
                tally.reattached.fetch_add(1, Ordering::Relaxed);
            }
            other => failures.fail("reattach", || {
                format!(
                    "round {r}: attaching {} again returned {:?}, not 0",
                    members[i].path.display(),
                    other.map_err(|e| e.to_string())
                )
            }),
        }
    }
    Ok(())
}

/// The path of the member whose device is `d`.
fn d_path(d: &BlockDevice, members: &[Member], devs: &[BlockDevice]) -> String {
    devs.iter()
        .position(|x| std::ptr::eq(x, d))
        .map(|i| members[i].path.display().to_string())
        .unwrap_or_default()
}

/// Adds member `m` to `id` while a detach of it races the add; if the
/// detach came first, attaches and adds it again. Returns whether the
/// snapshot must be made again (both returned 0).
fn add_racing_detach(
    r: u64,
    rng: &mut SplitMix64,
    m: &Member,
    dev: &BlockDevice,
    id: &Uuid,
    failures: &Failures,
    tally: &Tally,
) -> Result<bool, String> {
    let spin = rng.below(4000);
    let delay_add = rng.below(2) == 0;
    match add_vs_detach(&m.path, id, spin, delay_add)? {
        Outcome::AddFirst => {
            tally.add_first.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        Outcome::DetachFirst => {
            tally.detach_first.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Both => {
            // Defect 3: the tracker joined the snapshot after its detach.
            failures.fail("add-and-detach", || {
                format!(
                    "round {r}: SNAPSHOTADD and BLKFILTER_DETACH of {} both returned 0: a detached tracker joined the snapshot (defect 3)",
                    m.path.display()
                )
            });
            return Ok(true);
        }
        Outcome::Other(what) => {
            failures.fail("add-and-detach", || {
                format!(
                    "round {r}: SNAPSHOTADD racing BLKFILTER_DETACH of {}: {what}",
                    m.path.display()
                )
            });
        }
    }
    if attach(dev)? != Attached::Now {
        failures.fail("add-and-detach", || {
            format!(
                "round {r}: {} still attached after its detach",
                m.path.display()
            )
        });
    }
    dev.snapshot_add(id)
        .map_err(|e| format!("round {r}: {e}"))?;
    Ok(false)
}
