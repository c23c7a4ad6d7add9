//! A safe Rust interface to the blksnap kernel module.
//!
//! [`Control`] is the control device, `/dev/blksnap-control`. Errors carry
//! the errno the module returned and what was being done when it failed.
//!
//! ```no_run
//! let ctl = blksnap::Control::open()?;
//! let v = ctl.version()?;
//! println!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build);
//! # Ok::<(), blksnap::Error>(())
//! ```

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use blksnap_uapi as uapi;

/// Path of the control device.
pub const CONTROL_PATH: &str = "/dev/blksnap-control";

/// A failed operation: what was being done and the OS error it got.
#[derive(Debug)]
pub struct Error {
    context: String,
    source: io::Error,
}

impl Error {
    fn new(context: impl Into<String>, source: io::Error) -> Self {
        Self {
            context: context.into(),
            source,
        }
    }

    /// The errno of the failure, if it came from the OS.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Issues `request` on `file` with a pointer to `arg`.
///
/// # Safety
///
/// `request` must be an ioctl whose argument is a pointer to a `T` that the
/// kernel reads and writes within `size_of::<T>()` bytes.
unsafe fn ioctl<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: the fd is open for the life of `file`; the caller guarantees
    // that the kernel accesses only the `T` that `arg` points to.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request as _, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The blksnap control device.
pub struct Control {
    file: File,
    path: PathBuf,
}

impl Control {
    /// Opens [`CONTROL_PATH`].
    pub fn open() -> Result<Self> {
        Self::open_path(CONTROL_PATH)
    }

    /// Opens the control device at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::new(format!("cannot open {}", path.display()), e))?;
        Ok(Self { file, path })
    }

    /// Returns the interface version the module speaks.
    pub fn version(&self) -> Result<uapi::BlksnapVersion> {
        let mut v = uapi::BlksnapVersion::default();
        // SAFETY: VERSION writes one `blksnap_version`.
        unsafe { ioctl(&self.file, uapi::BLKSNAP_IOCTL_VERSION, &mut v) }
            .map_err(|e| Error::new(format!("VERSION on {}", self.path.display()), e))?;
        Ok(v)
    }
}

/// A block device, for the filter ioctls of the blksnap filter.
pub struct BlockDevice {
    file: File,
    path: PathBuf,
}

/// What attaching the filter did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// The filter was attached now.
    Now,
    /// The filter was attached already.
    Already,
}

/// Returns `name` NUL-padded to the filter-name field.
fn filter_name(name: &[u8]) -> [u8; uapi::BLKFILTER_NAME_LENGTH] {
    let mut out = [0u8; uapi::BLKFILTER_NAME_LENGTH];
    out[..name.len()].copy_from_slice(name);
    out
}

impl BlockDevice {
    /// Opens the block device node at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| Error::new(format!("cannot open {}", path.display()), e))?;
        Ok(Self { file, path })
    }

    fn context(&self, what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
        let what = what.to_owned();
        move |e| Error::new(format!("{what} on {}", self.path.display()), e)
    }

    /// Attaches the blksnap filter (BLKFILTER_ATTACH).
    pub fn attach(&self) -> Result<Attached> {
        let mut arg = uapi::BlkfilterAttach {
            name: filter_name(uapi::BLKSNAP_FILTER_NAME),
            opt: 0,
            optlen: 0,
        };
        // SAFETY: BLKFILTER_ATTACH reads one `blkfilter_attach`; `opt` is 0.
        match unsafe { ioctl(&self.file, uapi::BLKFILTER_ATTACH, &mut arg) } {
            Ok(()) => Ok(Attached::Now),
            Err(e) if e.raw_os_error() == Some(libc::EALREADY) => Ok(Attached::Already),
            Err(e) => Err(self.context("attaching the blksnap filter")(e)),
        }
    }

    /// Detaches the blksnap filter (BLKFILTER_DETACH).
    pub fn detach(&self) -> Result<()> {
        let mut arg = uapi::BlkfilterDetach {
            name: filter_name(uapi::BLKSNAP_FILTER_NAME),
        };
        // SAFETY: BLKFILTER_DETACH reads one `blkfilter_detach`.
        unsafe { ioctl(&self.file, uapi::BLKFILTER_DETACH, &mut arg) }
            .map_err(self.context("detaching the blksnap filter"))
    }
}

/// Formats a version the way `blksnap version` prints it, `M.m.r.b`.
pub fn format_version(v: &uapi::BlksnapVersion) -> String {
    format!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_dotted_quad() {
        let v = uapi::BlksnapVersion {
            major: 2,
            minor: 0,
            revision: 7,
            build: 1,
        };
        assert_eq!(format_version(&v), "2.0.7.1");
    }

    #[test]
    fn missing_device_reports_path_and_errno() {
        let err = Control::open_path("/nonexistent/blksnap-control")
            .err()
            .expect("opening a missing path must fail");
        assert_eq!(err.errno(), Some(libc::ENOENT));
        assert!(err.to_string().contains("/nonexistent/blksnap-control"));
    }
}
