//! Image readers: read a snapshot image at seeded random places (or where
//! the writers just wrote) and check every block against what the image
//! may hold. A read either returns data of the take or fails; an image
//! that goes away (destroy) ends the reader.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tagblk::block::{decode, Content, BLOCK_SIZE, TAG_MAGIC};
use tagblk::device::AlignedBuf;
use tagblk::order::SplitMix64;

use crate::history::{Verdict, Window};
use crate::member::{describe, open_direct, size_of_file, Member};
use crate::report::Failures;

/// Blocks per random read (64 KiB).
const READ_BLOCKS: u64 = 16;

/// What the blocks of an image must hold.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    /// The content of `member` at the take in `window`; `seen` holds the
    /// generation each block showed first (0: not read yet), which later
    /// reads must show again: an image does not change after its take.
    Take {
        /// The original of the image.
        member: &'a Member,
        /// The ticks around the take.
        window: Window,
        /// One entry per block.
        seen: &'a [AtomicU64],
        /// The tick drawn before SNAPSHOT_DESTROY was called, 0 before.
        destroy: &'a AtomicU64,
    },
    /// Generation `.0` everywhere.
    Gen(u64),
}

/// How the reads of one reader or of many went.
#[derive(Debug, Default)]
pub struct Counts {
    /// Reads issued.
    pub reads: AtomicU64,
    /// Reads that failed with EIO.
    pub eio: AtomicU64,
    /// Reads that returned data of which some block was wrong.
    pub bad: AtomicU64,
    /// Readers that saw the image go away (EOF, ENXIO, ENODEV).
    pub gone: AtomicU64,
}

impl Counts {
    /// One line: `reads=N eio=N bad=N gone=N`.
    pub fn summary(&self) -> String {
        format!(
            "reads={} eio={} bad_reads={} gone={}",
            self.reads.load(Ordering::Relaxed),
            self.eio.load(Ordering::Relaxed),
            self.bad.load(Ordering::Relaxed),
            self.gone.load(Ordering::Relaxed)
        )
    }

