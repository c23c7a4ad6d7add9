//! `cli/install.sh uninstall` (what `make uninstall` runs) in a staging
//! tree: it removes exactly the files `make install` puts there, with the
//! directories they leave empty, and nothing else.
//!
//! The kernel tree is a stand-in whose Makefile prints a release, so the
//! test needs neither the test kernel nor a module build. `make install` is
//! checked for real in the VM (tests/vm/43-install.sh).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// What `make install DESTDIR=... PREFIX=/usr` installs for release `rel`.
fn installed(rel: &str) -> Vec<String> {
    [
        &format!("lib/modules/{rel}/extra/blksnap.ko")[..],
        "usr/sbin/blksnap",
        "usr/include/linux/blk-filter.h",
        "usr/include/linux/blksnap.h",
        "usr/share/man/man8/blksnap.8",
        "usr/share/bash-completion/completions/blksnap",
        "usr/share/zsh/site-functions/_blksnap",
        "usr/share/fish/vendor_completions.d/blksnap.fish",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every path below `root`, relative to it, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Runs `install.sh uninstall` with `DESTDIR=stage`, `KDIR=kdir` and the
/// default prefix.
fn uninstall(stage: &Path, kdir: &Path) -> Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
        .arg("uninstall")
        .env("DESTDIR", stage)
        .env("KDIR", kdir)
        .env_remove("PREFIX")
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap()
}

#[test]
fn uninstall_removes_exactly_what_install_puts() {
    let tmp = tempfile::tempdir().unwrap();
    let kdir = tmp.path().join("kernel");
    fs::create_dir(&kdir).unwrap();
    fs::write(
        kdir.join("Makefile"),
        "kernelrelease:\n\t@echo 9.9.9-test\n",
    )
    .unwrap();
    let stage = tmp.path().join("stage");
    for file in installed("9.9.9-test") {
        let path = stage.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "x").unwrap();
    }
    // depmod's index, and a file that is not ours next to ours.
    fs::write(stage.join("lib/modules/9.9.9-test/modules.dep"), "").unwrap();
    fs::write(stage.join("usr/share/man/man8/other.8"), "").unwrap();

    let out = uninstall(&stage, &kdir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    assert_eq!(
        tree(&stage),
        [
            "usr",
            "usr/share",
            "usr/share/man",
            "usr/share/man/man8",
            "usr/share/man/man8/other.8"
        ]
    );

    // Nothing left to remove: still a success, and nothing printed.
    let out = uninstall(&stage, &kdir);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn install_sh_wants_an_action() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("install|uninstall"), "{err}");
}
