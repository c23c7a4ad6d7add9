//! `tagblk write` and `tagblk verify`: every block of a range tagged with
//! its offset and a generation, written by several threads, and checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::block::{decode, fill, matches, Content, BLOCK_SIZE, SEQ_MAGIC, TAG_MAGIC};
use crate::device::{AlignedBuf, Device, Error, Range, Result};
use crate::order::{schedule, Order, Run};

/// What `tagblk write` does.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// The generation written into every block.
    pub gen: u64,
    /// Start of the range, bytes.
    pub offset: u64,
    /// Length of the range, bytes; `None` for the rest of the device.
    pub len: Option<u64>,
    /// Number of writer threads.
    pub jobs: usize,
    /// How blocks are spread over the threads.
    pub order: Order,
    /// Seed of the random order.
    pub seed: u64,
}

/// What `tagblk write` did.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// The range written.
    pub range: Range,
    /// Whether the writes were direct (`O_DIRECT`).
    pub direct: bool,
}

/// Writes generation `opts.gen` into every block of the range of `path`,
/// then flushes.
pub fn write(path: &Path, opts: &WriteOptions) -> Result<Written> {
    let dev = Device::open(path, true)?;
    let range = Range::resolve(opts.offset, opts.len, dev.size(), dev.is_regular_file())?;
    let plan = schedule(opts.order, range.blocks(), opts.jobs, opts.seed);
    let failed = AtomicBool::new(false);
    let results: Vec<Result<()>> = thread::scope(|s| {
        let handles: Vec<_> = plan
            .iter()
            .map(|runs| {
                let (dev, failed) = (&dev, &failed);
                s.spawn(move || write_runs(dev, range, opts.gen, runs, failed))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error("a writer thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    dev.sync()?;
    Ok(Written {
        range,
        direct: dev.direct(),
    })
}

/// One writer thread: writes its runs in order, and stops early when
/// another thread failed.
fn write_runs(
    dev: &Device,
    range: Range,
    gen: u64,
    runs: &[Run],
    failed: &AtomicBool,
) -> Result<()> {
    let most = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let mut buf = AlignedBuf::new(most as usize * BLOCK_SIZE);
    for &(first, n) in runs {
        if failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
        for (i, block) in bytes.chunks_exact_mut(BLOCK_SIZE).enumerate() {
            fill(block, TAG_MAGIC, range.block_offset(first + i as u64), gen);
        }
        if let Err(e) = dev.write_at(bytes, range.block_offset(first)) {
            failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
    Ok(())
}

/// A block that does not hold what it should.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The block's byte offset.
    pub offset: u64,
    /// The generation it should carry.
    pub expected: u64,
    /// What it holds instead.
    pub found: Content,
}

impl Mismatch {
    /// The short name of what was found: `gen N` or `garbage`.
    pub fn found_kind(&self) -> String {
        match self.found {
            Content::Tagged { magic, gen, .. } if magic == TAG_MAGIC => format!("gen {gen}"),
            _ => "garbage".to_string(),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mismatch at offset {}: expected gen {}, found ",
            self.offset, self.expected
        )?;
        match self.found {
            Content::Tagged { magic, offset, gen } if magic == TAG_MAGIC => {
                write!(f, "gen {gen}")?;
                if offset != self.offset {
                    write!(f, " written for offset {offset}")?;
                }
                Ok(())
            }
            Content::Tagged { magic, gen, .. } if magic == SEQ_MAGIC => {
                write!(f, "garbage (seq record {gen})")
            }
            Content::Zero => write!(f, "garbage (zeroes)"),
            _ => write!(f, "garbage"),
        }
    }
}

/// The outcome of `tagblk verify`.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Blocks checked.
    pub blocks: u64,
    /// Blocks that did not match.
    pub mismatched: u64,
    /// The first mismatches, in offset order.
    pub first: Vec<Mismatch>,
    /// Mismatches by what was found (`gen N`, `garbage`).
    pub by_kind: BTreeMap<String, u64>,
}

/// Blocks read per system call.
const READ_BLOCKS: usize = 256;

/// Checks that every block of the range of `path` is generation `gen`'s
/// block for its offset; keeps the first `max_report` mismatches.
pub fn verify(
    path: &Path,
    gen: u64,
    offset: u64,
    len: Option<u64>,
    max_report: usize,
) -> Result<VerifyReport> {
    let dev = Device::open(path, false)?;
    let range = Range::resolve(offset, len, dev.size(), false)?;
    let mut report = VerifyReport::default();
    let mut buf = AlignedBuf::new(READ_BLOCKS * BLOCK_SIZE);
    let mut i = 0;
    while i < range.blocks() {
        let n = (READ_BLOCKS as u64).min(range.blocks() - i);
        let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
        dev.read_at(bytes, range.block_offset(i))?;
        for (j, block) in bytes.chunks_exact(BLOCK_SIZE).enumerate() {
            let at = range.block_offset(i + j as u64);
            if matches(block, TAG_MAGIC, at, gen) {
                continue;
            }
            let m = Mismatch {
                offset: at,
                expected: gen,
                found: decode(block),
            };
            report.mismatched += 1;
            *report.by_kind.entry(m.found_kind()).or_default() += 1;
            if report.first.len() < max_report {
                report.first.push(m);
            }
        }
        i += n;
    }
    report.blocks = range.blocks();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_read_well() {
        let m = |found| Mismatch {
            offset: 8192,
            expected: 1,
            found,
        };
        let tagged = |offset, gen| Content::Tagged {
            magic: TAG_MAGIC,
            offset,
            gen,
        };
        assert_eq!(
            m(tagged(8192, 2)).to_string(),
            "mismatch at offset 8192: expected gen 1, found gen 2"
        );
        assert_eq!(
            m(tagged(4096, 1)).to_string(),
            "mismatch at offset 8192: expected gen 1, found gen 1 written for offset 4096"
        );
        assert_eq!(
            m(Content::Garbage).to_string(),
            "mismatch at offset 8192: expected gen 1, found garbage"
        );
        assert_eq!(
            m(Content::Zero).to_string(),
            "mismatch at offset 8192: expected gen 1, found garbage (zeroes)"
        );
        assert_eq!(m(Content::Zero).found_kind(), "garbage");
        assert_eq!(m(tagged(8192, 5)).found_kind(), "gen 5");
    }
}
