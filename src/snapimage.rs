// SPDX-License-Identifier: GPL-2.0

//! Snapshot images: the read-only (or, with `image_writable`, writable)
//! block device `/dev/blksnap-<major>-<minor>` of each member of a
//! taken snapshot (uapi.md §5).
//!
//! An image is added before the take freezes the members, with a capacity
//! of 0, so a take that fails changes nothing; it gets the original's
//! capacity once the take is complete. Its bios are cut at chunk
//! boundaries by the block layer and handed to the member's diff area,
//! which knows where each chunk's data of the take is. Removing an image
//! works while it is open or mounted: later I/O fails.

use kernel::prelude::*;
use kernel::sync::Arc;

use crate::diff_area::DiffArea;
use crate::glue::block::BlockDevice;
use crate::glue::gendisk::ImageDisk;

/// The image of one member; dropping it removes the disk.
pub(crate) struct SnapImage {
    disk: ImageDisk,
    /// The original's size at the take, in sectors.
    capacity: u64,
}

impl SnapImage {
    /// Adds the (still empty) image of `original`, served by `area`.
    pub(crate) fn add(original: &BlockDevice, area: &Arc<DiffArea>) -> Result<Self> {
        Ok(Self {
            disk: ImageDisk::add(original, area.clone(), area.is_writable())?,
            capacity: area.capacity(),
        })
    }

    /// The take is complete: the image shows the original at its moment.
    pub(crate) fn publish(&self) {
        self.disk.publish(self.capacity);
    }

    /// The disk name, such as `blksnap-7-0`, without its NUL.
    pub(crate) fn name(&self) -> &[u8] {
        self.disk.name()
    }
}
