//! The `tagblk` binary on regular files: what it prints and its exit status.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BS: u64 = 4096;

fn tagblk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagblk"))
        .args(args)
        .output()
        .expect("tagblk runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs tagblk and expects exit status `code`; returns stdout.
fn run(code: i32, args: &[&str]) -> String {
    let o = tagblk(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "tagblk {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A sparse file of `size` bytes in `dir`.
fn file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn overwrite(p: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(data, offset).unwrap();
}

#[test]
fn write_then_verify_the_same_generation() {
    let d = tempfile::tempdir().unwrap();
    let f = file(d.path(), "dev", 1 << 20);
    let out = run(
        0,
        &["write", s(&f), "--gen", "1", "--jobs", "4", "--seed", "9"],
    );
    assert!(out.starts_with("wrote generation 1 to "), "{out}");
    assert!(
        out.contains(": 256 blocks from offset 0, 4 jobs, random order, seed 9"),
        "{out}"
    );
    let out = run(0, &["verify", s(&f), "--gen", "1"]);
    assert_eq!(
        out,
        format!(
            "verified {}: 256 blocks of generation 1 from offset 0\n",
            s(&f)
        )
    );
}

#[test]
fn every_order_and_job_count_writes_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for (i, (order, jobs, seed)) in [
        ("random", "1", "1"),
        ("random", "3", "2"),
        ("interleaved", "5", "0"),
        ("seq", "2", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let f = file(d.path(), &format!("dev{i}"), 600 * BS);
        run(
            0,
            &[
                "write",
                s(&f),
                "--gen",
                "3",
                "-j",
                jobs,
                "--order",
                order,
                "--seed",
                seed,
            ],
        );
        images.push(fs::read(&f).unwrap());
    }
    assert!(images.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(&images[0][..8], b"TAGBLK01");
}

#[test]
fn verify_reports_other_generations_garbage_and_a_count() {
    let d = tempfile::tempdir().unwrap();
    let f = file(d.path(), "dev", 64 * BS);
    run(0, &["write", s(&f), "--gen", "1", "--order", "seq"]);
    run(
        0,
        &[
            "write",
            s(&f),
            "--gen",
            "2",
            "--offset",
            "32K",
            "--len",
            "8192",
        ],
    );
    overwrite(&f, 2 * BS, &[0xa5; 4096]);
    overwrite(&f, 20 * BS, &[0; 4096]);
    // One byte changed inside a block is garbage too.
    overwrite(&f, 40 * BS + 1000, &[0x01]);
    let out = run(1, &["verify", s(&f), "--gen", "1"]);
    let want = format!(
        "mismatch at offset 8192: expected gen 1, found garbage
mismatch at offset 32768: expected gen 1, found gen 2
mismatch at offset 36864: expected gen 1, found gen 2
mismatch at offset 81920: expected gen 1, found garbage (zeroes)
mismatch at offset 163840: expected gen 1, found garbage
{}: 5 of 64 blocks mismatched (garbage: 3, gen 2: 2)
",
        s(&f)
    );
    assert_eq!(out, want);
    // --max-report bounds the list, not the count.
    let out = run(1, &["verify", s(&f), "--gen", "1", "--max-report", "1"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.ends_with("5 of 64 blocks mismatched (garbage: 3, gen 2: 2)\n"));
    // A range that avoids the damage verifies.
    run(
        0,
        &[
            "verify",
            s(&f),
            "--gen",
            "1",
            "--offset",
            "12K",
            "--len",
            "20K",
        ],
    );
    run(
        0,
        &[
            "verify",
            s(&f),
            "--gen",
            "2",
            "--offset",
            "32K",
            "--len",
            "8K",
        ],
    );
}

#[test]
fn a_block_moved_to_another_offset_is_named() {
    let d = tempfile::tempdir().unwrap();
    let f = file(d.path(), "dev", 8 * BS);
    run(0, &["write", s(&f), "--gen", "4"]);
    let block1 = {
        let mut b = vec![0; 4096];
        fs::File::open(&f)
            .unwrap()
            .read_exact_at(&mut b, BS)
            .unwrap();
        b
    };
    overwrite(&f, 5 * BS, &block1);
    let out = run(1, &["verify", s(&f), "--gen", "4"]);
    assert!(
        out.starts_with(
            "mismatch at offset 20480: expected gen 4, found gen 4 written for offset 4096\n"
        ),
        "{out}"
    );
}

#[test]
fn bad_ranges_and_missing_files_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let f = file(d.path(), "dev", 16 * BS);
    for args in [
        vec!["verify", s(&f), "--gen", "1", "--offset", "100"],
        vec!["verify", s(&f), "--gen", "1", "--len", "5000"],
        vec!["verify", s(&f), "--gen", "1", "--offset", "64K"],
        vec![
            "verify",
            s(&f),
            "--gen",
            "1",
            "--offset",
            "60K",
            "--len",
            "8K",
        ],
        vec!["write", s(&f), "--gen", "1", "--offset", "1"],
        vec!["verify", "/nonexistent/tagblk", "--gen", "1"],
    ] {
        let o = tagblk(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with("tagblk: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    // Usage errors are clap's.
    assert_eq!(tagblk(&["write", s(&f)]).status.code(), Some(2));
    assert_eq!(
        tagblk(&["write", s(&f), "--gen", "1", "-j", "0"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn writing_past_the_end_of_a_regular_file_extends_it() {
    let d = tempfile::tempdir().unwrap();
    let f = file(d.path(), "dev", 0);
    run(
        0,
        &["write", s(&f), "--gen", "1", "--len", "64K", "-j", "2"],
    );
    assert_eq!(fs::metadata(&f).unwrap().len(), 65536);
    run(0, &["verify", s(&f), "--gen", "1"]);
}

#[test]
fn works_where_o_direct_may_be_refused() {
    // tmpfs refused O_DIRECT before Linux 6.6; then the file is used
    // buffered, with a note on stderr.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let d = tempfile::tempdir_in(shm).unwrap();
    let f = file(d.path(), "dev", 32 * BS);
    run(0, &["write", s(&f), "--gen", "7", "-j", "2"]);
    run(0, &["verify", s(&f), "--gen", "7"]);
}

#[test]
fn seq_records_form_a_prefix() {
    let d = tempfile::tempdir().unwrap();
    let a = file(d.path(), "a", 16 * BS);
    let b = file(d.path(), "b", 16 * BS);
    let out = run(0, &["seq", s(&a), s(&b), "--count", "25"]);
    assert_eq!(
        out,
        format!("wrote records 0..25 to {} and {}\n", s(&a), s(&b))
    );
    assert_eq!(run(0, &["seqcheck", s(&a), s(&b)]), "records=25\n");
    // The same devices cut after record 17: records 0..18 remain.
    for k in 18..25u64 {
        let (dev, block) = if k % 2 == 0 { (&a, k / 2) } else { (&b, k / 2) };
        overwrite(dev, block * BS, &[0; 4096]);
    }
    assert_eq!(run(0, &["seqcheck", s(&a), s(&b)]), "records=18\n");
    // Nothing written at all is the empty prefix.
    let c = file(d.path(), "c", 4 * BS);
    let e = file(d.path(), "e", 4 * BS);
    assert_eq!(run(0, &["seqcheck", s(&c), s(&e)]), "records=0\n");
}

#[test]
fn seqcheck_sees_a_gap_and_garbage() {
    let d = tempfile::tempdir().unwrap();
    let a = file(d.path(), "a", 16 * BS);
    let b = file(d.path(), "b", 16 * BS);
    run(0, &["seq", s(&a), s(&b), "--count", "20"]);
    // b cut after record 9, a after record 16: a gap from 11 to 15.
    for blk in 5..10 {
        overwrite(&b, blk * BS, &[0; 4096]);
    }
    for blk in 9..10 {
        overwrite(&a, blk * BS, &[0; 4096]);
    }
    let out = run(1, &["seqcheck", s(&a), s(&b)]);
    let want = format!(
        "record 11 ({b} block 5) is missing while record 16 is present
record 13 ({b} block 6) is missing while record 16 is present
record 15 ({b} block 7) is missing while record 16 is present
not one cut: 14 records present, highest 16, 3 missing below it, 0 bad blocks
",
        b = s(&b)
    );
    assert_eq!(out, want);

    // A record in the wrong place and a garbage block are bad blocks.
    let c = file(d.path(), "c", 8 * BS);
    let e = file(d.path(), "e", 8 * BS);
    run(0, &["seq", s(&c), s(&e), "--count", "6"]);
    let rec0 = fs::read(&c).unwrap()[..4096].to_vec();
    overwrite(&c, 4 * BS, &rec0);
    overwrite(&e, 6 * BS, &[0x5a; 4096]);
    let out = run(1, &["seqcheck", s(&c), s(&e)]);
    assert!(
        out.contains(&format!(
            "{} block 4: expected record 8 or zeroes, found record 0 written for offset 0\n",
            s(&c)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} block 6: expected record 13 or zeroes, found garbage\n",
            s(&e)
        )),
        "{out}"
    );
    assert!(out.ends_with(
        "not one cut: 6 records present, highest 5, 0 missing below it, 2 bad blocks\n"
    ));
}

#[test]
fn seq_extends_regular_files_that_are_too_small() {
    // On a regular file too small, seq extends it.
    let d = tempfile::tempdir().unwrap();
    let a = file(d.path(), "a", 0);
    let b = file(d.path(), "b", 0);
    run(0, &["seq", s(&a), s(&b), "--count", "7"]);
    assert_eq!(fs::metadata(&a).unwrap().len(), 4 * BS);
    assert_eq!(fs::metadata(&b).unwrap().len(), 3 * BS);
    assert_eq!(run(0, &["seqcheck", s(&a), s(&b)]), "records=7\n");
}
