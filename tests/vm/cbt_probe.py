#!/usr/bin/env python3
"""Issues the blksnap CBT sub-commands of BLKFILTER_CTL for the in-VM tests.

Layouts and numbers are written out from the contract (uapi.md section 1),
independent of the Rust crates.

  cbt_probe.py info  DEV [optlen=N]            "size count capacity uuid changes"
  cbt_probe.py map   DEV OFFSET LENGTH [optlen=N] [buffer=ADDR]
                                               the bytes as space-separated numbers
  cbt_probe.py dirty DEV S:C... [optlen=N] [ranges=ADDR]

A failure prints the errno name (ENODATA, EINVAL, ...) instead.
"""
import ctypes
import errno
import os
import struct
import sys
import uuid

BLKFILTER_CTL = 0xC0301290
CBTINFO, CBTMAP, CBTDIRTY = 0, 1, 2

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int


def ctl(fd, cmd, opt_addr, optlen):
    arg = ctypes.create_string_buffer(
        struct.pack("<32sIIQ", b"blksnap", cmd, optlen, opt_addr), 48)
    if libc.ioctl(fd, BLKFILTER_CTL, ctypes.addressof(arg)) == -1:
        raise OSError(ctypes.get_errno(), "")


def options(args):
    return {k: int(v, 0) for k, v in (a.split("=", 1) for a in args if "=" in a)}


def main():
    op, dev, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    opts = options(rest)
    rest = [a for a in rest if "=" not in a]
    fd = os.open(dev, os.O_RDONLY)
    try:
        if op == "info":
            buf = ctypes.create_string_buffer(40)
            ctl(fd, CBTINFO, ctypes.addressof(buf), opts.get("optlen", 40))
            cap, bsize, count = struct.unpack_from("<QII", buf.raw)
            gen = uuid.UUID(bytes=buf.raw[16:32])
            print(bsize, count, cap, gen, buf.raw[32])
        elif op == "map":
            offset, length = int(rest[0], 0), int(rest[1], 0)
            # A range the module must refuse needs no room; a valid one is small.
            out = ctypes.create_string_buffer(max(min(length, 1 << 24), 1))
            addr = opts.get("buffer", ctypes.addressof(out))
            arg = ctypes.create_string_buffer(struct.pack("<IIQ", offset, length, addr), 16)
            ctl(fd, CBTMAP, ctypes.addressof(arg), opts.get("optlen", 16))
            print(*out.raw[:min(length, len(out.raw))])
        elif op == "dirty":
            pairs = [tuple(int(x, 0) for x in r.split(":")) for r in rest]
            arr = ctypes.create_string_buffer(
                b"".join(struct.pack("<QQ", s, c) for s, c in pairs) or b"\0")
            addr = opts.get("ranges", ctypes.addressof(arr))
            arg = ctypes.create_string_buffer(struct.pack("<IIQ", len(pairs), 0, addr), 16)
            ctl(fd, CBTDIRTY, ctypes.addressof(arg), opts.get("optlen", 16))
            print("OK")
        else:
            sys.exit(f"unknown op {op}")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))


if __name__ == "__main__":
    main()
