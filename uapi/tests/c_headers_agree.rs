//! Proves that the C headers in `include/uapi/linux/` describe the same
//! layouts, ioctl numbers and names as this crate.
//!
//! A small C program built against the headers prints each structure's size
//! and field offsets, each ioctl number, constant and name; the same report
//! is produced from the Rust definitions and the two must be identical. The
//! headers are also compiled for i386, where static assertions check them
//! against the layouts a 32-bit caller uses (`*Compat` in this crate).

use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use blksnap_uapi::*;

/// (C struct, [fields]) in report order; the Rust side mirrors it below.
const STRUCTS: &[(&str, &[&str])] = &[
    ("blkfilter_attach", &["name", "opt", "optlen"]),
    ("blkfilter_detach", &["name"]),
    ("blkfilter_ctl", &["name", "cmd", "optlen", "opt"]),
    ("blksnap_uuid", &["b"]),
    (
        "blksnap_cbtinfo",
        &[
            "device_capacity",
            "block_size",
            "block_count",
            "generation_id",
            "changes_number",
        ],
    ),
    ("blksnap_cbtmap", &["offset", "length", "buffer"]),
    ("blksnap_sectors", &["offset", "count"]),
    ("blksnap_cbtdirty", &["count", "dirty_sectors"]),
    ("blksnap_snapshotadd", &["id"]),
    ("blksnap_snapshotinfo", &["error_code", "image"]),
    ("blksnap_version", &["major", "minor", "revision", "build"]),
    (
        "blksnap_snapshot_create",
        &["diff_storage_limit_sect", "diff_storage_filename", "id"],
    ),
    ("blksnap_snapshot_collect", &["count", "ids"]),
    (
        "blksnap_snapshot_event",
        &["id", "timeout_ms", "code", "time_label", "data"],
    ),
    (
        "blksnap_event_corrupted",
        &["dev_id_mj", "dev_id_mn", "err_code"],
    ),
    ("blksnap_event_no_space", &["requested_nr_sect"]),
];

const IOCTLS: &[(&str, u32)] = &[
    ("BLKFILTER_ATTACH", BLKFILTER_ATTACH),
    ("BLKFILTER_DETACH", BLKFILTER_DETACH),
    ("BLKFILTER_CTL", BLKFILTER_CTL),
    ("IOCTL_BLKSNAP_VERSION", BLKSNAP_IOCTL_VERSION),
    (
        "IOCTL_BLKSNAP_SNAPSHOT_CREATE",
        BLKSNAP_IOCTL_SNAPSHOT_CREATE,
    ),
    (
        "IOCTL_BLKSNAP_SNAPSHOT_DESTROY",
        BLKSNAP_IOCTL_SNAPSHOT_DESTROY,
    ),
    ("IOCTL_BLKSNAP_SNAPSHOT_TAKE", BLKSNAP_IOCTL_SNAPSHOT_TAKE),
    (
        "IOCTL_BLKSNAP_SNAPSHOT_COLLECT",
        BLKSNAP_IOCTL_SNAPSHOT_COLLECT,
    ),
    (
        "IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT",
        BLKSNAP_IOCTL_SNAPSHOT_WAIT_EVENT,
    ),
];

const CONSTANTS: &[(&str, u64)] = &[
    ("BLKFILTER_NAME_LENGTH", BLKFILTER_NAME_LENGTH as u64),
    ("IMAGE_DISK_NAME_LEN", IMAGE_DISK_NAME_LEN as u64),
    (
        "BLKFILTER_CTL_BLKSNAP_CBTINFO",
        BlkfilterCtlBlksnap::Cbtinfo as u64,
    ),
    (
        "BLKFILTER_CTL_BLKSNAP_CBTMAP",
        BlkfilterCtlBlksnap::Cbtmap as u64,
    ),
    (
        "BLKFILTER_CTL_BLKSNAP_CBTDIRTY",
        BlkfilterCtlBlksnap::Cbtdirty as u64,
    ),
    (
        "BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD",
        BlkfilterCtlBlksnap::Snapshotadd as u64,
    ),
    (
        "BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO",
        BlkfilterCtlBlksnap::Snapshotinfo as u64,
    ),
    (
        "blksnap_event_code_corrupted",
        BlksnapEventCode::Corrupted as u64,
    ),
    (
        "blksnap_event_code_no_space",
        BlksnapEventCode::NoSpace as u64,
    ),
];

