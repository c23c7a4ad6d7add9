//! `blksnap backup` and `blksnap verify` as commands: help, usage errors,
//! verify on regular files, and backup failing cleanly where there is no
//! module. The VM tests (tests/vm/40-backup.sh) run them against it.

use std::path::Path;
use std::process::{Command, Output};

fn blksnap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blksnap"))
        .args(args)
        .output()
        .expect("the blksnap binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that `out` is an error: status 1, one line on stderr starting
/// with `blksnap: `, nothing on stdout; returns the line.
fn one_error_line(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{what}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("blksnap: "), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: {}", stdout(out));
    err
}

#[test]
fn help_goes_to_stdout_with_status_0() {
    for args in [
        &["backup", "--help"][..],
        &["backup", "-h"],
        &["verify", "--help"],
        &["verify", "-h"],
    ] {
        let out = blksnap(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = stdout(&out);
        assert!(help.contains("Usage:"), "{args:?}");
        assert!(help.contains("--json"), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
    }
    let help = stdout(&blksnap(&["backup", "--help"]));
    for word in [
        "--incremental",
        "--output",
        "--dir",
        "--quiet",
        "FILE.sha256",
        "FILE.state.json",
        "SIGINT",
    ] {
        assert!(help.contains(word), "backup --help lacks {word}");
    }
    let help = stdout(&blksnap(&["verify", "--help"]));
    for word in ["--image", "--checksum", "differ offset=", "equal size="] {
        assert!(help.contains(word), "verify --help lacks {word}");
    }
}

#[test]
fn usage_errors_are_one_line_with_status_1() {
    for args in [
        &["backup"][..],
        &["backup", "-f", "/tmp"],
        &["backup", "-f", "/tmp", "-d", "/dev/null"],
        &["backup", "-d", "/dev/null", "-o", "/tmp/x"],
        &[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-o",
            "/x",
            "-D",
            "/y",
        ],
        &[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-o",
            "/x",
            "-l",
            "5X",
        ],
        &[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-o",
            "/x",
            "--bogus",
        ],
        &["verify"],
        &["verify", "-f", "/tmp/x"],
        &["verify", "-i", "/dev/null"],
        &["verify", "-f", "/tmp/x", "-c", "-m", "-1"],
    ] {
        one_error_line(&blksnap(args), &format!("{args:?}"));
    }
}

#[test]
fn unpaired_devices_and_outputs_are_refused_before_anything_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.img");
    let out = out.to_str().unwrap();
    let err = one_error_line(
        &blksnap(&[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-d",
            "/dev/zero",
            "-o",
            out,
        ]),
        "two devices, one output",
    );
    assert!(err.contains("one --output per --device"), "{err}");
    let err = one_error_line(
        &blksnap(&[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-d",
            "/dev/null",
            "-o",
            out,
            "-o",
            "/b",
        ]),
        "a device twice",
    );
    assert!(err.contains("named twice"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn backup_without_the_module_fails_and_writes_nothing() {
    if Path::new(blksnap::CONTROL_PATH).exists() {
        return; // the module is loaded here; the VM tests cover this case
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.img");
    let err = one_error_line(
        &blksnap(&[
            "backup",
            "-f",
            "/tmp",
            "-d",
            "/dev/null",
            "-o",
            out.to_str().unwrap(),
        ]),
        "backup without the module",
    );
    assert!(err.contains(blksnap::CONTROL_PATH), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn verify_compares_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&a, &data).unwrap();
    std::fs::write(&b, &data).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = blksnap(&["verify", "-f", a, "-i", b]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "equal size=3000000\n");
    assert!(
        out.stderr.is_empty(),
        "no bar when stderr is not a terminal"
    );

    let mut changed = data.clone();
    changed[1000] ^= 1;
    changed[2_000_000] ^= 1;
    changed[2_000_600] ^= 1;
    std::fs::write(b, &changed).unwrap();
    let out = blksnap(&["verify", "--file", a, "--image", b]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty());
    let start = 2_000_000 / 512 * 512;
    assert_eq!(
        stdout(&out),
        format!(
            "differ offset=512 length=512\ndiffer offset={start} length=1024\ndifferent ranges=2 bytes=1536\n"
        )
    );
    let out = blksnap(&["verify", "-f", a, "-i", b, "-m", "1"]);
    assert_eq!(
        stdout(&out),
        "differ offset=512 length=512\ndifferent ranges=2 bytes=1536\n"
    );
    let out = blksnap(&["--json", "verify", "-f", a, "-i", b, "-m", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["image"]["equal"], false);
    assert_eq!(value["image"]["ranges"], 2);
    assert_eq!(value["image"]["differences"][0]["offset"], 512);

    std::fs::write(b, &data[..2_999_999]).unwrap();
    let out = blksnap(&["verify", "-f", a, "-i", b]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "size file=3000000 image=2999999\ndifferent ranges=0 bytes=0\n"
    );

    let err = one_error_line(
        &blksnap(&["verify", "-f", a, "-i", "/nonexistent/image"]),
        "a missing image",
    );
    assert!(err.contains("cannot open /nonexistent/image"), "{err}");
}

#[test]
fn verify_checks_the_checksum_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    std::fs::write(&a, b"abc").unwrap();
    let a = a.to_str().unwrap();
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let err = one_error_line(&blksnap(&["verify", "-f", a, "-c"]), "no checksum file");
    assert!(err.contains("a.img.sha256"), "{err}");
    std::fs::write(format!("{a}.sha256"), format!("{abc}  a.img\n")).unwrap();
    let out = blksnap(&["verify", "-f", a, "-c"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), format!("checksum ok sha256={abc}\n"));
    // sha256sum agrees, where it is installed.
    if let Ok(out) = Command::new("sha256sum")
        .arg("-c")
        .arg("a.img.sha256")
        .current_dir(dir.path())
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    std::fs::write(a, b"abd").unwrap();
    let out = blksnap(&["verify", "-f", a, "--checksum"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with(&format!("checksum mismatch expected={abc} actual=")));
    // Both checks at once: equal data, wrong checksum, status 1.
    let out = blksnap(&["verify", "-f", a, "-i", a, "-c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("equal size=3\nchecksum mismatch"));
}
