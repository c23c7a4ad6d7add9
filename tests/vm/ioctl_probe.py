#!/usr/bin/env python3
"""Issues raw ioctls on /dev/blksnap-control for the in-VM tests.

Independent of the Rust crates on purpose: the numbers here are written out
from the contract (uapi.md), so a mistake shared by the module and the uapi
crate still shows.

  ioctl_probe.py version   prints "major minor revision build"
  ioctl_probe.py unknown   prints the errno name of each unknown command
"""
import errno
import fcntl
import os
import struct
import sys

CTL = "/dev/blksnap-control"
VERSION = 0x80085600
UNKNOWN = [
    0x00005663,  # _IO('V', 99)
    0x80105600,  # VERSION's number with a 16-byte size
    0xC030128E,  # BLKFILTER_ATTACH belongs to block devices, not here
    0x0,
]


def errname(fn):
    try:
        fn()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def main():
    fd = os.open(CTL, os.O_RDWR)
    if sys.argv[1] == "version":
        buf = bytearray(8)
        fcntl.ioctl(fd, VERSION, buf, True)
        print(*struct.unpack("<4H", buf))
    elif sys.argv[1] == "unknown":
        buf = bytearray(64)
        print(*(errname(lambda c=c: fcntl.ioctl(fd, c, buf, True)) for c in UNKNOWN))
    else:
        sys.exit(f"unknown probe {sys.argv[1]}")


if __name__ == "__main__":
    main()