/// The names of the devices (the image's is the prefix of its disk name).
const NAMES: &[(&str, &str)] = &[
    ("BLKSNAP_CTL", BLKSNAP_CTL),
    ("BLKSNAP_IMAGE_NAME", BLKSNAP_IMAGE_NAME),
];

/// The layout of each structure as Rust sees it, in `STRUCTS` order.
fn rust_layouts() -> Vec<(usize, Vec<usize>)> {
    macro_rules! layout {
        ($ty:ty; $($f:ident),*) => { (size_of::<$ty>(), vec![$(offset_of!($ty, $f)),*]) };
    }
    vec![
        layout!(BlkfilterAttach; name, opt, optlen),
        layout!(BlkfilterDetach; name),
        layout!(BlkfilterCtl; name, cmd, optlen, opt),
        layout!(BlksnapUuid; b),
        layout!(BlksnapCbtinfo; device_capacity, block_size, block_count, generation_id,
            changes_number),
        layout!(BlksnapCbtmap; offset, length, buffer),
        layout!(BlksnapSectors; offset, count),
        layout!(BlksnapCbtdirty; count, dirty_sectors),
        layout!(BlksnapSnapshotadd; id),
        layout!(BlksnapSnapshotinfo; error_code, image),
        layout!(BlksnapVersion; major, minor, revision, build),
        layout!(BlksnapSnapshotCreate; diff_storage_limit_sect, diff_storage_filename, id),
        layout!(BlksnapSnapshotCollect; count, ids),
        layout!(BlksnapSnapshotEvent; id, timeout_ms, code, time_label, data),
        layout!(BlksnapEventCorrupted; dev_id_mj, dev_id_mn, err_code),
        layout!(BlksnapEventNoSpace; requested_nr_sect),
    ]
}

fn rust_report() -> String {
    let mut out = String::new();
    for ((name, fields), (size, offsets)) in STRUCTS.iter().zip(rust_layouts()) {
        assert_eq!(fields.len(), offsets.len(), "field list of {name}");
        write!(out, "{name} {size}").unwrap();
        for (f, o) in fields.iter().zip(offsets) {
            write!(out, " {f}@{o}").unwrap();
        }
        out.push('\n');
    }
    for (name, value) in IOCTLS {
        writeln!(out, "{name} {value:#x}").unwrap();
    }
    for (name, value) in CONSTANTS {
        writeln!(out, "{name} {value}").unwrap();
    }
    for (name, value) in NAMES {
        writeln!(out, "{name} {value}").unwrap();
    }
    out
}

fn c_program() -> String {
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n\
         #include <linux/blk-filter.h>\n#include <linux/blksnap.h>\n\
         int main(void)\n{\n",
    );
    for (name, fields) in STRUCTS {
        writeln!(src, "\tprintf(\"{name} %zu\", sizeof(struct {name}));").unwrap();
        for f in *fields {
            writeln!(src, "\tprintf(\" {f}@%zu\", offsetof(struct {name}, {f}));").unwrap();
        }
        src.push_str("\tprintf(\"\\n\");\n");
    }
    for (name, _) in IOCTLS {
        writeln!(src, "\tprintf(\"{name} %#x\\n\", (unsigned int){name});").unwrap();
    }
    for (name, _) in CONSTANTS {
        writeln!(
            src,
            "\tprintf(\"{name} %llu\\n\", (unsigned long long){name});"
        )
        .unwrap();
    }
    for (name, _) in NAMES {
        writeln!(src, "\tprintf(\"{name} %s\\n\", {name});").unwrap();
    }
    src.push_str("\treturn 0;\n}\n");
    src
}

#[test]
fn c_headers_agree() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (src, exe) = (tmp.join("uapi_layout.c"), tmp.join("uapi_layout"));
    std::fs::write(&src, c_program()).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(root.join("include/uapi"))
        .arg(&src)
        .status()
        .expect("a C compiler is needed for this test");
    assert!(status.success(), "{cc} failed on the C headers");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let c_report = String::from_utf8(out.stdout).unwrap();
    assert_eq!(c_report, rust_report());
}

