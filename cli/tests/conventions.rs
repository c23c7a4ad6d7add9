//! The command-line conventions every `blksnap` command follows: help on
//! stdout with status 0, usage errors as one line on stderr with status 1.

use std::process::{Command, Output};

/// A well-formed snapshot UUID.
const ID: &str = "01234567-89ab-cdef-fedc-ba9876543210";

fn blksnap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blksnap"))
        .args(args)
        .output()
        .expect("the blksnap binary runs")
}

#[test]
fn help_goes_to_stdout_with_status_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["version", "--help"],
        &["version", "-h"],
        &["cbtinfo", "--help"],
        &["cbtinfo", "-h"],
        &["readcbtmap", "--help"],
        &["readcbtmap", "-h"],
        &["markdirtyblock", "--help"],
        &["markdirtyblock", "-h"],
        &["snapshot_create", "--help"],
        &["snapshot_create", "-h"],
        &["snapshot_add", "--help"],
        &["snapshot_add", "-h"],
        &["snapshot_take", "--help"],
        &["snapshot_take", "-h"],
        &["snapshot_destroy", "--help"],
        &["snapshot_destroy", "-h"],
        &["snapshot_collect", "--help"],
        &["snapshot_collect", "-h"],
        &["snapshot_info", "--help"],
        &["snapshot_info", "-h"],
        &["snapshot_waitevent", "--help"],
        &["snapshot_waitevent", "-h"],
        &["snapshot_watcher", "--help"],
        &["snapshot_watcher", "-h"],
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
        assert!(out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn usage_errors_are_one_line_with_status_1() {
    for args in [
        &["frobnicate"][..],
        &["version", "--bogus"],
        &[],
        &["cbtinfo"],
        &["readcbtmap", "-d", "/dev/null"],
        &["markdirtyblock"],
        &["markdirtyblock", "-r", "0:8"],
        &["markdirtyblock", "-d", "/dev/null", "-r", "0:0"],
        &["markdirtyblock", "-d", "/dev/null", "-r", "8"],
        &["markdirtyblock", "-d", "/dev/null", "--ranges=x:1"],
        &["markdirtyblock", "-d", "/dev/null", "-r", "0:8", "-f", "/x"],
        &["snapshot_create"],
        &["snapshot_create", "-f", "/x", "-l", "1T"],
        &["snapshot_create", "-f", "/x", "-l", "-1"],
        &["snapshot_add", "-i", ID],
        &["snapshot_add", "-d", "/dev/null"],
        &["snapshot_add", "-i", "not-a-uuid", "-d", "/dev/null"],
        &["snapshot_take"],
        &["snapshot_take", "-i", "0123"],
        &["snapshot_destroy"],
        &["snapshot_destroy", "--id="],
        &["snapshot_collect", "extra"],
        &["snapshot_info"],
        &["snapshot_info", "-d", "/dev/null", "-f", "size"],
        &["snapshot_waitevent", "-t", "10"],
        &["snapshot_waitevent", "-i", ID, "-t", "ten"],
        &["snapshot_waitevent", "-i", ID, "-t", "4294967296"],
        &["snapshot_watcher"],
        &["snapshot_watcher", "-i", ID, "-t", "10"],
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("blksnap: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn missing_control_device_is_one_line_with_status_1() {
    if std::path::Path::new(blksnap::CONTROL_PATH).exists() {
        return; // the module is loaded here; the VM tests cover this case
    }
    let out = blksnap(&["version"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(blksnap::CONTROL_PATH), "{err}");
}

#[test]
fn snapshot_commands_without_the_control_device_are_one_line_with_status_1() {
    if std::path::Path::new(blksnap::CONTROL_PATH).exists() {
        return; // the module is loaded here; the VM tests cover this case
    }
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_str().unwrap();
    for args in [
        &["snapshot_create", "-f", tmp, "-l", "1G"][..],
        &["--json", "snapshot_create", "-f", tmp],
        &["snapshot_take", "-i", ID],
        &["snapshot_destroy", "-i", ID],
        &["snapshot_collect"],
        &["snapshot_collect", "--json"],
        &["snapshot_waitevent", "-i", ID, "-t", "10"],
        &["snapshot_watcher", "-i", ID],
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("blksnap: "), "{args:?}: {err}");
        assert!(err.contains(blksnap::CONTROL_PATH), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn markdirtyblock_help_states_the_output_format() {
    let out = blksnap(&["markdirtyblock", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("allocate range: ofs=SECTOR cnt=COUNT"),
        "{help}"
    );
}

#[test]
fn failing_commands_are_one_line_with_status_1() {
    // /dev/null takes no filter ioctls; /proc files are on no block device.
    for (args, want) in [
        (&["cbtinfo", "-d", "/dev/null"][..], "CBTINFO"),
        (
            &["readcbtmap", "-d", "/dev/null", "-f", "/dev/null"],
            "CBTINFO",
        ),
        (
            &["markdirtyblock", "-d", "/dev/null", "-r", "0:8"],
            "CBTDIRTY",
        ),
        (
            &["markdirtyblock", "-f", "/nonexistent/file"],
            "/nonexistent/file",
        ),
        (
            &["markdirtyblock", "-f", "/proc/version"],
            "not a block device",
        ),
        (&["snapshot_info", "-d", "/dev/null"], "SNAPSHOTINFO"),
        (
            &["snapshot_info", "-d", "/dev/null", "-f", "image"],
            "SNAPSHOTINFO",
        ),
        (
            &["snapshot_info", "-d", "/nonexistent/device"],
            "cannot open /nonexistent/device",
        ),
        // The filter is attached first, which /dev/null refuses.
        (
            &["snapshot_add", "-i", ID, "-d", "/dev/null"],
            "attaching the blksnap filter on /dev/null",
        ),
        // The devices are opened before the snapshot is created.
        (
            &["snapshot_create", "-f", "/tmp", "-d", "/nonexistent/device"],
            "cannot open /nonexistent/device",
        ),
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("blksnap: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn json_errors_stay_one_line_with_status_1() {
    // The flag goes before or after the command; failures print no JSON.
    for args in [
        &["--json", "cbtinfo", "-d", "/dev/null"][..],
        &["cbtinfo", "--json", "-d", "/dev/null"],
        &["cbtinfo", "-d", "/dev/null", "--json"],
        &["--json", "attach", "-d", "/nonexistent/device"],
        &["markdirtyblock", "--json", "-f", "/proc/version"],
        &["--json", "markdirtyblock", "-d", "/dev/null", "-r", "0:8"],
        &["--json", "cbtinfo"],
        &["--json=1", "version"],
        &["--json", "snapshot_info", "-d", "/dev/null"],
        &[
            "snapshot_info",
            "-d",
            "/dev/null",
            "-f",
            "error_code",
            "--json",
        ],
        &["--json", "snapshot_waitevent", "-t", "10"],
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("blksnap: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    if !std::path::Path::new(blksnap::CONTROL_PATH).exists() {
        let out = blksnap(&["version", "--json"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn json_is_in_the_help_of_every_command() {
    for args in [
        &["--help"][..],
        &["version", "--help"],
        &["attach", "--help"],
        &["cbtinfo", "--help"],
        &["markdirtyblock", "--help"],
        &["snapshot_create", "--help"],
        &["snapshot_collect", "--help"],
        &["snapshot_info", "--help"],
        &["snapshot_waitevent", "--help"],
        &["snapshot_watcher", "--help"],
    ] {
        let out = blksnap(args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--json"), "{args:?}: {help}");
    }
}

#[test]
fn snapshot_help_states_the_output_formats() {
    for (args, want) in [
        (
            &["snapshot_create", "--help"][..],
            "Prints only the new UUID",
        ),
        (&["snapshot_collect", "--help"], "then an empty line"),
        (
            &["snapshot_watcher", "--help"],
            "Snapshot watcher finished.",
        ),
        (&["snapshot_info", "--help"], "image=/dev/NAME"),
        (&["snapshot_info", "--help"], "error_code=N"),
        (&["snapshot_waitevent", "--help"], "result=not found"),
        (&["snapshot_waitevent", "--help"], "event=no_space"),
        (&["snapshot_watcher", "--help"], "status 0"),
        (&["snapshot_create", "--help"], "K, M or G"),
    ] {
        let out = blksnap(args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(want), "{args:?} lacks {want:?}: {help}");
    }
}
