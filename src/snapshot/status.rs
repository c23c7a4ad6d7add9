// SPDX-License-Identifier: GPL-2.0

//! The snapshots as text in debugfs, `/sys/kernel/debug/blksnap/snapshots/list`,
//! read by `blksnap status`.
//!
//! The uAPI names the snapshots (SNAPSHOT_COLLECT) and tells a member device
//! its image and error (SNAPSHOTINFO), but not which devices a snapshot
//! holds, whether it is taken, or how much of its difference storage it
//! uses. This file shows that, one line per snapshot followed by one line
//! per member, in the order of SNAPSHOT_COLLECT:
//!
//! ```text
//! snapshot ID taken=0|1 error=ERRNO error_dev=MAJ:MIN storage=file|device|in-volume storage_dev=MAJ:MIN storage_ino=INO capacity=SECT used=SECT limit=SECT
//! in_volume_extent start=SECT count=SECT
//! member MAJ:MIN image=NAME [chunks_in_memory=N chunks_in_memory_peak=N]
//! ```
//!
//! `error` is 0 or the negative errno that corrupted the snapshot, and
//! `error_dev` the device it happened on (0:0 when none); `storage_dev` is
//! the storage device, or the device holding the storage file (0:0 for a
//! file system without one), and `storage_ino` the file's inode (0 for a
//! device); sizes are in 512-byte sectors; `image` is `-` before the take.
//! In-volume storage (a file on a member's own file system) is followed by
//! one `in_volume_extent` line per extent of the file, in file order, in
//! sectors of `storage_dev`: the images read those sectors as zeros.
//! A taken member also shows how many of its chunks copy-on-write holds in
//! memory (being read, waiting or being stored), now and at most so far.
//! Keys may be added at the end of a line; readers skip the ones they do
//! not know.
//!
//! The text is made anew under the registry lock for each piece a read
//! asks for, so a read racing a change of the snapshots may see both.

use core::fmt::{self, Write};

use kernel::c_str;
use kernel::prelude::*;
use kernel::sync::Arc;

use super::{Locked, Snapshot};
use crate::glue::debugfs::{Counters, Dump};
use crate::placement::Place;

/// The source of the `list` file.
struct List;

/// Text built in a growing buffer; an allocation failure ends it.
struct Text(KVec<u8>);

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}

/// Device number `dev` (the kernel's encoding) as `MAJ:MIN`.
struct Dev(u32);

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 20, self.0 & 0xfffff)
    }
}

/// Writes the lines of snapshot `s`.
fn describe(out: &mut Text, s: &Snapshot) -> fmt::Result {
    write!(out, "snapshot ")?;
    for (i, b) in s.id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.write_char('-')?;
        }
        write!(out, "{b:02x}")?;
    }
    let file = s.storage.file();
    let (kind, dev, ino) = match file.place() {
        Place::Device(dev) => ("device", dev, 0),
        Place::File { device, ino, .. } if file.is_in_volume() => ("in-volume", device, ino),
        Place::File { device, ino, .. } => ("file", device, ino),
    };
    let (capacity, used, limit) = s.storage.usage();
    writeln!(
        out,
        " taken={} error={} error_dev={} storage={kind} storage_dev={} storage_ino={ino} capacity={capacity} used={used} limit={limit}",
        u8::from(s.taken),
        s.events.error_code(),
        Dev(s.events.error_dev()),
        Dev(dev),
    )?;
    if let Some((_, extents)) = file.volume_extents(false) {
        for (start, count) in extents {
            writeln!(out, "in_volume_extent start={start} count={count}")?;
        }
    }
    for m in s.members.iter() {
        write!(out, "member {} image=", Dev(m.bdev.devs().0))?;
        match &m.image {
            Some(image) => out.write_str(core::str::from_utf8(image.name()).unwrap_or("?"))?,
            None => out.write_char('-')?,
        }
        if let Some(area) = &m.area {
            let (now, peak) = area.chunks_in_memory();
            write!(out, " chunks_in_memory={now} chunks_in_memory_peak={peak}")?;
        }
        out.write_char('\n')?;
    }
    Ok(())
}

impl Dump for List {
    fn dump(&self, offset: usize, out: &mut [u8]) -> usize {
        let mut text = Text(KVec::new());
        {
            let mut locked = Locked::lock();
            for s in locked.parts().0.iter() {
                if describe(&mut text, s).is_err() {
                    return 0;
                }
            }
        }
        let src = text.0.get(offset..).unwrap_or(&[]);
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        n
    }
}

/// Creates `snapshots/list` in the module's debugfs directory; it exists
/// while the result lives.
pub(crate) fn create() -> Result<Counters<0>> {
    let mut dir = Counters::new(c_str!("snapshots"), [])?;
    dir.add_dump(c_str!("list"), Arc::new(List, GFP_KERNEL)?)?;
    Ok(dir)
}
