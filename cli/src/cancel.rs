//! Stopping a long command cleanly on SIGINT and SIGTERM.
//!
//! `blksnap backup` must destroy the snapshot it created even when it is
//! interrupted. [`install`] replaces the default action of SIGINT, SIGTERM
//! and SIGHUP, which would end the process with the snapshot still there,
//! by a `signal-hook` handler that only records the signal in a [`Cancel`];
//! the copy loops check it between pieces and return [`interrupted`], and
//! the caller cleans up and exits with status 1. Tests use a [`Cancel`] of
//! their own and set it by hand.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A request to stop, made by a signal or by hand.
#[derive(Debug, Default)]
pub struct Cancel {
    /// The signal that asked to stop, or 0.
    signal: AtomicUsize,
}

impl Cancel {
    /// Returns a flag that nothing has set.
    pub const fn new() -> Self {
        Self {
            signal: AtomicUsize::new(0),
        }
    }

    /// Asks to stop, because of signal `signal` (any non-zero number).
    pub fn set(&self, signal: i32) {
        self.signal.store(signal as usize, Ordering::Relaxed);
    }

    /// Returns the signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s as i32),
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

/// The flag the signal handlers set.
static SIGNALLED: Cancel = Cancel::new();

/// Makes SIGINT, SIGTERM and SIGHUP set the returned flag instead of
/// ending the process. System calls they interrupt are restarted.
pub fn install() -> io::Result<&'static Cancel> {
    install_for(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
}

/// Makes each of `signals` set the returned flag instead of its default
/// action.
fn install_for(signals: &[libc::c_int]) -> io::Result<&'static Cancel> {
    for &signal in signals {
        signal_hook::flag::register_usize(signal, &SIGNALLED.signal, signal as usize)?;
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
        signal_hook::low_level::raise(libc::SIGHUP).unwrap();
        assert_eq!(flag.signal(), Some(libc::SIGHUP));
    }
}
