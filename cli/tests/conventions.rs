//! The command-line conventions every `blksnap` command follows: help on
//! stdout with status 0, usage errors as one line on stderr with status 1.

use std::process::{Command, Output};

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
fn markdirtyblock_help_states_the_output_format() {
    let out = blksnap(&["markdirtyblock", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("one SECTOR:COUNT per line"), "{help}");
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
    ] {
        let out = blksnap(args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--json"), "{args:?}: {help}");
    }
}
