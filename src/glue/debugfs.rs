// SPDX-License-Identifier: GPL-2.0

//! debugfs directories of counters, for tests and diagnostics.
//!
//! `/sys/kernel/debug/blksnap/` is created at module load ([`Root`]); a
//! [`Counters`] is a subdirectory with one read-only file per counter, and
//! optionally a file that shows the bytes of a [`Dump`] source. The
//! counters are kept per CPU ([`PerCpuCounters`]), so counting on the I/O
//! path shares nothing between CPUs, and summed when a file is read. The
//! counters and the source live as long as the directory handle and the
//! directory is removed before they are freed. Failures are ignored, as
//! debugfs intends: diagnostics never stop the module from working.

use core::pin::Pin;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::ffi::{c_char, c_void};
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::sync::Arc;
use kernel::uaccess::UserSlice;

use super::bindings;
use super::percpu::PerCpuCounters;
use super::uaccess;

/// The module's debugfs root; removed on drop.
pub(crate) struct Root(());

static ROOT: AtomicPtr<bindings::dentry> = AtomicPtr::new(core::ptr::null_mut());
static MODULE: AtomicPtr<bindings::module> = AtomicPtr::new(core::ptr::null_mut());

impl Root {
    /// Creates `/sys/kernel/debug/<name>/`; its files belong to `module`.
    pub(crate) fn create(name: &CStr, module: &'static ThisModule) -> Self {
        MODULE.store(module.as_ptr().cast(), Ordering::Release);
        // SAFETY: `name` is NUL-terminated; a null parent is debugfs' root.
        let dir =
            unsafe { bindings::debugfs_create_dir(name.as_char_ptr(), core::ptr::null_mut()) };
        ROOT.store(dir, Ordering::Release);
        Self(())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let dir = ROOT.swap(core::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: `dir` came from debugfs_create_dir (or is an error pointer
        // or null, which debugfs_remove ignores); nothing refers to it now,
        // every `Counters` below it having been dropped first.
        unsafe { bindings::debugfs_remove(dir) };
    }
}

/// Bytes shown by a read-only debugfs file.
pub(crate) trait Dump: Send + Sync {
    /// Copies the bytes from `offset` into `out`; returns how many were
    /// copied, 0 past the end. Called in process context.
    fn dump(&self, offset: usize, out: &mut [u8]) -> usize;
}

/// A dump file's source and file operations, at a fixed address.
struct DumpFile {
    source: Arc<dyn Dump>,
    fops: bindings::file_operations,
}

/// A debugfs directory holding `N` counters and, optionally, a dump file.
pub(crate) struct Counters<const N: usize> {
    values: PerCpuCounters<N>,
    dump: Option<Pin<KBox<DumpFile>>>,
    /// The directory; removed by the drop.
    dir: AtomicPtr<bindings::dentry>,
}

// SAFETY: the counters and the dump source are `Send`; `dir` is renamed
// through a shared reference (debugfs serialises that) and removed once,
// by `drop`.
unsafe impl<const N: usize> Send for Counters<N> {}
// SAFETY: shared access only touches the counters, which are `Sync`.
unsafe impl<const N: usize> Sync for Counters<N> {}

impl<const N: usize> Counters<N> {
    /// Creates `<root>/<dir>/` with one file per name.
    pub(crate) fn new(dir: &CStr, names: [&CStr; N]) -> Result<Self> {
        let values = PerCpuCounters::new()?;
        let root = ROOT.load(Ordering::Acquire);
        // SAFETY: `dir` is NUL-terminated; `root` is the module's root or
        // null/an error pointer, which debugfs handles.
        let dentry = unsafe { bindings::debugfs_create_dir(dir.as_char_ptr(), root) };
        for (index, name) in names.iter().enumerate() {
            // SAFETY: `dentry` is the directory made just above, which
            // `drop` removes before `values` is freed.
            unsafe { values.debugfs_file(name, dentry, index) };
        }
        Ok(Self {
            values,
            dump: None,
            dir: AtomicPtr::new(dentry),
        })
    }

    /// Adds the file `name` showing the bytes of `source`.
    pub(crate) fn add_dump(&mut self, name: &CStr, source: Arc<dyn Dump>) -> Result {
        let file = KBox::pin(
            DumpFile {
                source,
                fops: bindings::file_operations {
                    owner: MODULE.load(Ordering::Acquire),
                    open: Some(bindings::simple_open),
                    read: Some(dump_read),
                    llseek: Some(bindings::default_llseek),
                    ..Default::default()
                },
            },
            GFP_KERNEL,
        )?;
        let data: *const Arc<dyn Dump> = &file.source;
        // SAFETY: `name` is NUL-terminated; `data` and the file operations
        // are pinned in `file`, which lives until `drop` has removed the
        // directory and with it this file (removal waits for running
        // reads).
        unsafe {
            bindings::blksnap_debugfs_create_file(
                name.as_char_ptr(),
                0o400,
                *self.dir.get_mut(),
                data.cast_mut().cast::<c_void>(),
                &file.fops,
            )
        };
        self.dump = Some(file);
        Ok(())
    }

    /// Adds `n` to counter `index`, on the calling CPU's copy. Never
    /// sleeps; callable in any context.
    pub(crate) fn add(&self, index: usize, n: u64) {
        self.values.add(index, n as i64);
    }

    /// Gives the directory's name up now, so that another directory of
    /// that name can be made at once: the directory is renamed to
    /// `.gone-N`, a name no other has, and goes with the counters. Waits
    /// for no reader (a read may copy to user memory for as long as the
    /// user makes it), so it may be called under a lock; fails silently,
    /// as debugfs does.
    pub(crate) fn give_up_name(&self) {
        let dir = self.dir.load(Ordering::Acquire);
        // SAFETY: plain pointer inspection of what debugfs_create_dir gave.
        if dir.is_null() || unsafe { bindings::blksnap_is_err(dir.cast()) } {
            return;
        }
        let root = ROOT.load(Ordering::Acquire);
        // SAFETY: `dir` is this value's live directory, made in `root`
        // (which outlives every `Counters`). The rename moves the dentry in
        // place: `dir` stays valid for `drop`.
        unsafe { bindings::blksnap_debugfs_give_up_name(root, dir) };
    }
}

impl<const N: usize> Drop for Counters<N> {
    fn drop(&mut self) {
        let dir = *self.dir.get_mut();
        // SAFETY: `dir` came from debugfs_create_dir (or is an error
        // pointer, which debugfs_remove ignores) and is removed once, here;
        // removing it and its files waits for running reads, so no reader
        // touches `values` or the dump source after.
        unsafe { bindings::debugfs_remove(dir) };
    }
}

/// The `read` operation of a dump file.
extern "C" fn dump_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: simple_open set `private_data` to the `data` that `add_dump`
    // gave debugfs_create_file, an `Arc<dyn Dump>` pinned until the file is
    // removed, which waits for this read to return.
    let source = unsafe { &*((*file).private_data as *const Arc<dyn Dump>) };
    // SAFETY: the VFS passes a valid position for the read.
    let pos = unsafe { *ppos };
    let Ok(mut offset) = usize::try_from(pos) else {
        return EINVAL.to_errno() as isize;
    };
    let mut writer = UserSlice::new(uaccess::user_addr(buf as usize), count).writer();
    let mut chunk = [0u8; 256];
    let mut done = 0usize;
    while done < count {
        let want = chunk.len().min(count - done);
        let n = source.dump(offset, &mut chunk[..want]);
        if n == 0 {
            break;
        }
        if let Err(e) = writer.write_slice(&chunk[..n]) {
            if done == 0 {
                return e.to_errno() as isize;
            }
            break;
        }
        done += n;
        offset += n;
    }
    // SAFETY: as above; `done` fits, being at most `count`.
    unsafe { *ppos = pos + done as bindings::loff_t };
    done as isize
}
