//! Which blocks each writer thread writes, and in which order.
//!
//! The schedule depends only on the order, the number of blocks, the number
//! of jobs and the seed, so a run can be repeated exactly; only the way the
//! threads' writes interleave in time is left to the scheduler.

use crate::block::mix64;

/// How the blocks of a range are spread over the writer threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// A permutation of all blocks drawn from the seed, dealt out to the
    /// threads in turn; one block per write.
    Random,
    /// Thread `t` of `J` writes blocks `t`, `t + J`, `t + 2J`, ...; one block
    /// per write.
    Interleaved,
    /// Runs of [`SEQ_RUN`] consecutive blocks, run `r` to thread `r % J`, one
    /// run per write: the fast way to fill a device.
    Seq,
}

impl Order {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Order::Random => "random",
            Order::Interleaved => "interleaved",
            Order::Seq => "seq",
        }
    }
}

/// Blocks per write in [`Order::Seq`] (256 KiB).
pub const SEQ_RUN: u64 = 64;

/// A run of consecutive blocks written with one system call: first block
/// (index in the range) and number of blocks.
pub type Run = (u64, u64);

/// A small deterministic generator (splitmix64).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// A number in `0..bound` (`bound` > 0), without modulo bias worth
    /// mentioning for the sizes used here.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// The runs each of `jobs` threads writes, in order, for a range of
/// `blocks` blocks. Every block appears in exactly one run.
pub fn schedule(order: Order, blocks: u64, jobs: usize, seed: u64) -> Vec<Vec<Run>> {
    let jobs = jobs.max(1);
    let mut out = vec![Vec::new(); jobs];
    match order {
        Order::Random => {
            let mut perm: Vec<u64> = (0..blocks).collect();
            let mut rng = SplitMix64::new(seed);
            for i in (1..perm.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                perm.swap(i, j);
            }
            for (i, b) in perm.into_iter().enumerate() {
                out[i % jobs].push((b, 1));
            }
        }
        Order::Interleaved => {
            for b in 0..blocks {
                out[(b % jobs as u64) as usize].push((b, 1));
            }
        }
        Order::Seq => {
            let mut start = 0;
            let mut r = 0usize;
            while start < blocks {
                let n = SEQ_RUN.min(blocks - start);
                out[r % jobs].push((start, n));
                start += n;
                r += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(s: &[Vec<Run>]) -> Vec<u64> {
        let mut v: Vec<u64> = s.iter().flatten().flat_map(|&(b, n)| b..b + n).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn every_order_covers_each_block_once() {
        for order in [Order::Random, Order::Interleaved, Order::Seq] {
            for (blocks, jobs) in [(0, 1), (1, 4), (100, 3), (1000, 1), (257, 8)] {
                let s = schedule(order, blocks, jobs, 42);
                assert_eq!(s.len(), jobs);
                assert_eq!(covered(&s), (0..blocks).collect::<Vec<_>>(), "{order:?}");
            }
        }
    }

    #[test]
    fn random_order_is_fixed_by_the_seed() {
        let a = schedule(Order::Random, 500, 4, 7);
        assert_eq!(a, schedule(Order::Random, 500, 4, 7));
        assert_ne!(a, schedule(Order::Random, 500, 4, 8));
        // And it is not the identity.
        let first: Vec<u64> = a[0].iter().map(|r| r.0).take(10).collect();
        assert_ne!(first, (0..10).map(|i| i * 4).collect::<Vec<_>>());
    }

    #[test]
    fn interleaved_and_seq_orders() {
        let s = schedule(Order::Interleaved, 7, 3, 0);
        assert_eq!(s[0], vec![(0, 1), (3, 1), (6, 1)]);
        assert_eq!(s[2], vec![(2, 1), (5, 1)]);
        let s = schedule(Order::Seq, 150, 2, 0);
        assert_eq!(s[0], vec![(0, 64), (128, 22)]);
        assert_eq!(s[1], vec![(64, 64)]);
    }

    #[test]
    fn below_stays_below() {
        let mut r = SplitMix64::new(1);
        for bound in [1, 2, 3, 1000] {
            for _ in 0..1000 {
                assert!(r.below(bound) < bound);
            }
        }
    }
}