/// The layouts and ioctl numbers a 32-bit (i386) caller sees: those of
/// x86-64 except where `__u64`'s 4-byte alignment there changes them.
fn i386_report() -> (Vec<(usize, Vec<usize>)>, Vec<u32>) {
    macro_rules! layout {
        ($ty:ty; $($f:ident),*) => { (size_of::<$ty>(), vec![$(offset_of!($ty, $f)),*]) };
    }
    let mut layouts = rust_layouts();
    for ((name, _), layout) in STRUCTS.iter().zip(layouts.iter_mut()) {
        match *name {
            "blkfilter_attach" => *layout = layout!(BlkfilterAttachCompat; name, opt, optlen),
            "blksnap_cbtdirty" => *layout = layout!(BlksnapCbtdirtyCompat; count, dirty_sectors),
            "blksnap_snapshot_collect" => {
                *layout = layout!(BlksnapSnapshotCollectCompat; count, ids)
            }
            "blksnap_cbtinfo" => layout.0 = BLKSNAP_CBTINFO_COMPAT_SIZE,
            _ => {}
        }
    }
    let ioctls = IOCTLS
        .iter()
        .map(|&(name, value)| match name {
            "BLKFILTER_ATTACH" => BLKFILTER_ATTACH_COMPAT,
            "IOCTL_BLKSNAP_SNAPSHOT_COLLECT" => BLKSNAP_IOCTL_SNAPSHOT_COLLECT_COMPAT,
            _ => value,
        })
        .collect();
    (layouts, ioctls)
}

/// C source that compiles only if the headers give `report`'s layouts.
fn c_assertions(report: &(Vec<(usize, Vec<usize>)>, Vec<u32>)) -> String {
    let mut src = String::from(
        "#include <stddef.h>\n#include <linux/blk-filter.h>\n#include <linux/blksnap.h>\n",
    );
    for ((name, fields), (size, offsets)) in STRUCTS.iter().zip(&report.0) {
        writeln!(
            src,
            "_Static_assert(sizeof(struct {name}) == {size}, \"{name}\");"
        )
        .unwrap();
        for (f, o) in fields.iter().zip(offsets) {
            writeln!(
                src,
                "_Static_assert(offsetof(struct {name}, {f}) == {o}, \"{name}.{f}\");"
            )
            .unwrap();
        }
    }
    for ((name, _), value) in IOCTLS.iter().zip(&report.1) {
        writeln!(src, "_Static_assert({name} == {value:#x}u, \"{name}\");").unwrap();
    }
    src
}

#[test]
fn c_headers_agree_for_i386() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = tmp.join("uapi_layout_i386.c");
    std::fs::write(&src, c_assertions(&i386_report())).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // Without 32-bit C library headers installed, the kernel's uapi
    // headers of the host architecture serve: they cover i386 as well.
    let multiarch = Command::new(&cc).arg("-print-multiarch").output().unwrap();
    let multiarch = String::from_utf8(multiarch.stdout).unwrap();
    let status = Command::new(&cc)
        .args(["-m32", "-ffreestanding", "-std=c11", "-fsyntax-only"])
        .arg("-I")
        .arg(root.join("include/uapi"))
        .arg("-idirafter")
        .arg(format!("/usr/include/{}", multiarch.trim()))
        .arg(&src)
        .status()
        .expect("a C compiler is needed for this test");
    assert!(status.success(), "the i386 layouts of the C headers differ");
}

#[test]
fn cbtinfo_bytes_match_the_layout() {
    let info = BlksnapCbtinfo {
        device_capacity: 0x0102_0304_0506_0708,
        block_size: 0x1112_1314,
        block_count: 0x2122_2324,
        generation_id: BlksnapUuid { b: [0xab; 16] },
        changes_number: 7,
    };
    let bytes = info.to_bytes();
    assert_eq!(&bytes[0..8], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&bytes[8..12], &0x1112_1314u32.to_le_bytes());
    assert_eq!(&bytes[12..16], &0x2122_2324u32.to_le_bytes());
    assert_eq!(&bytes[16..32], &[0xab; 16]);
    assert_eq!(bytes[32], 7);
    assert_eq!(&bytes[33..], &[0; 7]);
}
