#!/usr/bin/env python3
"""Issues raw block-device filter ioctls for the in-VM tests.

Independent of the Rust crates on purpose: the numbers and layouts here are
written out from the contract (uapi.md section 1), so a mistake shared by the
module, the uapi crate and the CLI still shows.

  filter_probe.py [--as-nobody] PATH SPEC...

PATH is opened O_RDONLY once (with --as-nobody, the process then drops to
uid/gid 65534 and so loses CAP_SYS_ADMIN before the ioctls); each SPEC is one ioctl on it, written as
OP[,KEY=VALUE|,FLAG]...  and the result of each is printed, space separated,
on one line: "OK" or the errno name (ENOENT, EINVAL, ...).

  OP      attach  BLKFILTER_ATTACH (struct blkfilter_attach, 48 bytes)
          detach  BLKFILTER_DETACH (struct blkfilter_detach, 32 bytes)
          ctl     BLKFILTER_CTL    (struct blkfilter_ctl, 48 bytes)
          size    BLKGETSIZE64: prints the size in bytes instead of OK
  name=S  filter name, NUL-padded to 32 bytes (default "blksnap")
  nonul   32 name bytes without a NUL ("blksnap" padded with 'X')
  opt=A   the opt user pointer (default 0)
  optlen=N  the optlen field (default 0)
  cmd=N   the CTL sub-command (default 0)
  arg=A   pass the integer A itself as the ioctl argument instead of a
          pointer to the struct (a bad user pointer: expect EFAULT)

Numbers take Python's prefixes (0x10, 4097).  Example:

  filter_probe.py /dev/loop0 attach,name=nosuch attach,optlen=4097 detach
  ENOENT EINVAL ENOENT
"""
import ctypes
import errno
import os
import struct
import sys

BLKFILTER_ATTACH = 0xC030128E  # _IOWR(0x12, 142, struct blkfilter_attach)
BLKFILTER_DETACH = 0xC020128F  # _IOWR(0x12, 143, struct blkfilter_detach)
BLKFILTER_CTL = 0xC0301290  # _IOWR(0x12, 144, struct blkfilter_ctl)
BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, size_t)
NAME_LEN = 32

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
libc.ioctl.restype = ctypes.c_int


def ioctl(fd, request, arg):
    """ioctl(2) with `arg` passed as a raw unsigned long; raises OSError."""
    if libc.ioctl(fd, request, arg) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def errname(e):
    return errno.errorcode.get(e, str(e))


def parse(spec):
    op, *rest = spec.split(",")
    p = {"name": b"blksnap", "opt": 0, "optlen": 0, "cmd": 0, "arg": None}
    for item in rest:
        key, eq, value = item.partition("=")
        if key == "nonul" and not eq:
            p["name"] = (b"blksnap" + b"X" * NAME_LEN)[:NAME_LEN]
        elif key == "name" and eq:
            p["name"] = value.encode()
        elif key in ("opt", "optlen", "cmd", "arg") and eq:
            p[key] = int(value, 0)
        else:
            sys.exit(f"bad item {item!r} in {spec!r}")
    if len(p["name"]) > NAME_LEN:
        sys.exit(f"name longer than {NAME_LEN} bytes in {spec!r}")
    p["name"] = p["name"].ljust(NAME_LEN, b"\0")
    return op, p


def run(fd, spec):
    op, p = parse(spec)
    if op == "attach":
        request = BLKFILTER_ATTACH
        # name[32]@0, opt u64@32, optlen u32@40, 4 bytes of padding
        data = struct.pack("<32sQI4x", p["name"], p["opt"], p["optlen"])
    elif op == "detach":
        request = BLKFILTER_DETACH
        data = struct.pack("<32s", p["name"])  # name[32]@0
    elif op == "ctl":
        request = BLKFILTER_CTL
        # name[32]@0, cmd u32@32, optlen u32@36, opt u64@40
        data = struct.pack("<32sIIQ", p["name"], p["cmd"], p["optlen"], p["opt"])
    elif op == "size":
        request = BLKGETSIZE64
        data = bytes(8)
    else:
        sys.exit(f"unknown operation {op!r}")
    assert len(data) == (request >> 16) & 0x3FFF, spec
    buf = ctypes.create_string_buffer(data, len(data))
    arg = ctypes.addressof(buf) if p["arg"] is None else p["arg"]
    try:
        ioctl(fd, request, arg)
    except OSError as e:
        return errname(e.errno)
    if op == "size":
        return str(struct.unpack("<Q", buf.raw)[0])
    return "OK"


def main():
    args = sys.argv[1:]
    as_nobody = args[:1] == ["--as-nobody"]
    if as_nobody:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    fd = os.open(args[0], os.O_RDONLY)
    if as_nobody:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    try:
        print(*(run(fd, spec) for spec in args[1:]))
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