    /// Adds `other` into these counts.
    pub fn add(&self, other: &Counts) {
        for (a, b) in [
            (&self.reads, &other.reads),
            (&self.eio, &other.eio),
            (&self.bad, &other.bad),
            (&self.gone, &other.gone),
        ] {
            a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// Why a reader stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Told to.
    Stopped,
    /// The image went away.
    Gone,
    /// It could not read (open failed, an unexpected errno).
    Error,
}

/// Opens `image` for direct reads, waiting up to ten seconds for its node.
pub fn open_image(image: &Path) -> std::io::Result<File> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match open_direct(image, false) {
            Ok(f) => return Ok(f),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads `image` until `stop()` says so or the image goes away, checking
/// every block read against `expect`. With `follow`, every other read is
/// of the one block a writer wrote last (the place where data written
/// after the take would show first). `what` names the reader in messages.
#[allow(clippy::too_many_arguments)]
pub fn read_loop(
    image: &Path,
    expect: Expect<'_>,
    follow: Option<&AtomicU64>,
    seed: u64,
    what: &str,
    stop: &dyn Fn() -> bool,
    counts: &Counts,
    failures: &Failures,
) -> End {
    let file = match open_image(image) {
        Ok(f) => f,
        Err(e) => {
            failures.fail("image", || {
                format!("{what}: cannot open {}: {e}", image.display())
            });
            return End::Error;
        }
    };
    let blocks = match size_of_file(&file) {
        Ok(s) => s / BLOCK_SIZE as u64,
        Err(e) => {
            failures.fail("image", || {
                format!("{what}: size of {}: {e}", image.display())
            });
            return End::Error;
        }
    };
    if blocks == 0 {
        counts.gone.fetch_add(1, Ordering::Relaxed);
        return End::Gone;
    }
    let mut rng = SplitMix64::new(seed);
    let mut buf = AlignedBuf::new(READ_BLOCKS as usize * BLOCK_SIZE);
    let mut turn = 0u64;
    while !stop() {
        turn += 1;
        let (first, n) = match follow {
            Some(last) if turn.is_multiple_of(2) => {
                (last.load(Ordering::Relaxed).min(blocks - 1), 1)
            }
            _ => {
                let first = rng.below(blocks.div_ceil(READ_BLOCKS)) * READ_BLOCKS;
                (first, READ_BLOCKS.min(blocks - first))
            }
        };
        let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
        counts.reads.fetch_add(1, Ordering::Relaxed);
        let got = match file.read_at(bytes, first * BLOCK_SIZE as u64) {
            Ok(got) => got,
            Err(e) => match e.raw_os_error() {
                Some(libc::EIO) => {
                    counts.eio.fetch_add(1, Ordering::Relaxed);
                    // A corrupted image fails at once: do not spin.
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Some(libc::ENXIO) | Some(libc::ENODEV) => {
                    counts.gone.fetch_add(1, Ordering::Relaxed);
                    return End::Gone;
                }
                _ => {
                    failures.fail("read-error", || {
                        format!("{what}: read of {} failed: {e}", image.display())
                    });
                    return End::Error;
                }
            },
        };
        let full = got / BLOCK_SIZE;
        let mut bad = false;
        for (i, block) in bytes[..full * BLOCK_SIZE]
            .chunks_exact(BLOCK_SIZE)
            .enumerate()
        {
            bad |= !check(block, first + i as u64, expect, what, image, failures);
        }
        if bad {
            counts.bad.fetch_add(1, Ordering::Relaxed);
        }
        if got < bytes.len() {
            // Short: the capacity dropped to 0 under us (del_gendisk).
            counts.gone.fetch_add(1, Ordering::Relaxed);
            return End::Gone;
        }
    }
    End::Stopped
}

/// Whether block `b` read from `image` is right; a failure says why not.
fn check(
    block: &[u8],
    b: u64,
    expect: Expect<'_>,
    what: &str,
    image: &Path,
    failures: &Failures,
) -> bool {
    let at = b * BLOCK_SIZE as u64;
    let content = decode(block);
    let gen = match content {
        Content::Tagged { magic, offset, gen } if magic == TAG_MAGIC && offset == at => gen,
        _ => {
            failures.fail("garbage", || {
                format!(
                    "{what}: {} at offset {at} holds {}",
                    image.display(),
                    describe(content, at)
                )
            });
            return false;
        }
    };
    match expect {
        Expect::Gen(want) => {
            if gen == want {
                return true;
            }
            failures.fail("not-taken", || {
                format!(
                    "{what}: {} at offset {at} holds gen {gen}, not gen {want} of the take",
                    image.display()
                )
            });
            false
        }
        Expect::Take {
            member,
            window,
            seen,
            destroy,
        } => match member.history.judge(b, gen, window) {
            Verdict::Taken => {
                let first = match seen[b as usize].compare_exchange(
                    0,
                    gen,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(first) => first,
                };
                if first == gen {
                    return true;
                }
                failures.fail("changed", || {
                    format!(
                        "{what}: {} at offset {at} showed gen {first}, now gen {gen}: the image changed after its take",
                        image.display()
                    )
                });
                false
            }
            Verdict::AfterTake(w) => {
                // Which half of the round: before the destroy, or after it
                // began (defect 1 of issue 11 when the write came after).
                let d = destroy.load(Ordering::Relaxed);
                let (kind, when) = if d == 0 {
                    ("post-take", "no destroy begun".to_string())
                } else if w.start > d {
                    (
                        "post-take-destroy",
                        format!("issued after the destroy began at tick {d}: defect 1"),
                    )
                } else {
                    (
                        "post-take-destroying",
                        format!("read after the destroy began at tick {d}"),
                    )
                };
                failures.fail(kind, || {
                    format!(
                        "{what}: {} at offset {at} holds gen {gen}, written after the take (issued at tick {}, take at ticks {}..{}; {when})",
                        image.display(),
                        w.start,
                        window.start,
                        window.end
                    )
                });
                false
            }
            Verdict::Stale(w) => {
                failures.fail("stale", || {
                    format!(
                        "{what}: {} at offset {at} holds gen {gen}, overwritten before the take (written at ticks {}..{:?}, take at {})",
                        image.display(),
                        w.start,
                        w.end,
                        window.start
                    )
                });
                false
            }
            Verdict::Unknown => {
                failures.fail("unknown", || {
                    format!(
                        "{what}: {} at offset {at} holds gen {gen}, which no write of {} carried",
                        image.display(),
                        member.path.display()
                    )
                });
                false
            }
        },
    }
}
