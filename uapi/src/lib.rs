//! The blksnap user-space interface as plain `no_std` Rust.
//!
//! The definitions live in [`abi`](crate) (file `abi.rs`), which the kernel
//! module also compiles in as its own `uapi` module, so the module and user
//! space share one description of every layout.

#![no_std]

mod abi;
pub use abi::*;
