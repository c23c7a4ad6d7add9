// SPDX-License-Identifier: GPL-2.0

//! A spinlock held with interrupts disabled.
//!
//! Bios reach the filter's write path in whatever context their submitter
//! runs, and some submitters run in interrupt context: dm-crypt without its
//! write workqueue submits from the completion of an asynchronous cipher,
//! often a softirq. A lock the write path takes must therefore be held with
//! interrupts disabled everywhere; otherwise an interrupt that arrives
//! while a worker holds the lock, and submits a bio to the same device,
//! spins forever on its own CPU. 6.12's kernel crate has no such lock (its
//! `SpinLockIrq` came later), so this file gives its generic [`Lock`] a
//! backend over `spin_lock_irqsave`, the same on every kernel.

use kernel::ffi::{c_char, c_ulong};
use kernel::sync::lock::{Backend, Lock};

use super::bindings;

/// A spinlock that disables local interrupts while it is held.
pub(crate) type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

/// Creates an [`IrqSpinLock`] initialiser with a lock class of its own.
macro_rules! new_irq_spinlock {
    ($inner:expr, $name:literal $(,)?) => {
        $crate::glue::irqlock::IrqSpinLock::new(
            $inner,
            ::kernel::c_str!($name),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_irq_spinlock;

/// The backend of [`IrqSpinLock`]: a `spinlock_t` taken with
/// `spin_lock_irqsave`; the guard keeps the saved interrupt state.
pub(crate) struct IrqSaveBackend;

// SAFETY: `spinlock_t` gives mutual exclusion; `lock` and `unlock` pair
// spin_lock_irqsave with spin_unlock_irqrestore on the flags the first one
// saved, and `relock` (the default) locks the same way again.
unsafe impl Backend for IrqSaveBackend {
    type State = kernel::bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const c_char,
        key: *mut kernel::bindings::lock_class_key,
    ) {
        // SAFETY: by the trait's contract `ptr` is valid for writes and
        // `name` and `key` live forever.
        unsafe { kernel::bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: by the trait's contract `ptr` points to an initialised
        // lock; the same C type under another binding's name.
        unsafe { bindings::blksnap_spin_lock_irqsave(ptr.cast()) }
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: by the trait's contract the caller holds the lock, taken
        // by `lock`, which returned `flags`.
        unsafe { bindings::blksnap_spin_unlock_irqrestore(ptr.cast(), *flags) }
    }

    // 6.13: backends implement `try_lock`.
    #[cfg(blksnap_lock_try_lock)]
    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags = 0;
        // SAFETY: by the trait's contract `ptr` points to an initialised
        // lock; the same C type under another binding's name.
        let locked = unsafe { bindings::blksnap_spin_trylock_irqsave(ptr.cast(), &mut flags) };
        locked.then_some(flags)
    }

    // 6.15: backends implement `assert_is_held`.
    #[cfg(blksnap_lock_assert_is_held)]
    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: by the trait's contract `ptr` points to an initialised
        // lock; the same C type under another binding's name.
        unsafe { bindings::blksnap_spin_assert_held(ptr.cast()) }
    }
}
