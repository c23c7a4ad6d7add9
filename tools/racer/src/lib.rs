//! `racer`: bounded, seeded races against the blksnap module, for the VM
//! tests of issue 11 (trustworthy snapshots).
//!
//! - [`rounds`] runs rounds of create, add, take and destroy on member
//!   devices that writer threads ([`member`]) write all along, while
//!   reader threads ([`reader`]) read the images; every block a read
//!   returns is judged against the write history of its member
//!   ([`history`]): data of the take, or the read fails. At the end the
//!   members are checked block by block against their last writes.
//! - [`add_detach`] races SNAPSHOTADD against BLKFILTER_DETACH ([`race`]).
//! - [`reader`] also checks an image against one generation for the shell
//!   tests (`racer read`).
//!
//! Every choice is drawn from a seed, and every loop is bounded by a
//! count; only the interleaving of the threads is left to the machine.
//! Failures are printed as `FAIL kind: what` lines and counted
//! ([`report`]).

pub mod add_detach;
pub mod history;
pub mod member;
pub mod race;
pub mod reader;
pub mod report;
pub mod rounds;
