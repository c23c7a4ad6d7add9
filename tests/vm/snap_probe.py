#!/usr/bin/env python3
"""Issues the blksnap snapshot ioctls for the in-VM tests.

Layouts and numbers are written out from the contract (uapi.md sections 1
and 2), independent of the Rust crates.

  snap_probe.py create PATH LIMIT_SECTORS      prints the new UUID
  snap_probe.py add DEV UUID [optlen=N]        SNAPSHOTADD on DEV
  snap_probe.py info DEV [optlen=N]            "error_code image"
  snap_probe.py take UUID | destroy UUID
  snap_probe.py collect [count=N]              the total, then one UUID per
                                               line (count=N passes an
                                               array of N)
  snap_probe.py wait UUID MS                   "code time data-hex"
  snap_probe.py cycle DEV STORAGE LIMIT_SECTORS N
                      N times: a 4 KiB direct write at offset 0 of DEV,
                      create, SNAPSHOTADD, take, CBTINFO and CBTMAP of
                      DEV, destroy; prints "changes_number generation_id
                      map[0]" after each take
  snap_probe.py read DEV SECONDS
                      reads DEV (O_DIRECT, 64 KiB at a time, round and
                      round) until a read fails or comes back short, or
                      SECONDS pass; prints "started" after the first
                      reads, then "reads=N error=E": E is the errno name,
                      EOF (nothing read), shortN (N bytes read) or none
  snap_probe.py batch
                      runs the operations read from stdin, one a line,
                      arguments separated by tabs, and prints one line for
                      each: its output lines joined with spaces (python
                      starts slowly in the test VM)

Options for bad arguments (numbers take Python's prefixes, 0x10):

  arg=ADDR     control ioctls: pass ADDR as the ioctl argument instead of a
               pointer to the struct
  opt=ADDR     add, info: the opt pointer of BLKFILTER_CTL
  path=ADDR    create: the diff_storage_filename pointer
  nonul=N      create: the path is N bytes of 'a' with no NUL after them
  ids=ADDR     collect: the ids pointer (with count=N)

A failure prints the errno name (ESRCH, EALREADY, ...) instead; collect
prints "ENODATA TOTAL" (the count the kernel set) and the UUIDs it copied.
wait prints "waiting" on stderr once a SIGUSR1 can no longer kill it; the
signal then makes the ioctl fail with EINTR.
"""
import ctypes
import errno
import os
import struct
import sys

BLKFILTER_CTL = 0xC0301290
CBTINFO, CBTMAP, SNAPSHOTADD, SNAPSHOTINFO = 0, 1, 3, 4
CREATE, DESTROY, TAKE = 0xC0205601, 0x40105602, 0x40105603
COLLECT, WAIT_EVENT = 0x80105604, 0x90005605

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.ioctl.restype = ctypes.c_int


class Failed(Exception):
    """An operation that failed after producing output (COLLECT's ENODATA)."""

    def __init__(self, lines):
        super().__init__()
        self.lines = lines


def addr(buf):
    return buf if isinstance(buf, int) else ctypes.addressof(buf)


def ioctl(fd, cmd, buf):
    if libc.ioctl(fd, cmd, addr(buf)) == -1:
        raise OSError(ctypes.get_errno(), "")


def ctl_fd(fd, cmd, opt, optlen):
    arg = ctypes.create_string_buffer(
        struct.pack("<32sIIQ", b"blksnap", cmd, optlen, addr(opt)), 48)
    ioctl(fd, BLKFILTER_CTL, arg)


def ctl(dev, cmd, opt, optlen):
    fd = os.open(dev, os.O_RDONLY)
    try:
        ctl_fd(fd, cmd, opt, optlen)
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


def uuid_text(raw):
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def uuid_buf(text):
    raw = bytes.fromhex(text.replace("-", ""))
    if len(raw) != 16:
        raise ValueError(f"not a UUID: {text}")
    return ctypes.create_string_buffer(raw, 16)


def create_buf(path, limit):
    """The struct blksnap_snapshot_create; path is a buffer or an address."""
    return ctypes.create_string_buffer(struct.pack("<QQ16s", limit, addr(path), b""), 32)


