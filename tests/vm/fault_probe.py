#!/usr/bin/env python3
"""Makes the set-up ioctls of a snapshot fail on each allocation in turn.

  fault_probe.py sweep STAGE DEV STORAGE LIMIT_SECTORS MAX

STAGE is attach (BLKFILTER_ATTACH on DEV, which must be detached), create
(SNAPSHOT_CREATE with STORAGE), add (SNAPSHOTADD of DEV, attached, to a new
snapshot) or take (SNAPSHOT_TAKE of a snapshot holding DEV). For n = 1, 2,
... the n-th allocation the ioctl makes under the module's code fails: the
task's /proc/thread-self/fail-nth is set to n right before the ioctl, and
the stack-trace filters of failslab and fail_page_alloc, set by the caller,
count only allocations with the module's code on the stack. The sweep ends
at the first n the ioctl does not reach, where it must succeed. Whatever
the ioctl left behind is undone after each round (destroy, detach), with no
injection.

Prints one line per round, "n=N injected=0|1 result=OK|ERRNO", then
"rounds=N failed=F errnos=E1,E2" (the distinct errnos); a round that
failed with another errno than ENOMEM is also noted in the kernel log, so
that the log says what failed before it. (The block layer turns some
failures into other errnos: device_add_disk ignores a failed dev_set_name,
and device_add then refuses the nameless device with EINVAL.) Exits 1 when
a round that was not injected failed, or the sweep did not end within MAX
rounds.
"""
import ctypes
import errno
import os
import struct
import sys

import snap_probe as sp

ATTACH, DETACH = 0xC030128E, 0xC020128F


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def attach(fd):
    buf = ctypes.create_string_buffer(struct.pack("<32sQII", b"blksnap", 0, 0, 0), 48)
    sp.ioctl(fd, ATTACH, buf)


def detach(fd):
    sp.ioctl(fd, DETACH, ctypes.create_string_buffer(struct.pack("<32s", b"blksnap"), 32))


class Sweep:
    def __init__(self, dev, storage, limit):
        self.ctl = os.open("/dev/blksnap-control", os.O_RDWR)
        self.dev = os.open(dev, os.O_RDONLY)
        self.path = ctypes.create_string_buffer(storage.encode())
        self.limit = limit
        self.id = None
        self.nth = os.open("/proc/thread-self/fail-nth", os.O_RDWR)

    def create(self):
        buf = sp.create_buf(self.path, self.limit)
        sp.ioctl(self.ctl, sp.CREATE, buf)
        self.id = ctypes.create_string_buffer(buf.raw[16:32], 16)

    def add(self):
        sp.ctl_fd(self.dev, sp.SNAPSHOTADD, self.id, 16)

    def destroy(self):
        if self.id is not None:
            sp.ioctl(self.ctl, sp.DESTROY, self.id)
            self.id = None

    def prepare(self, stage):
        if stage in ("add", "take"):
            self.create()
        if stage == "take":
            self.add()

    def op(self, stage):
        if stage == "attach":
            attach(self.dev)
        elif stage == "create":
            self.create()
        elif stage == "add":
            self.add()
        else:
            sp.ioctl(self.ctl, sp.TAKE, self.id)

    def undo(self, stage, ok):
        if stage == "attach":
            if ok:
                detach(self.dev)
        else:
            self.destroy()

    def round(self, stage, n):
        """One round; returns (injected, result)."""
        self.prepare(stage)
        os.pwrite(self.nth, str(n).encode(), 0)
        try:
            self.op(stage)
            result = "OK"
        except OSError as e:
            result = errname(e)
        left = int(os.pread(self.nth, 32, 0).split()[0])
        os.pwrite(self.nth, b"0", 0)
        self.undo(stage, result == "OK")
        return left == 0, result


def main():
    if len(sys.argv) != 7 or sys.argv[1] != "sweep":
        sys.exit(__doc__)
    stage, dev, storage = sys.argv[2:5]
    limit, most = int(sys.argv[5], 0), int(sys.argv[6], 0)
    if stage not in ("attach", "create", "add", "take"):
        sys.exit(f"unknown stage {stage}")
    s = Sweep(dev, storage, limit)
    failed, errnos = 0, set()
    for n in range(1, most + 1):
        injected, result = s.round(stage, n)
        print(f"n={n} injected={int(injected)} result={result}", flush=True)
        if result not in ("OK", "ENOMEM"):
            with open("/dev/kmsg", "w") as k:
                k.write(f"fault_probe: {stage} n={n} result={result}\n")
        if result != "OK":
            failed += 1
            errnos.add(result)
        if not injected:
            print(f"rounds={n} failed={failed} errnos={','.join(sorted(errnos)) or '-'}")
            sys.exit(0 if result == "OK" else 1)
    print(f"rounds={most} failed={failed} errnos={','.join(sorted(errnos)) or '-'} unfinished")
    sys.exit(1)


if __name__ == "__main__":
    main()
