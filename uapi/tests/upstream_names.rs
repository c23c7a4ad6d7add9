//! Proves that C code written against the upstream proposal's headers
//! compiles against the project's headers unchanged.
//!
//! `upstream_client.c` spells every enumeration constant, ioctl request and
//! structure the way the proposal's headers do and checks its sizes and
//! numbers with static assertions; it is compiled and linked here, with
//! warnings as errors, against `include/uapi`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn upstream_client_builds_against_our_headers() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upstream_client");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(dir.join("../include/uapi"))
        .arg(dir.join("tests/upstream_client.c"))
        .output()
        .expect("a C compiler is needed for this test");
    assert!(
        out.status.success(),
        "{cc} failed on upstream_client.c:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
