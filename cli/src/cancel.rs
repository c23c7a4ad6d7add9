//! Stopping a long command cleanly on SIGINT and SIGTERM.
//!
//! `blksnap backup` must destroy the snapshot it created even when it is
//! interrupted. [`install`] replaces the default action of SIGINT and
//! SIGTERM, which would end the process with the snapshot still there, by a
//! handler that only records the signal in a [`Cancel`]; the copy loops
//! check it between pieces and return [`interrupted`], and the caller
//! cleans up and exits with status 1. Tests use a [`Cancel`] of their own
//! and set it by hand.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// A request to stop, made by a signal or by hand.
#[derive(Debug, Default)]
pub struct Cancel {
    /// The signal that asked to stop, or 0.
    signal: AtomicI32,
}

impl Cancel {
    /// Returns a flag that nothing has set.
    pub const fn new() -> Self {
        Self {
            signal: AtomicI32::new(0),
        }
    }

    /// Asks to stop, because of signal `signal` (any non-zero number).
    pub fn set(&self, signal: i32) {
        self.signal.store(signal, Ordering::Relaxed);
    }

    /// Returns the signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    /// Returns [`interrupted`] if stopping was asked for.
    pub fn check(&self) -> io::Result<()> {
        match self.signal() {
            Some(signal) => Err(interrupted(signal)),
            None => Ok(()),
        }
    }
}

/// Returns the error of an operation stopped by `signal`.
pub fn interrupted(signal: i32) -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        format!("interrupted by {}", signal_name(signal)),
    )
}

/// Returns whether `e` is the error of an operation stopped on request
/// ([`interrupted`]), rather than an EINTR to retry.
pub fn is_interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted && e.raw_os_error().is_none()
}

/// Returns the name of signal `signal`: SIGINT, SIGTERM, or "signal N".
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".to_owned(),
        libc::SIGTERM => "SIGTERM".to_owned(),
        libc::SIGHUP => "SIGHUP".to_owned(),
        n => format!("signal {n}"),
    }
}

/// A reader that fails with [`interrupted`] once its flag is set.
pub struct CancelRead<'a, R> {
    inner: R,
    cancel: &'a Cancel,
}

impl<'a, R> CancelRead<'a, R> {
    /// Returns `inner`, checking `cancel` before each read.
    pub fn new(inner: R, cancel: &'a Cancel) -> Self {
        Self { inner, cancel }
    }
}

impl<R: io::Read> io::Read for CancelRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

/// The flag the signal handler sets.
static SIGNALLED: Cancel = Cancel::new();

/// Records the signal; nothing else, which is async-signal-safe.
extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.set(signal);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the returned flag instead of
/// ending the process. System calls they interrupt are restarted.
pub fn install() -> io::Result<&'static Cancel> {
    install_for(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
}

/// Makes each of `signals` set the returned flag instead of its default
/// action.
fn install_for(signals: &[libc::c_int]) -> io::Result<&'static Cancel> {
    for &signal in signals {
        // SAFETY: an all-zero `sigaction` is a valid value of the C struct
        // (no handler, empty mask, no flags); the fields that matter are
        // set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa_mask` is a valid `sigset_t` inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialized, and its handler only does
        // an atomic store, which is async-signal-safe; the old action is
        // not asked for.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(&SIGNALLED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_by_hand() {
        let c = Cancel::new();
        assert_eq!(c.signal(), None);
        assert!(c.check().is_ok());
        c.set(libc::SIGTERM);
        assert_eq!(c.signal(), Some(libc::SIGTERM));
        let e = c.check().unwrap_err();
        assert!(is_interrupted(&e));
        assert_eq!(e.to_string(), "interrupted by SIGTERM");
        assert!(!is_interrupted(&io::Error::from_raw_os_error(libc::EINTR)));
        assert_eq!(signal_name(libc::SIGINT), "SIGINT");
        assert_eq!(signal_name(10), "signal 10");
    }

    #[test]
    fn a_signal_sets_the_flag() {
        // Only SIGHUP, so that ^C still stops the test binary.
        let flag = install_for(&[libc::SIGHUP]).unwrap();
        assert_eq!(flag.signal(), None);
        // SAFETY: raising a signal whose handler was just installed; the
        // handler only stores to an atomic.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert_eq!(flag.signal(), Some(libc::SIGHUP));
    }
}
