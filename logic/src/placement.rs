// SPDX-License-Identifier: GPL-2.0

//! Where bytes end up: the placement check of difference storages
//! (uapi.md §6, Documentation/blksnap.rst "Where the storage may live").
//!
//! A snapshot must never write through its own storage onto one of its
//! members, nor keep its copies in bytes that are a member's data: the first
//! hangs every write to the member (the copy-on-write waits for I/O that it
//! holds itself), the second overwrites the original with its own copies.
//! This file owns the rule that decides it, and nothing else; the kernel
//! module's glue tells it, one device at a time, what lies below a device.
//!
//! # Places and footprints
//!
//! A [`Place`] is a block device (by number) or a file (by file system and
//! inode). The places directly *below* a place hold its bytes: the file
//! system's block device below a file, the whole disk below a partition,
//! the devices a dm or md device maps onto (its "slaves"), the backing file
//! of a loop device. The glue answers for devices ([`Topology::below`]);
//! a file knows its own device. The [`Footprint`] of a place is the place
//! itself and everything below it, transitively, found breadth first.
//!
//! Place `a` *rests on* place `b` when `b` is in the footprint of `a`:
//! whatever is written to `a` ends up, at least partly, on `b`. Two files
//! of one file system, or two partitions of one disk, share what is below
//! them, but neither rests on the other: their bytes do not overlap, which
//! is why only the start of the other footprint is looked for.
//!
//! It uses only `core`, no allocation and no `unsafe`, never panics, so it
//! is compiled unchanged into the module
//! (`#[path = "../logic/src/placement.rs"] mod placement;`) and tested on
//! the host by the `blksnap-logic` crate.

/// The most places a footprint holds; a deeper or wider stack of devices
/// cannot be checked and is refused.
pub const MAX_PLACES: usize = 64;

/// Somewhere bytes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A block device: its device number, the kernel's `dev_t` encoding.
    Device(u32),
    /// A file, named by its file system and its inode.
    File {
        /// The file system's `s_dev`.
        fs: u32,
        /// The inode number.
        ino: u64,
        /// The inode's generation, which tells reused numbers apart.
        generation: u32,
        /// The block device that holds the file system, or 0 for none
        /// (tmpfs, network file systems).
        device: u32,
    },
}

impl Place {
    /// The place directly below a file; devices ask the [`Topology`].
    fn file_device(&self) -> Option<Place> {
        match *self {
            Place::File { device, .. } if device != 0 => Some(Place::Device(device)),
            _ => None,
        }
    }
}

/// What the glue knows of the stacking of devices.
pub trait Topology {
    /// The error of a failed look-up.
    type Error;

    /// Writes the places directly below device `dev` to the start of `out`
    /// and returns how many; [`WalkError::TooLarge`] when `out` is too
    /// short. A device with nothing below it (a plain disk, or one that went
    /// away) has none.
    fn below(&mut self, dev: u32, out: &mut [Place]) -> Result<usize, WalkError<Self::Error>>;
}

/// Why a footprint could not be found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError<E> {
    /// More than [`MAX_PLACES`] places.
    TooLarge,
    /// The topology failed.
    Lookup(E),
}

/// A place and every place below it, each once, the place itself first.
///
/// # Invariants
///
/// `len <= MAX_PLACES`; `places[..len]` are distinct.
#[derive(Clone, Debug)]
pub struct Footprint {
    places: [Place; MAX_PLACES],
    len: usize,
}

impl Footprint {
    /// Returns the footprint of `start`: `start` alone, until it is walked.
    pub fn new(start: Place) -> Self {
        let mut places = [Place::Device(0); MAX_PLACES];
        places[0] = start;
        // INVARIANT: one place.
        Self { places, len: 1 }
    }

