//! A member device under test: opened for direct I/O, filled with
//! generation 1, written by writer threads that record every write in the
//! device's [`History`], and checked block by block against it at the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tagblk::block::{decode, fill, matches, Content, BLOCK_SIZE, TAG_MAGIC};
use tagblk::device::AlignedBuf;
use tagblk::order::SplitMix64;

use crate::history::{History, Ticks};
use crate::report::Failures;

/// The generation a member holds everywhere after [`Member::open`].
pub const FIRST_GEN: u64 = 1;

/// Blocks per system call when filling or checking a whole device.
const BULK_BLOCKS: usize = 64;

/// Which blocks a writer thread writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Random blocks among the thread's own.
    Random,
    /// One random block of each of the thread's own chunks of this many
    /// blocks, chunks in a random order (each write hits a chunk that no
    /// write of this round copied yet), then random blocks.
    FreshChunks(u64),
}

impl Pattern {
    /// The blocks handed out to the writer threads together.
    pub fn unit(self) -> u64 {
        match self {
            Pattern::Random => 1,
            Pattern::FreshChunks(n) => n.max(1),
        }
    }
}

/// A member device and what was written to it.
#[derive(Debug)]
pub struct Member {
    /// Its path.
    pub path: PathBuf,
    file: File,
    /// Every write of every block.
    pub history: History,
    next_gen: AtomicU64,
    /// The block written last, for readers that follow the writers.
    pub last_written: AtomicU64,
    /// Writes completed.
    pub writes: AtomicU64,
}

/// Opens `path` for direct reads, and writes if `write`; a regular file
/// on a file system that refuses O_DIRECT is opened without it.
pub fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_DIRECT) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(0),
        other => other,
    }
}

/// The size of an open file or block device, in bytes.
pub fn size_of_file(mut f: &File) -> io::Result<u64> {
    f.seek(SeekFrom::End(0))
}

/// A small error type: a sentence for the user.
pub fn error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Member {
    /// Opens the device at `path` and fills it with [`FIRST_GEN`].
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = open_direct(path, true).map_err(|e| error(path.display(), e))?;
        let size = size_of_file(&file).map_err(|e| error(path.display(), e))?;
        let blocks = size / BLOCK_SIZE as u64;
        if blocks == 0 {
            return Err(format!("{} is smaller than one block", path.display()));
        }
        let mut buf = AlignedBuf::new(BULK_BLOCKS * BLOCK_SIZE);
        let mut b = 0;
        while b < blocks {
            let n = (BULK_BLOCKS as u64).min(blocks - b);
            let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
            for (i, block) in bytes.chunks_exact_mut(BLOCK_SIZE).enumerate() {
                fill(
                    block,
                    TAG_MAGIC,
                    (b + i as u64) * BLOCK_SIZE as u64,
                    FIRST_GEN,
                );
            }
            file.write_all_at(bytes, b * BLOCK_SIZE as u64)
                .map_err(|e| error(format!("filling {}", path.display()), e))?;
            b += n;
        }
        file.sync_data()
            .map_err(|e| error(format!("fdatasync of {}", path.display()), e))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            history: History::new(blocks, FIRST_GEN),
            next_gen: AtomicU64::new(FIRST_GEN + 1),
            last_written: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        })
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.history.len()
    }

    /// Writer thread `t` of `jobs`: writes its own blocks (those of the
    /// units `u` of [`Pattern::unit`] blocks with `u % jobs == t`, so no
    /// two threads write one block) in `pattern` until `stop`, each with a
    /// new generation, recording every write. A failed write is a failure:
    /// the original must never suffer for the snapshot.
    pub fn write_loop(
        &self,
        ticks: &Ticks,
        (t, jobs): (u64, u64),
        pattern: Pattern,
        seed: u64,
        stop: &AtomicBool,
        failures: &Failures,
    ) {
        let mut rng = SplitMix64::new(seed);
        let unit = pattern.unit();
        let units: Vec<u64> = (0..self.blocks().div_ceil(unit))
            .filter(|u| u % jobs == t)
            .collect();
        if units.is_empty() {
            return;
        }
        let mut fresh = Vec::new();
        if let Pattern::FreshChunks(_) = pattern {
            fresh = units.clone();
            shuffle(&mut fresh, &mut rng);
        }
        let mut fresh = fresh.into_iter();
        let mut buf = AlignedBuf::new(BLOCK_SIZE);
        while !stop.load(Ordering::Relaxed) {
            let u = match fresh.next() {
                Some(u) => u,
                None => units[rng.below(units.len() as u64) as usize],
            };
            let first = u * unit;
            let b = first + rng.below(unit.min(self.blocks() - first));
            let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
            fill(buf.as_mut_slice(), TAG_MAGIC, b * BLOCK_SIZE as u64, gen);
            self.history.issue(b, gen, ticks.now());
            match self
                .file
                .write_all_at(buf.as_slice(), b * BLOCK_SIZE as u64)
            {
                Ok(()) => {
                    self.history.complete(b, ticks.now());
                    self.last_written.store(b, Ordering::Relaxed);
                    self.writes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    failures.fail("write", || {
                        format!(
                            "a write to the original {} at offset {} failed: {e}",
                            self.path.display(),
                            b * BLOCK_SIZE as u64
                        )
                    });
                    return;
                }
            }
        }
    }

    /// Checks that every block holds what its last write wrote; returns the
    /// number of blocks that do not.
    pub fn verify(&self, failures: &Failures) -> Result<u64, String> {
        let mut buf = AlignedBuf::new(BULK_BLOCKS * BLOCK_SIZE);
        let mut bad = 0;
        let mut b = 0;
        let blocks = self.blocks();
        while b < blocks {
            let n = (BULK_BLOCKS as u64).min(blocks - b);
            let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
            self.file
                .read_exact_at(bytes, b * BLOCK_SIZE as u64)
                .map_err(|e| error(format!("reading back {}", self.path.display()), e))?;
            for (i, block) in bytes.chunks_exact(BLOCK_SIZE).enumerate() {
                let blk = b + i as u64;
                let at = blk * BLOCK_SIZE as u64;
                let Some(gen) = self.history.current(blk) else {
                    continue;
                };
                if !matches(block, TAG_MAGIC, at, gen) {
                    bad += 1;
                    failures.fail("original", || {
                        format!(
                            "{} at offset {at}: the writers last wrote gen {gen} there, it holds {}",
                            self.path.display(),
                            describe(decode(block), at)
                        )
                    });
                }
            }
            b += n;
        }
        Ok(bad)
    }
}

