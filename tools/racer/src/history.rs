//! The write history of every block of a member device, and what an image
//! may hold for a block given the moment of its take.
//!
//! Every event that matters (a write issued, a write completed, a take
//! begun or ended) draws a number from one [`Ticks`] counter, so events are
//! ordered as they happened. Every write carries a generation that no other
//! write to the same device carries, so a block read back names the one
//! write that put it there.
//!
//! An image taken during the window `[start, end]` (the ticks drawn just
//! before and just after SNAPSHOT_TAKE) may show, for a block:
//! - the last write to that block that completed before the take began,
//!   or the initial content if there was none; or
//! - a write that overlapped the window: issued before the take ended and
//!   not completed before it began.
//!
//! Anything else is wrong: a write issued after the take ended is data the
//! image must never show, and a write overwritten before the take began is
//! stale.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The one counter that orders the events of a run.
#[derive(Debug, Default)]
pub struct Ticks(AtomicU64);

impl Ticks {
    /// A counter that starts after tick 0 (tick 0 is the initial content).
    pub fn new() -> Self {
        Self(AtomicU64::new(1))
    }

    /// Draws the next tick.
    pub fn now(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// One write of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The generation it wrote.
    pub gen: u64,
    /// The tick drawn before it was issued.
    pub start: u64,
    /// The tick drawn after it completed; `None` while it is in flight.
    pub end: Option<u64>,
}

/// The ticks around one SNAPSHOT_TAKE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Drawn before the ioctl.
    pub start: u64,
    /// Drawn after it returned.
    pub end: u64,
}

/// What a generation read from an image means for the take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Data of the take.
    Taken,
    /// A write issued after the take ended: data the image must never show.
    AfterTake(Write),
    /// A write overwritten before the take began.
    Stale(Write),
    /// No write of this device carried that generation.
    Unknown,
}

/// The writes of every block of one device.
#[derive(Debug)]
pub struct History {
    blocks: Vec<Mutex<Vec<Write>>>,
}

impl History {
    /// `blocks` blocks that all hold generation `gen`, written at tick 0.
    pub fn new(blocks: u64, gen: u64) -> Self {
        let first = Write {
            gen,
            start: 0,
            end: Some(0),
        };
        Self {
            blocks: (0..blocks).map(|_| Mutex::new(vec![first])).collect(),
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    fn block(&self, b: u64) -> std::sync::MutexGuard<'_, Vec<Write>> {
        // A poisoned lock only means another thread panicked; the list
        // itself is always consistent.
        self.blocks[b as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records that a write of `gen` to block `b` is issued at tick `start`.
    /// Only one write of a block may be in flight at a time.
    pub fn issue(&self, b: u64, gen: u64, start: u64) {
        self.block(b).push(Write {
            gen,
            start,
            end: None,
        });
    }

    /// Records that the write in flight on block `b` completed at tick
    /// `end`.
    pub fn complete(&self, b: u64, end: u64) {
        if let Some(w) = self.block(b).last_mut() {
            w.end = Some(end);
        }
    }

    /// Forgets the writes to block `b` before its last completed one, which
    /// no take that begins from now on can show.
    pub fn prune(&self) {
        for b in 0..self.len() {
            let mut h = self.block(b);
            if let Some(i) = h.iter().rposition(|w| w.end.is_some()) {
                h.drain(..i);
            }
        }
    }

    /// The generation block `b` holds now, if no write of it is in flight.
    pub fn current(&self, b: u64) -> Option<u64> {
        let h = self.block(b);
        h.last().filter(|w| w.end.is_some()).map(|w| w.gen)
    }

    /// Judges generation `gen` read for block `b` from an image taken in
    /// `take`.
    pub fn judge(&self, b: u64, gen: u64, take: Window) -> Verdict {
        judge(&self.block(b), gen, take)
    }
}

/// [`History::judge`] over the writes of one block, oldest first.
pub fn judge(writes: &[Write], gen: u64, take: Window) -> Verdict {
    let Some(i) = writes.iter().position(|w| w.gen == gen) else {
        return Verdict::Unknown;
    };
    let w = writes[i];
    if w.start >= take.end {
        return Verdict::AfterTake(w);
    }
    if w.end.is_none_or(|e| e > take.start) {
        return Verdict::Taken;
    }
    // Completed before the take began: right only if no later write also
    // completed before it began.
    let overwritten = writes[i + 1..]
        .iter()
        .any(|n| n.end.is_some_and(|e| e < take.start));
    if overwritten {
        Verdict::Stale(w)
    } else {
        Verdict::Taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(gen: u64, start: u64, end: Option<u64>) -> Write {
        Write { gen, start, end }
    }

    const TAKE: Window = Window { start: 10, end: 20 };

    #[test]
    fn the_last_write_before_the_take_is_taken() {
        let h = [w(1, 0, Some(0)), w(2, 3, Some(5))];
        assert_eq!(judge(&h, 2, TAKE), Verdict::Taken);
        assert_eq!(judge(&h, 1, TAKE), Verdict::Stale(h[0]));
        assert_eq!(judge(&h[..1], 1, TAKE), Verdict::Taken);
    }

    #[test]
    fn writes_overlapping_the_take_may_be_in_it() {
        // Issued before the take began, completed inside it.
        let h = [w(1, 0, Some(0)), w(2, 8, Some(12))];
        assert_eq!(judge(&h, 1, TAKE), Verdict::Taken);
        assert_eq!(judge(&h, 2, TAKE), Verdict::Taken);
        // Issued inside the take, still in flight.
        let h = [w(1, 0, Some(0)), w(3, 15, None)];
        assert_eq!(judge(&h, 1, TAKE), Verdict::Taken);
        assert_eq!(judge(&h, 3, TAKE), Verdict::Taken);
    }

    #[test]
    fn writes_after_the_take_never_are() {
        let h = [w(1, 0, Some(0)), w(4, 20, Some(22)), w(5, 30, None)];
        assert_eq!(judge(&h, 1, TAKE), Verdict::Taken);
        assert_eq!(judge(&h, 4, TAKE), Verdict::AfterTake(h[1]));
        assert_eq!(judge(&h, 5, TAKE), Verdict::AfterTake(h[2]));
        assert_eq!(judge(&h, 9, TAKE), Verdict::Unknown);
    }

    #[test]
    fn histories_record_and_prune() {
        let t = Ticks::new();
        let h = History::new(2, 1);
        assert_eq!(h.current(1), Some(1));
        let s = t.now();
        h.issue(1, 7, s);
        assert_eq!(h.current(1), None);
        h.complete(1, t.now());
        assert_eq!(h.current(1), Some(7));
        h.issue(1, 8, t.now());
        h.prune();
        // The write of 7 stays (the last completed one), and 8 in flight.
        let take = Window {
            start: t.now(),
            end: t.now(),
        };
        assert_eq!(h.judge(1, 1, take), Verdict::Unknown);
        assert_eq!(h.judge(1, 7, take), Verdict::Taken);
        assert_eq!(h.judge(1, 8, take), Verdict::Taken);
        assert_eq!(h.judge(0, 1, take), Verdict::Taken);
    }
}
