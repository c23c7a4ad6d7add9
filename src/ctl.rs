// SPDX-License-Identifier: GPL-2.0

//! The control device, `/dev/blksnap-control`, and its ioctls.
//!
//! The misc device glue calls [`Control::ioctl`] for every ioctl; this file
//! decodes the command, copies the argument in and out of user memory and
//! dispatches. Unknown commands get `ENOTTY`; the commands that change
//! state need CAP_SYS_ADMIN (`EPERM` without it). 32-bit tasks reach it too:
//! only COLLECT has another layout (and number) for them.

use kernel::c_str;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::uaccess::UserPtr;

use crate::glue::hooks;
use crate::glue::miscdev::IoctlHandler;
use crate::glue::uaccess::{self, Abi};
use crate::snapshot;
use crate::uapi;

/// Name of the control device node.
pub(crate) const NAME: &CStr = c_str!("blksnap-control");

/// Revision of this implementation, reported by VERSION after the level.
const REVISION: u16 = 0;
/// Build number of this implementation, reported by VERSION.
const BUILD: u16 = 1;

/// The ioctl handler of the control device.
pub(crate) struct Control;

/// Commands that change the module's state: they need CAP_SYS_ADMIN, as
/// the block-device filter ioctls do (the node's mode is only the first
/// gate: a descriptor may be passed to a less privileged task).
const ADMIN_COMMANDS: [u32; 4] = [
    uapi::BLKSNAP_IOCTL_SNAPSHOT_CREATE,
    uapi::BLKSNAP_IOCTL_SNAPSHOT_DESTROY,
    uapi::BLKSNAP_IOCTL_SNAPSHOT_TAKE,
    uapi::BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT,
];

impl IoctlHandler for Control {
    fn ioctl(cmd: u32, arg: UserPtr, abi: Abi) -> Result<isize> {
        if ADMIN_COMMANDS.contains(&cmd) && !hooks::capable_sys_admin() {
            return Err(EPERM);
        }
        match cmd {
            uapi::BLKSNAP_IOCTL_VERSION => version(arg),
            uapi::BLKSNAP_IOCTL_SNAPSHOT_CREATE => snapshot::create(arg, abi),
            uapi::BLKSNAP_IOCTL_SNAPSHOT_DESTROY => snapshot::destroy(arg),
            uapi::BLKSNAP_IOCTL_SNAPSHOT_TAKE => snapshot::take(arg),
            uapi::BLKSNAP_IOCTL_SNAPSHOT_COLLECT => {
                let req: uapi::BlksnapSnapshotCollect = uaccess::read(arg)?;
                snapshot::collect(arg, req.count, abi.user_ptr(req.ids))
            }
            uapi::BLKSNAP_IOCTL_SNAPSHOT_COLLECT_COMPAT if abi == Abi::I386 => {
                let req: uapi::BlksnapSnapshotCollectCompat = uaccess::read(arg)?;
                snapshot::collect(arg, req.count, abi.user_ptr(req.ids))
            }
            uapi::BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT => snapshot::wait_event(arg),
            _ => Err(ENOTTY),
        }
    }
}

/// VERSION: reports the interface level this module speaks.
fn version(arg: UserPtr) -> Result<isize> {
    let version = uapi::BlksnapVersion {
        major: uapi::BLKSNAP_VERSION_MAJOR,
        minor: uapi::BLKSNAP_VERSION_MINOR,
        revision: REVISION,
        build: BUILD,
    };
    uaccess::write(arg, &version)?;
    Ok(0)
}
