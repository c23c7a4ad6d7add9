//! `tagblk seq` and `tagblk seqcheck`: one sequence of records split over
//! two devices, to check that a snapshot of both is cut at one moment.
//!
//! Record `k` is written to device `k % 2`, block `k / 2`, one record at a
//! time, each write complete before the next is issued. So at any moment
//! the records on the two devices are exactly `0..K` for some `K`, and a
//! snapshot of both taken at one moment must hold exactly such a prefix;
//! a snapshot that cut the devices at different moments shows a gap (a
//! record missing while a later one is present).

use std::path::Path;

use crate::block::{decode, fill, Content, BLOCK_SIZE, SEQ_MAGIC, TAG_MAGIC};
use crate::device::{AlignedBuf, Device, Error, Result};

/// Where record `k` goes: device index (0 or 1) and byte offset.
pub fn place(k: u64) -> (usize, u64) {
    ((k % 2) as usize, (k / 2) * BLOCK_SIZE as u64)
}

/// Number of the record that belongs in block `block` of device `dev`.
fn record_at(dev: usize, block: u64) -> u64 {
    block * 2 + dev as u64
}

/// Writes records `0..count` alternately to `paths[0]` and `paths[1]`,
/// each write finished before the next begins, then flushes both.
pub fn seq(paths: [&Path; 2], count: u64) -> Result<()> {
    let devs = [Device::open(paths[0], true)?, Device::open(paths[1], true)?];
    for (d, dev) in devs.iter().enumerate() {
        let blocks = (count + 1 - d as u64) / 2;
        let need = blocks * BLOCK_SIZE as u64;
        if need > dev.size() && !dev.is_regular_file() {
            return Err(Error(format!(
                "{} holds {} bytes; {count} records need {need}",
                dev.path().display(),
                dev.size()
            )));
        }
    }
    let mut buf = AlignedBuf::new(BLOCK_SIZE);
    for k in 0..count {
        let (d, offset) = place(k);
        fill(buf.as_mut_slice(), SEQ_MAGIC, offset, k);
        devs[d].write_at(buf.as_slice(), offset)?;
    }
    devs.iter().try_for_each(Device::sync)
}

/// The outcome of `tagblk seqcheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqReport {
    /// Records present.
    pub present: u64,
    /// The highest record present, if any.
    pub highest: Option<u64>,
    /// Records below the highest one that are missing.
    pub missing: u64,
    /// Blocks holding neither zeroes nor their own record.
    pub bad: u64,
    /// The first problems, one sentence each.
    pub problems: Vec<String>,
}

impl SeqReport {
    /// Whether the images hold exactly records `0..present`.
    pub fn is_prefix(&self) -> bool {
        self.missing == 0 && self.bad == 0
    }

    fn note(&mut self, max_report: usize, problem: impl FnOnce() -> String) {
        if self.problems.len() < max_report {
            self.problems.push(problem());
        }
    }
}

/// Blocks read per system call.
const READ_BLOCKS: usize = 256;

/// Reads the two images written by [`seq`] and tells whether the records
/// they hold form one prefix `0..K`; keeps the first `max_report` problems.
pub fn seqcheck(paths: [&Path; 2], max_report: usize) -> Result<SeqReport> {
    let devs = [
        Device::open(paths[0], false)?,
        Device::open(paths[1], false)?,
    ];
    let bs = BLOCK_SIZE as u64;
    let slots = devs
        .iter()
        .enumerate()
        .map(|(d, dev)| record_at(d, dev.size() / bs))
        .max()
        .unwrap_or(0);
    let mut present = vec![false; slots as usize];
    let mut report = SeqReport::default();
    let mut buf = AlignedBuf::new(READ_BLOCKS * BLOCK_SIZE);
    for (d, dev) in devs.iter().enumerate() {
        let blocks = dev.size() / bs;
        let mut i = 0;
        while i < blocks {
            let n = (READ_BLOCKS as u64).min(blocks - i);
            let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK_SIZE];
            dev.read_at(bytes, i * bs)?;
            for (j, block) in bytes.chunks_exact(BLOCK_SIZE).enumerate() {
                let b = i + j as u64;
                let k = record_at(d, b);
                match decode(block) {
                    Content::Zero => {}
                    Content::Tagged { magic, offset, gen }
                        if magic == SEQ_MAGIC && offset == b * bs && gen == k =>
                    {
                        present[k as usize] = true;
                        report.present += 1;
                        report.highest = report.highest.max(Some(k));
                    }
                    other => {
                        report.bad += 1;
                        report.note(max_report, || {
                            format!(
                                "{} block {b}: expected record {k} or zeroes, found {}",
                                dev.path().display(),
                                describe(other)
                            )
                        });
                    }
                }
            }
            i += n;
        }
    }
    if let Some(h) = report.highest {
        for k in 0..h {
            if !present[k as usize] {
                report.missing += 1;
                let (d, offset) = place(k);
                report.note(max_report, || {
                    format!(
                        "record {k} ({} block {}) is missing while record {h} is present",
                        devs[d].path().display(),
                        offset / bs
                    )
                });
            }
        }
    }
    Ok(report)
}

fn describe(c: Content) -> String {
    match c {
        Content::Tagged { magic, offset, gen } if magic == SEQ_MAGIC => {
            format!("record {gen} written for offset {offset}")
        }
        Content::Tagged { magic, offset, gen } if magic == TAG_MAGIC => {
            format!("a tagged block of gen {gen} for offset {offset}")
        }
        _ => "garbage".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_alternate_between_the_devices() {
        assert_eq!(place(0), (0, 0));
        assert_eq!(place(1), (1, 0));
        assert_eq!(place(2), (0, 4096));
        assert_eq!(place(7), (1, 3 * 4096));
        for k in 0..100 {
            let (d, off) = place(k);
            assert_eq!(record_at(d, off / 4096), k);
        }
    }
}