/// What a block holds, in words.
pub fn describe(c: Content, at: u64) -> String {
    match c {
        Content::Tagged { magic, offset, gen } if magic == TAG_MAGIC => {
            if offset == at {
                format!("gen {gen}")
            } else {
                format!("gen {gen} written for offset {offset}")
            }
        }
        Content::Tagged { .. } => "a tagged block of another kind".to_string(),
        Content::Zero => "zeroes".to_string(),
        Content::Garbage => "garbage".to_string(),
    }
}

/// Shuffles `v` with `rng` (Fisher-Yates).
pub fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// A seed for one thread of one round, drawn from the run's seed.
pub fn sub_seed(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(tagblk::block::mix64(seed), |s, &p| {
        tagblk::block::mix64(s ^ tagblk::block::mix64(p.wrapping_add(1)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffles_are_permutations_and_seeded() {
        let mut a: Vec<u64> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut SplitMix64::new(7));
        shuffle(&mut b, &mut SplitMix64::new(7));
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_ne!(a, s);
    }

    #[test]
    fn writers_record_what_they_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(64 * BLOCK_SIZE as u64)
            .unwrap();
        let m = Member::open(&path).unwrap();
        let (ticks, stop, failures) = (Ticks::new(), AtomicBool::new(false), Failures::new());
        std::thread::scope(|s| {
            for t in 0..3 {
                let (m, ticks, stop, failures) = (&m, &ticks, &stop, &failures);
                let pattern = Pattern::FreshChunks(4);
                s.spawn(move || m.write_loop(ticks, (t, 3), pattern, t, stop, failures));
            }
            while m.writes.load(Ordering::Relaxed) < 200 {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(m.verify(&failures).unwrap(), 0);
        assert!(failures.is_empty());
        // A block changed behind the writers' back is seen.
        let mut buf = AlignedBuf::new(BLOCK_SIZE);
        fill(buf.as_mut_slice(), TAG_MAGIC, 8 * BLOCK_SIZE as u64, 999);
        m.file
            .write_all_at(buf.as_slice(), 8 * BLOCK_SIZE as u64)
            .unwrap();
        assert_eq!(m.verify(&failures).unwrap(), 1);
        assert_eq!(failures.count("original"), 1);
    }

    #[test]
    fn sub_seeds_differ() {
        assert_ne!(sub_seed(1, &[0, 1]), sub_seed(1, &[1, 0]));
        assert_ne!(sub_seed(1, &[0]), sub_seed(2, &[0]));
        assert_eq!(sub_seed(3, &[4, 5]), sub_seed(3, &[4, 5]));
    }
}