def cycle(dev, storage, limit, n):
    import mmap

    path = ctypes.create_string_buffer(storage.encode())
    block = mmap.mmap(-1, 4096)
    info = ctypes.create_string_buffer(40)
    map0 = ctypes.create_string_buffer(1)
    cbtmap = ctypes.create_string_buffer(struct.pack("<IIQ", 0, 1, addr(map0)), 16)
    ctlfd = os.open("/dev/blksnap-control", os.O_RDWR)
    devfd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        for i in range(n):
            block[:8] = struct.pack("<Q", i)
            os.pwritev(devfd, [block], 0)
            buf = create_buf(path, limit)
            ioctl(ctlfd, CREATE, buf)
            id = ctypes.create_string_buffer(buf.raw[16:32], 16)
            try:
                ctl_fd(devfd, SNAPSHOTADD, id, 16)
                ioctl(ctlfd, TAKE, id)
                ctl_fd(devfd, CBTINFO, info, 40)
                ctl_fd(devfd, CBTMAP, cbtmap, 16)
            finally:
                ioctl(ctlfd, DESTROY, id)
            print(info.raw[32], uuid_text(info.raw[16:32]), map0.raw[0], flush=True)
    finally:
        os.close(devfd)
        os.close(ctlfd)
    return []


def read(dev, seconds):
    import mmap
    import time

    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    size = os.lseek(fd, 0, os.SEEK_END)
    buf = mmap.mmap(-1, 65536)
    n, off, err, end = 0, 0, "none", time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                got = os.preadv(fd, [buf], off)
            except OSError as e:
                err = errno.errorcode.get(e.errno, str(e.errno))
                break
            if got < len(buf):
                err = "EOF" if got == 0 else f"short{got}"
                break
            n += 1
            off = (off + 65536) % size
            if n == 16:
                print("started", flush=True)
    finally:
        os.close(fd)
    return [f"reads={n} error={err}"]


def run(op, rest):
    """Runs one operation; returns its output lines."""
    opts = options(rest)
    rest = [a for a in rest if "=" not in a]
    if op == "create":
        if "path" in opts:
            path = opts["path"]
        elif "nonul" in opts:
            path = ctypes.create_string_buffer(b"a" * opts["nonul"], opts["nonul"])
        else:
            path = ctypes.create_string_buffer(rest[0].encode())
        buf = create_buf(path, int(rest[1], 0))
        control(CREATE, opts.get("arg", buf))
        return [uuid_text(buf.raw[16:32])]
    if op == "add":
        opt = uuid_buf(rest[1])
        ctl(rest[0], SNAPSHOTADD, opts.get("opt", opt), opts.get("optlen", 16))
        return []
    if op == "info":
        opt = ctypes.create_string_buffer(36)
        ctl(rest[0], SNAPSHOTINFO, opts.get("opt", opt), opts.get("optlen", 36))
        code, = struct.unpack_from("<i", opt.raw)
        image = opt.raw[4:].split(b"\0")[0].decode() or "-"
        return [f"{code} {image}"]
    if op in ("take", "destroy"):
        buf = uuid_buf(rest[0])
        control(TAKE if op == "take" else DESTROY, opts.get("arg", buf))
        return []
    if op == "collect":
        n = opts.get("count", 0)
        ids = ctypes.create_string_buffer(16 * max(n, 1))
        ids_addr = opts.get("ids", ctypes.addressof(ids)) if "count" in opts else 0
        buf = ctypes.create_string_buffer(struct.pack("<IIQ", n, 0, ids_addr), 16)
        status = ""
        try:
            control(COLLECT, opts.get("arg", buf))
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
            status = "ENODATA "
        total, = struct.unpack_from("<I", buf.raw)
        lines = [f"{status}{total}"]
        lines += [uuid_text(ids.raw[16 * i:16 * i + 16]) for i in range(min(n, total))]
        if status:
            raise Failed(lines)
        return lines
    if op == "wait":
        import signal

        signal.signal(signal.SIGUSR1, lambda *_: None)
        print("waiting", file=sys.stderr, flush=True)
        buf = ctypes.create_string_buffer(4096)
        struct.pack_into("<16sI", buf, 0, uuid_buf(rest[0]).raw, int(rest[1], 0))
        control(WAIT_EVENT, opts.get("arg", buf))
        code, time_label = struct.unpack_from("<Iq", buf.raw, 20)
        return [f"{code} {time_label} {buf.raw[32:48].hex()}"]
    if op == "cycle":
        return cycle(rest[0], rest[1], int(rest[2], 0), int(rest[3], 0))
    if op == "read":
        return read(rest[0], float(rest[1]))
    raise ValueError(f"unknown operation {op}")


def outcome(op, rest):
    """Runs one operation; returns its output lines and whether it worked."""
    try:
        return run(op, rest), True
    except Failed as e:
        return e.lines, False
    except OSError as e:
        return [errno.errorcode.get(e.errno, str(e.errno))], False


def main():
    if sys.argv[1] == "batch":
        for line in sys.stdin:
            fields = line.rstrip("\n").split("\t")
            lines, _ = outcome(fields[0], fields[1:])
            print(" ".join(lines), flush=True)
        return
    lines, ok = outcome(sys.argv[1], sys.argv[2:])
    for line in lines:
        print(line)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
