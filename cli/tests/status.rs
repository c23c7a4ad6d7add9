//! `blksnap status` without the module: one error line and status 1, in
//! both forms, nothing on stdout. (The forms themselves are tested on a
//! constructed state in `src/status.rs`, the live state in the VM.)

use std::process::Command;

#[test]
fn status_without_the_module_is_one_line_with_status_1() {
    if std::path::Path::new(blksnap::status::SYSFS_MODULE).exists() {
        return; // the module is loaded here; the VM tests cover this case
    }
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["--json", "status"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_blksnap"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err, "blksnap: reading the module's state: the blksnap module is not loaded\n",
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
