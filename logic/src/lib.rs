//! Pure logic of blksnap that needs no kernel, as plain `no_std` Rust.
//!
//! Each module here lives in a single file that the kernel module also
//! compiles in as its own module (`#[path = "../logic/src/cbt.rs"] mod cbt;`),
//! so these files use nothing but `core` and carry no crate attributes. On the
//! host they are tested with `cargo test`, including property tests.

#![no_std]

pub mod cbt;
pub mod chunk;
pub mod placement;
pub mod sectors;
pub mod storage;
