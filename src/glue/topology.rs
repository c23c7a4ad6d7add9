// SPDX-License-Identifier: GPL-2.0

//! What lies below a block device or a storage file (`topology.c`): the
//! footprint [`crate::placement`] walks, read from sysfs.

use core::ptr::NonNull;

use kernel::prelude::*;

use super::bindings;
use super::block::BlockDevice;
use crate::placement::{Footprint, Place, Topology, WalkError};

pub(super) fn place_from_raw(raw: &bindings::blksnap_place) -> Place {
    if raw.is_file {
        Place::File {
            fs: raw.dev,
            ino: raw.ino,
            generation: raw.generation,
            device: raw.fs_bdev,
        }
    } else {
        Place::Device(raw.dev)
    }
}

/// What lies below block devices, as sysfs tells it: a private mount of
/// sysfs, unmounted on drop.
struct Sysfs(NonNull<bindings::vfsmount>);

impl Sysfs {
    fn open() -> Result<Self> {
        // SAFETY: process context; the mount is released by drop.
        let mnt = unsafe { bindings::blksnap_topology_open() };
        // SAFETY: plain pointer inspection.
        if unsafe { bindings::blksnap_is_err(mnt.cast()) } {
            // SAFETY: as above.
            return Err(Error::from_errno(unsafe {
                bindings::blksnap_ptr_err(mnt.cast())
            }));
        }
        // SAFETY: not null, checked above.
        Ok(Self(unsafe { NonNull::new_unchecked(mnt) }))
    }
}

impl Drop for Sysfs {
    fn drop(&mut self) {
        // SAFETY: mounted by `open`, unmounted once.
        unsafe { bindings::blksnap_topology_close(self.0.as_ptr()) };
    }
}

impl Topology for Sysfs {
    type Error = Error;

    fn below(&mut self, dev: u32, out: &mut [Place]) -> Result<usize, WalkError<Error>> {
        let mut raw = KVec::from_elem(bindings::blksnap_place::default(), out.len(), GFP_KERNEL)
            .map_err(|_| WalkError::Lookup(ENOMEM))?;
        let max = u32::try_from(raw.len()).unwrap_or(u32::MAX);
        // SAFETY: the mount lives while `self` does; `raw` holds `max`
        // writable places.
        let n = unsafe { bindings::blksnap_dev_below(self.0.as_ptr(), dev, raw.as_mut_ptr(), max) };
        if n == E2BIG.to_errno() {
            return Err(WalkError::TooLarge);
        }
        let n = usize::try_from(n).map_err(|_| WalkError::Lookup(Error::from_errno(n)))?;
        for (place, raw) in out.iter_mut().zip(raw.iter()).take(n) {
            *place = place_from_raw(raw);
        }
        Ok(n.min(out.len()))
    }
}

/// Finds the footprint of `place` (see [`crate::placement`]): EINVAL when
/// the stack of devices below it is too large to check.
pub(crate) fn footprint(place: Place) -> Result<KBox<Footprint>> {
    let mut footprint = KBox::new(Footprint::new(place), GFP_KERNEL)?;
    let mut sysfs = Sysfs::open()?;
    match footprint.walk(&mut sysfs) {
        Ok(()) => Ok(footprint),
        Err(WalkError::TooLarge) => {
            pr_err!("too many devices below the storage or a member to check where they lie\n");
            Err(EINVAL)
        }
        Err(WalkError::Lookup(e)) => Err(e),
    }
}

impl BlockDevice {
    /// The place of the device.
    pub(crate) fn place(&self) -> Place {
        Place::Device(self.devs().0)
    }
}