    /// Finds everything below the start through `topo`, breadth first.
    pub fn walk<T: Topology>(&mut self, topo: &mut T) -> Result<(), WalkError<T::Error>> {
        let mut next = 0;
        while next < self.len {
            let place = self.places[next];
            next += 1;
            // New places are written past the known ones, then kept once.
            let fresh = self.len;
            let n = match place {
                Place::Device(dev) => topo.below(dev, &mut self.places[fresh..])?,
                file => match (file.file_device(), self.places.get_mut(fresh)) {
                    (None, _) => 0,
                    (Some(dev), Some(slot)) => {
                        *slot = dev;
                        1
                    }
                    (Some(_), None) => return Err(WalkError::TooLarge),
                },
            };
            let end = fresh.saturating_add(n).min(MAX_PLACES);
            for i in fresh..end {
                let p = self.places[i];
                if !self.contains(p) {
                    // `self.len <= i`: this only moves a place forward.
                    self.places[self.len] = p;
                    // INVARIANT: `p` was not among the others; `len <= i`.
                    self.len += 1;
                }
            }
        }
        Ok(())
    }

    /// The place this is the footprint of.
    pub fn place(&self) -> Place {
        self.places[0]
    }

    /// The places found, the start first.
    pub fn places(&self) -> &[Place] {
        &self.places[..self.len]
    }

    /// Whether `place` is the start or lies below it.
    pub fn contains(&self, place: Place) -> bool {
        self.places().contains(&place)
    }

    /// Whether what is written to this place ends up on the start of
    /// `other`.
    pub fn rests_on(&self, other: &Footprint) -> bool {
        self.contains(other.place())
    }

    /// Whether the bytes of the two places overlap as far as can be seen:
    /// one rests on the other.
    pub fn overlaps(&self, other: &Footprint) -> bool {
        self.rests_on(other) || other.rests_on(self)
    }
}

/// Of the places in `footprints` not yet `done`, the first that rests on
/// none of the others left: taken one after the other, the places come
/// lowest first, each before the places stacked on it. `None` once all are
/// done. Places do not rest on each other in a circle; should some seem
/// to, the first left is returned, so every place still comes once.
pub fn next_lowest<F: AsRef<Footprint>>(footprints: &[F], done: &[bool]) -> Option<usize> {
    let left = |i: &usize| !done.get(*i).copied().unwrap_or(true);
    let mut candidates = (0..footprints.len()).filter(left);
    let first = candidates.clone().next()?;
    let rests_on = |i: usize, j: usize| match (footprints.get(i), footprints.get(j)) {
        (Some(a), Some(b)) => a.as_ref().rests_on(b.as_ref()),
        _ => false,
    };
    let rests_on_one_left = |i: usize| {
        (0..footprints.len())
            .filter(left)
            .any(|j| j != i && rests_on(i, j))
    };
    Some(candidates.find(|&i| !rests_on_one_left(i)).unwrap_or(first))
}

/// Whether `target` can be reached from `start` in the directed graph on
/// the nodes `0..seen.len()` whose edges `edge(a, b)` tells (`start`
/// itself counts as reached). `seen` is the caller's room, overwritten.
/// Quadratic in the nodes per round, at most one round per node: meant for
/// the few snapshots of a machine, with no allocation of its own.
pub fn reaches(
    edge: impl Fn(usize, usize) -> bool,
    start: usize,
    target: usize,
    seen: &mut [bool],
) -> bool {
    seen.fill(false);
    let Some(first) = seen.get_mut(start) else {
        return false;
    };
    *first = true;
    loop {
        let mut grew = false;
        for a in 0..seen.len() {
            if !seen.get(a).copied().unwrap_or(false) {
                continue;
            }
            for b in 0..seen.len() {
                if let Some(reached) = seen.get_mut(b) {
                    if !*reached && edge(a, b) {
                        *reached = true;
                        grew = true;
                    }
                }
            }
        }
        if seen.get(target).copied().unwrap_or(false) {
            return true;
        }
        if !grew {
            return false;
        }
    }
}

impl AsRef<Footprint> for Footprint {
    fn as_ref(&self) -> &Footprint {
        self
    }
}
