#!/usr/bin/env python3
"""Issues the blksnap snapshot ioctls for the in-VM tests.

Layouts and numbers are written out from the contract (uapi.md sections 1
and 2), independent of the Rust crates.

  snap_probe.py create PATH LIMIT_SECTORS      prints the new UUID
  snap_probe.py add DEV UUID [optlen=N]        SNAPSHOTADD on DEV
  snap_probe.py info DEV [optlen=N]            "error_code image"
  snap_probe.py take UUID | destroy UUID
  snap_probe.py collect [count=N]              one UUID per line (count=N
                                               passes an array of N)
  snap_probe.py wait UUID MS                   "code time data-hex"

A failure prints the errno name (ESRCH, EALREADY, ...) instead.
"""
import ctypes
import errno
import os
import struct
import sys
import uuid

BLKFILTER_CTL = 0xC0301290
SNAPSHOTADD, SNAPSHOTINFO = 3, 4
CREATE, DESTROY, TAKE = 0xC0205601, 0x40105602, 0x40105603
COLLECT, WAIT_EVENT = 0x80105604, 0x90005605

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int


def ioctl(fd, cmd, buf):
    if libc.ioctl(fd, cmd, ctypes.addressof(buf)) == -1:
        raise OSError(ctypes.get_errno(), "")


def ctl(dev, cmd, opt, optlen):
    fd = os.open(dev, os.O_RDONLY)
    try:
        arg = ctypes.create_string_buffer(
            struct.pack("<32sIIQ", b"blksnap", cmd, optlen, ctypes.addressof(opt)), 48)
        ioctl(fd, BLKFILTER_CTL, arg)
    finally:
        os.close(fd)


def control(cmd, buf):
    fd = os.open("/dev/blksnap-control", os.O_RDWR)
    try:
        ioctl(fd, cmd, buf)
    finally:
        os.close(fd)


def options(args):
    return {k: int(v, 0) for k, v in (a.split("=", 1) for a in args if "=" in a)}


def main():
    op, rest = sys.argv[1], sys.argv[2:]
    opts = options(rest)
    rest = [a for a in rest if "=" not in a]
    if op == "create":
        path = ctypes.create_string_buffer(rest[0].encode())
        buf = ctypes.create_string_buffer(
            struct.pack("<QQ16s", int(rest[1], 0), ctypes.addressof(path), b""), 32)
        control(CREATE, buf)
        print(uuid.UUID(bytes=buf.raw[16:32]))
    elif op == "add":
        opt = ctypes.create_string_buffer(uuid.UUID(rest[1]).bytes, 16)
        ctl(rest[0], SNAPSHOTADD, opt, opts.get("optlen", 16))
    elif op == "info":
        opt = ctypes.create_string_buffer(36)
        ctl(rest[0], SNAPSHOTINFO, opt, opts.get("optlen", 36))
        code, = struct.unpack_from("<i", opt.raw)
        print(code, opt.raw[4:].split(b"\0")[0].decode() or "-")
    elif op in ("take", "destroy"):
        buf = ctypes.create_string_buffer(uuid.UUID(rest[0]).bytes, 16)
        control(TAKE if op == "take" else DESTROY, buf)
    elif op == "collect":
        n = opts.get("count", 0)
        ids = ctypes.create_string_buffer(16 * max(n, 1))
        addr = ctypes.addressof(ids) if "count" in opts else 0
        buf = ctypes.create_string_buffer(struct.pack("<IIQ", n, 0, addr), 16)
        control(COLLECT, buf)
        total, = struct.unpack_from("<I", buf.raw)
        print(total)
        for i in range(min(n, total)):
            print(uuid.UUID(bytes=ids.raw[16 * i:16 * i + 16]))
    elif op == "wait":
        buf = ctypes.create_string_buffer(4096)
        struct.pack_into("<16sI", buf, 0, uuid.UUID(rest[0]).bytes, int(rest[1], 0))
        control(WAIT_EVENT, buf)
        code, time = struct.unpack_from("<Iq", buf.raw, 20)
        print(code, time, buf.raw[32:48].hex())
    else:
        sys.exit(f"unknown operation {op}")


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        sys.exit(1)
