//! `blksnap-gen DIR` writes the man page and the bash, zsh and fish
//! completions, each naming every command of `blksnap`.

use std::path::Path;
use std::process::Command;

/// The commands of `blksnap`, as the man page and completions must list them.
const COMMANDS: [&str; 17] = [
    "version",
    "attach",
    "detach",
    "cbtinfo",
    "readcbtmap",
    "markdirtyblock",
    "snapshot_create",
    "snapshot_add",
    "snapshot_take",
    "snapshot_destroy",
    "snapshot_collect",
    "snapshot_info",
    "snapshot_waitevent",
    "snapshot_watcher",
    "status",
    "backup",
    "verify",
];

/// The files `blksnap-gen` writes, as it prints them.
const FILES: [&str; 4] = ["blksnap.8", "blksnap.bash", "_blksnap", "blksnap.fish"];

#[test]
fn the_commands_are_the_documented_ones() {
    let cmd = blksnap::args::command();
    let names: Vec<_> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    assert_eq!(names, COMMANDS);
}

#[test]
fn generator_writes_man_page_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet is created.
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_blksnap-gen"))
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let printed: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.to_owned())
        .collect();
    let want: Vec<_> = FILES
        .iter()
        .map(|f| out_dir.join(f).display().to_string())
        .collect();
    assert_eq!(printed, want);

    for file in FILES {
        let text = std::fs::read_to_string(out_dir.join(file)).unwrap();
        for command in COMMANDS {
            assert!(text.contains(command), "{file} lacks {command}");
        }
        assert!(text.contains("json"), "{file} lacks --json");
        assert!(text.contains("ranges"), "{file} lacks --ranges");
        assert!(text.contains("timeout"), "{file} lacks --timeout");
        assert!(
            text.contains("error_code"),
            "{file} lacks --field error_code"
        );
    }
    let man = std::fs::read_to_string(out_dir.join("blksnap.8")).unwrap();
    assert!(man.contains(".TH blksnap 8 "), "{man}");
    for command in COMMANDS {
        assert!(man.contains(&format!(".SS {command}\n")), "{command}");
    }
    shell_accepts("bash", &out_dir.join("blksnap.bash"));
    shell_accepts("zsh", &out_dir.join("_blksnap"));
    shell_accepts("fish", &out_dir.join("blksnap.fish"));
}

/// Checks the syntax of `script` with `shell -n`, if that shell is installed.
fn shell_accepts(shell: &str, script: &Path) {
    let Ok(out) = Command::new(shell).arg("-n").arg(script).output() else {
        return;
    };
    assert!(
        out.status.success(),
        "{shell} -n {}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generator_usage_errors_are_one_line_with_status_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_blksnap-gen"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    // An unwritable directory: a path below a regular file.
    let out = Command::new(env!("CARGO_BIN_EXE_blksnap-gen"))
        .arg("/proc/version/x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("blksnap-gen: "), "{err}");
}
