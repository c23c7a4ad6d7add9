#!/usr/bin/env python3
"""Random blksnap ioctls from a fixed seed, for the in-VM tests.

  ioctl_fuzz.py [--shared] [--go FILE] SEED OPS STORAGE-DIR STORAGE-DEV MEMBER...

First a prologue: each kind of operation once, with right arguments, in an
order in which every one must succeed (a snapshot in STORAGE-DIR of the
first MEMBER: attach, CBTINFO, CBTDIRTY, CBTMAP, SNAPSHOTADD, COLLECT,
take, SNAPSHOTINFO, a write, a read of the image, WAIT_EVENT, destroy,
detach). What the random part reaches depends on timing (a copy or a
growth of the storage racing the next operation, another fuzzer's), so it
is the prologue that makes sure every run went through the module's real
paths; a module that breaks one fails the run there. It expects the module
parameters at values a small snapshot works with (the caller puts them
back between runs).

Then OPS times, one of: a control ioctl (/dev/blksnap-control) or a
filter ioctl on one of the devices, with arguments that are now right, now
garbage (bad user pointers, structs that cross into an unmapped page, sizes
at their edges, unknown UUIDs and commands); a 4 KiB write to a MEMBER; a
read of a snapshot image; a module parameter set to a value in or out of
its range (the caller puts them back). The MEMBERs are zeroed first;
nothing may be attached to them yet. Snapshots made along the way are real
ones: members are added, taken, destroyed in random orders.

What must hold, checked here:
- every ioctl fails, if it does, with an errno of the contract (ALLOWED);
- an image read returns the member's data at the take, or fails with EIO;
- at the end, every MEMBER holds exactly what was written to it.
At the end every snapshot is destroyed and every filter detached. Prints
"ops=N" and a line per (operation, result) with its count; exits 1 on the
first broken rule, with the operation's number and what was seen.

With --shared, other fuzzers run at once, each with MEMBERs of its own and
the same storage: the snapshots of all are found with COLLECT and taken,
destroyed and joined by any of them, so every ioctl races the others'.
Then an image read must only return or fail with EIO (its snapshot may be
someone else's), and at the end only the members' data is checked: the
caller destroys and detaches what is left once every fuzzer is done.

With --go FILE, the fuzzer prints "ready" after its prologue and waits for
FILE to exist before the random part: the caller creates it once every
fuzzer is ready, so that no prologue races another fuzzer's random
operations.

Layouts and numbers are written out from the contract (uapi.md 1 and 2).
"""
import collections
import ctypes
import errno
import mmap
import os
import random
import struct
import sys
import time

ATTACH, DETACH, CTL = 0xC030128E, 0xC020128F, 0xC0301290
CBTINFO, CBTMAP, CBTDIRTY, SNAPSHOTADD, SNAPSHOTINFO = range(5)
VERSION, CREATE, DESTROY, TAKE = 0x80085600, 0xC0205601, 0x40105602, 0x40105603
COLLECT, WAIT_EVENT = 0x80105604, 0x90005605
BLOCK = 4096
PAGE = mmap.PAGESIZE

# Every errno the contract (and Documentation/blksnap.rst: ERANGE for
# CBTDIRTY past the device's end) lets these ioctls return, path look-ups of
# SNAPSHOT_CREATE included; ENOMEM for sizes no machine could serve.
ALLOWED = {
    errno.EINVAL, errno.EFAULT, errno.ENOENT, errno.ENODEV, errno.EALREADY,
    errno.EBUSY, errno.ENOTTY, errno.ESRCH, errno.ENODATA, errno.EPERM,
    errno.ENOSPC, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR,
    errno.EOPNOTSUPP, errno.ENOMEM, errno.EACCES, errno.ELOOP,
    errno.ETXTBSY, errno.E2BIG, errno.EOVERFLOW, errno.EROFS, errno.ERANGE,
}

# Values tried for the module parameters: in range (kept small enough that
# copies stay a few MiB and CBT maps small), at the edges, and refused ones.
PARAMS = {
    "tracking_block_minimum_shift": ["9", "12", "16", "20", "31", "8", "32"],
    "tracking_block_maximum_count": ["1", "64", "2097152", "0"],
    "tracking_block_maximum_shift": ["9", "16", "26", "31", "32"],
    "chunk_minimum_shift": ["9", "12", "16", "18", "20", "31"],
    "chunk_maximum_count_shift": ["4", "8", "12", "40", "63", "64"],
    "chunk_maximum_shift": ["18", "20", "26", "30", "31"],
    "chunk_maximum_in_queue": ["1", "2", "16", "256", "0", "65537"],
    "diff_storage_minimum": ["2048", "32768", "65536", "2047"],
    "image_writable": ["0", "1", "2"],
}
GARBAGE = ["", "-1", "abc", "0x10", "99999999999999999999", "1 2"]

libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
libc.ioctl.restype = ctypes.c_int
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class Broken(Exception):
    pass


def result(rc):
    """The name of an ioctl's answer: OK or the errno's."""
    return errno.errorcode.get(rc, str(rc)) if rc else "OK"


def ioctl(fd, cmd, arg):
    """Returns 0 or the errno."""
    return 0 if libc.ioctl(fd, cmd, arg) == 0 else ctypes.get_errno()


def image_path(dev):
    """The node of the image of device node dev, /dev/blksnap-MAJOR-MINOR."""
    rdev = os.stat(dev).st_rdev
    return f"/dev/blksnap-{os.major(rdev)}-{os.minor(rdev)}"


class Memory:
    """User memory for the arguments of one operation, handed out downwards
    from an unmapped page: the first buffer of an operation ends right
    before it, so that the kernel's access past that buffer faults instead
    of landing in this process's heap. A read-only page above it takes
    outputs that must fail."""

    SIZE = 64 * PAGE

    def __init__(self):
        self.map = mmap.mmap(-1, self.SIZE + 2 * PAGE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.guard = self.base + self.SIZE
        if libc.mprotect(self.guard, PAGE, 0) or libc.mprotect(self.guard + PAGE, PAGE, 1):
            raise OSError(ctypes.get_errno(), "mprotect")
        self.readonly = self.guard + PAGE
        self.top = self.SIZE

    def reset(self):
        self.top = self.SIZE

    def put(self, data, room=0):
        """Places data, then room zero bytes, below the last buffer;
        returns its address."""
        size = len(data) + room
        if size > self.top:
            raise ValueError("arguments too large")
        self.top -= size
        self.map[self.top:self.top + size] = data + bytes(room)
        return self.base + self.top

    def get(self, addr, size):
        off = addr - self.base
        return bytes(self.map[off:off + size])


class Fuzz:
    def __init__(self, seed, storage_dir, storage_dev, members, shared):
        self.rng = random.Random(seed)
        self.shared = shared
        self.mem = Memory()
        self.ctl = os.open("/dev/blksnap-control", os.O_RDWR)
        self.members = members
        self.devs = members + [storage_dev]
        self.fds = {d: os.open(d, os.O_RDWR) for d in self.devs}
        self.sizes = {d: os.lseek(self.fds[d], 0, os.SEEK_END) for d in self.devs}
        self.paths = [storage_dir, storage_dev, os.path.join(storage_dir, "file"),
                      "/dev/null", "/nonexistent/diff", "", "/proc/self/fd/0",
                      "/" + "a" * 300, "a/" * 2100]
        # Made once: another fuzzer may be using it as its storage.
        try:
            with open(self.paths[2], "xb") as f:
                f.truncate(16 << 20)
        except FileExistsError:
            pass
        # What each member holds (block -> data; absent: zeros, as written
        # first), and what its image must show: the data at the take of
        # its snapshot.
        zeros = bytes(1 << 20)
        for d in members:
            for off in range(0, self.sizes[d], len(zeros)):
                os.pwrite(self.fds[d], zeros, off)
            os.fsync(self.fds[d])
        self.data = {d: {} for d in members}
        self.image = {}
        self.live = []
        self.member_of = {}
        self.counts = collections.Counter()
        self.op = 0

    # --- Argument makers ---------------------------------------------------

    def pick(self, *weighted):
        values, weights = zip(*weighted)
        return self.rng.choices(values, weights)[0]

    def bad_pointer(self, size):
        return self.rng.choice([
            0, 1, 0x1000, 0xFFFF888000000000, 0xFFFFFFFFFF600000,
            0x8000000000000000, 2**64 - 1, self.mem.readonly,
            self.mem.guard - self.rng.randint(1, max(1, size - 1)),
        ])

    def struct_arg(self, data, room=0):
        """A good struct most of the time, else a bad pointer."""
        if self.rng.random() < 0.1:
            return self.bad_pointer(len(data) + room)
        return self.mem.put(data, room)

    def number(self, bits, good):
        top = 2**bits - 1
        return self.pick((good, 6), (0, 1), (1, 1), (top, 1), (top >> 1, 1),
                         (self.rng.getrandbits(bits), 1))

    def uuid(self):
        if self.live and self.rng.random() < 0.9:
            return self.rng.choice(self.live)
        return self.rng.randbytes(16)

    def name(self):
        return self.pick((b"blksnap", 8), (b"blksnap\0x", 1), (b"blksna", 1),
                         (b"B" * 32, 1), (self.rng.randbytes(32), 1)).ljust(32, b"\0")

    # --- Operations -------------------------------------------------------

    def record(self, what, rc):
        if rc not in ALLOWED | {0}:
            raise Broken(f"{what}: {errno.errorcode.get(rc, rc)}, outside the contract")
        self.counts[(what.split()[0], errno.errorcode.get(rc, "OK"))] += 1

    def control(self, what, cmd, arg):
        rc = ioctl(self.ctl, cmd, arg)
        self.record(what, rc)
        return rc

    def create(self):
        if len(self.live) >= 6:
            self.destroy()
            self.mem.reset()
        path = self.pick(*((p, 1) for p in self.paths), (None, 1))
        if path is None:
            at = self.bad_pointer(64)
        else:
            # Now and then without its NUL: the unmapped page follows.
            raw = path.encode()
            at = self.mem.put(raw + b"\0" if self.rng.random() < 0.95 else raw)
        limit = self.pick((0, 3), (self.rng.randint(1, 1 << 17), 3), (2**64 - 1, 1),
                          (self.rng.getrandbits(64), 1))
        arg = self.struct_arg(struct.pack("<QQ16s", limit, at, self.rng.randbytes(16)))
        if self.control(f"create {path!r:.40}", CREATE, arg) == 0:
            self.live.append(self.mem.get(arg + 16, 16))

    def forget(self, uuid):
        self.live = [u for u in self.live if u != uuid]
        for dev, owner in list(self.member_of.items()):
            if owner == uuid:
                del self.member_of[dev]
                self.image.pop(dev, None)

    def by_uuid(self, what, cmd, uuid):
        """A control ioctl on snapshot uuid; an unknown one is forgotten
        (another fuzzer destroyed it)."""
        rc = self.control(what, cmd, self.struct_arg(uuid))
        if rc == errno.ESRCH:
            self.forget(uuid)
        return rc

    def destroy(self):
        uuid = self.uuid()
        if self.by_uuid("destroy", DESTROY, uuid) == 0:
            self.forget(uuid)

    def take(self, uuid=None):
        uuid = uuid or self.uuid()
        if self.by_uuid("take", TAKE, uuid) == 0 and not self.shared:
            for dev, owner in self.member_of.items():
                if owner == uuid and dev in self.data:
                    self.image[dev] = dict(self.data[dev])

    def flow(self):
        """The right calls in the right order: a snapshot made, a member
        attached and added, mostly taken."""
        if len(self.live) >= 6:
            self.destroy()
            self.mem.reset()
        at = self.mem.put(self.rng.choice(self.paths[:3]).encode() + b"\0")
        arg = self.mem.put(struct.pack("<QQ16s", 64 << 11, at, bytes(16)))
        if self.control("flow_create", CREATE, arg):
            return
        uuid = self.mem.get(arg + 16, 16)
        self.live.append(uuid)
        dev = self.rng.choice(self.members)
        name = b"blksnap".ljust(32, b"\0")
        rc = ioctl(self.fds[dev], ATTACH, self.mem.put(struct.pack("<32sQI4x", name, 0, 0)))
        self.record("flow_attach", rc)
        opt = self.mem.put(uuid)
        add = struct.pack("<32sIIQ", name, SNAPSHOTADD, 16, opt)
        rc = ioctl(self.fds[dev], CTL, self.mem.put(add))
        self.record("flow_add", rc)
        if rc == 0:
            self.member_of[dev] = uuid
        if self.rng.random() < 0.8:
            self.take(uuid)

    def collect(self):
        count = self.number(32, self.rng.randint(0, 8))
        # Room for at most 64 UUIDs, whatever the count says.
        room = 16 * min(count, 64)
        ids = self.pick((0, 2), (self.mem.put(b"", room), 3), (self.bad_pointer(room or 16), 1))
        arg = self.struct_arg(struct.pack("<IIQ", count, 0, ids))
        if self.control("collect", COLLECT, arg) == 0 and self.shared and ids and room:
            # The other fuzzers' snapshots become this one's to use.
            found = struct.unpack("<I", self.mem.get(arg, 4))[0]
            for i in range(min(found, count, 64)):
                uuid = self.mem.get(ids + 16 * i, 16)
                if uuid not in self.live:
                    self.live.append(uuid)

    def wait_event(self):
        # At most 5 ms of waiting: the run stays bounded.
        arg = struct.pack("<16sII", self.uuid(), self.rng.choice([0, 1, 5]), 0)
        self.control("wait_event", WAIT_EVENT, self.struct_arg(arg, room=4096 - len(arg)))

    def version(self):
        self.control("version", VERSION, self.struct_arg(b"", 8))

    def unknown_control(self):
        nr = self.rng.randint(6, 255)
        # _IOC(dir, 'V', nr, size) past the known numbers, or any number.
        direction, size = self.rng.randint(0, 3), self.rng.randint(0, 4096)
        cmd = (direction << 30) | (size << 16) | (0x56 << 8) | nr
        cmd = self.pick((cmd, 3), (self.rng.getrandbits(32), 1))
        rc = ioctl(self.ctl, cmd, self.mem.put(b"", 4096))
        if rc != errno.ENOTTY:
            raise Broken(f"control ioctl {cmd:#x}: {errno.errorcode.get(rc, rc)}, not ENOTTY")
        self.counts[("unknown", "ENOTTY")] += 1

    def filter_ioctl(self):
        dev = self.rng.choice(self.devs)
        fd = self.fds[dev]
        kind = self.pick(("attach", 3), ("detach", 1), ("ctl", 12))
        if kind == "attach":
            optlen = self.number(32, 0)
            opt = self.pick((0, 3), (self.mem.put(self.rng.randbytes(64)), 1),
                            (self.bad_pointer(64), 1))
            arg = struct.pack("<32sQI4x", self.name(), opt, optlen)
            rc = ioctl(fd, ATTACH, self.struct_arg(arg))
        elif kind == "detach":
            rc = ioctl(fd, DETACH, self.struct_arg(struct.pack("<32s", self.name())))
            if rc == 0:
                self.member_of.pop(dev, None)
                self.image.pop(dev, None)
        else:
            cmd = self.pick((CBTINFO, 2), (CBTMAP, 3), (CBTDIRTY, 3), (SNAPSHOTADD, 4),
                            (SNAPSHOTINFO, 2), (self.rng.randint(5, 300), 1))
            opt, size = self.ctl_opt(cmd, self.sizes[dev] >> 9)
            optlen = self.number(32, size)
            arg = struct.pack("<32sIIQ", self.name(), cmd, optlen, opt)
            rc = ioctl(fd, CTL, self.struct_arg(arg))
            if rc == 0 and cmd == SNAPSHOTADD:
                self.member_of[dev] = self.mem.get(opt, 16)
            kind = f"ctl{cmd if cmd <= SNAPSHOTINFO else 'X'}"
        self.record(kind, rc)

    def ctl_opt(self, cmd, sectors):
        """The opt buffer of a BLKFILTER_CTL sub-command, and its size."""
        if cmd == CBTMAP:
            length = self.pick((self.rng.randint(0, 1024), 4), (2**32 - 1, 1),
                               (self.rng.getrandbits(32), 1))
            # Room for at most 16 pages, whatever the length says.
            room = min(length, 16 * PAGE)
            buf = self.pick((self.mem.put(b"", room), 4), (self.bad_pointer(room), 1))
            offset = self.number(32, self.rng.randint(0, 1024))
            return self.struct_arg(struct.pack("<IIQ", offset, length, buf)), 16
        if cmd == CBTDIRTY:
            # At most 256 ranges in memory, whatever the count says.
            n = self.pick((self.rng.randint(0, 4), 5), (self.rng.randint(5, 16), 2),
                          (2**32 - 1, 1), (self.rng.randint(17, 10000), 1))
            ranges = b"".join(struct.pack("<QQ", *self.sector_range(sectors))
                              for _ in range(min(n, 256)))
            at = self.pick((self.mem.put(ranges), 5), (self.bad_pointer(len(ranges) or 16), 1))
            return self.struct_arg(struct.pack("<I4xQ", n, at)), 16
        if cmd == SNAPSHOTADD:
            return self.struct_arg(self.uuid()), 16
        size = {CBTINFO: 40, SNAPSHOTINFO: 36}.get(cmd, 64)
        return self.struct_arg(self.rng.randbytes(size)), size

    def sector_range(self, sectors):
        """A range of sectors: mostly inside the device, else past its end
        or wrapping around."""
        top = 2**64 - 1
        start = self.rng.randrange(sectors)
        inside = (start, self.rng.randint(0, sectors - start))
        past = (self.rng.randint(sectors - 8, sectors + 8), self.rng.randint(0, 4096))
        anything = (self.rng.getrandbits(64), self.rng.getrandbits(64))
        return self.pick((inside, 12), (past, 1), ((top, 1), 1), ((top - 7, 16), 1), (anything, 1))

    def write(self):
        dev = self.rng.choice(self.members)
        block = self.rng.randrange(self.sizes[dev] // BLOCK)
        data = self.rng.randbytes(BLOCK)
        os.pwrite(self.fds[dev], data, block * BLOCK)
        os.fdatasync(self.fds[dev])
        self.data[dev][block] = data
        self.counts[("write", "OK")] += 1

    def read_image(self):
        if self.shared:
            self.read_any_image()
            return
        if not self.image:
            return
        dev = self.rng.choice(sorted(self.image))
        path = image_path(dev)
        # Mostly a block written before or after the take.
        written = list(self.data[dev])
        if written and self.rng.random() < 0.8:
            block = self.rng.choice(written)
        else:
            block = self.rng.randrange(self.sizes[dev] // BLOCK)
        buf = mmap.mmap(-1, BLOCK)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except FileNotFoundError as e:
            raise Broken(f"{path} of a taken snapshot is missing") from e
        try:
            got = os.preadv(fd, [buf], block * BLOCK)
        except OSError as e:
            if e.errno != errno.EIO:
                raise Broken(f"read of {path}: {e}") from e
            self.counts[("image_read", "EIO")] += 1
            return
        finally:
            os.close(fd)
        want = self.image[dev].get(block, bytes(BLOCK))
        if got != BLOCK or buf[:] != want:
            raise Broken(f"{path} block {block}: not the data of the take")
        self.counts[("image_read", "OK")] += 1

    def read_any_image(self):
        """Reads a block of the image of a member, if it has one now; its
        snapshot may be destroyed at any moment."""
        dev = self.rng.choice(self.members)
        path = image_path(dev)
        buf = mmap.mmap(-1, BLOCK)
        gone = (errno.ENOENT, errno.ENXIO, errno.ENODEV)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError as e:
            if e.errno not in gone:
                raise Broken(f"open of {path}: {e}") from e
            self.counts[("image_open", errno.errorcode[e.errno])] += 1
            return
        try:
            os.preadv(fd, [buf], self.rng.randrange(self.sizes[dev] // BLOCK) * BLOCK)
            self.counts[("image_read", "OK")] += 1
        except OSError as e:
            if e.errno not in gone + (errno.EIO,):
                raise Broken(f"read of {path}: {e}") from e
            self.counts[("image_read", errno.errorcode[e.errno])] += 1
        finally:
            os.close(fd)

    def param(self):
        name = self.rng.choice(sorted(PARAMS))
        value = self.pick((self.rng.choice(PARAMS[name]), 6), (self.rng.choice(GARBAGE), 1))
        try:
            with open(f"/sys/module/blksnap/parameters/{name}", "w") as f:
                f.write(value)
            rc = 0
        except OSError as e:
            rc = e.errno
        if rc not in (0, errno.EINVAL, errno.ERANGE):
            raise Broken(f"{name}={value!r}: {errno.errorcode.get(rc, rc)}")
        self.counts[("param", errno.errorcode.get(rc, "OK"))] += 1

    def step(self):
        self.op += 1
        self.mem.reset()
        self.pick((self.create, 3), (self.flow, 2), (self.destroy, 2), (self.take, 3),
                  (self.collect, 2), (self.wait_event, 1), (self.version, 1),
                  (self.unknown_control, 1), (self.filter_ioctl, 14), (self.write, 6),
                  (self.read_image, 4), (self.param, 1))()

    # --- The prologue -----------------------------------------------------

    def must(self, what, rc, want=0):
        """Counts a prologue operation, which must answer want."""
        self.record(what, rc)
        if rc != want:
            raise Broken(f"prologue: {what}: {result(rc)}, not {result(want)}")

    def must_ctl(self, dev, cmd, opt, optlen):
        """A BLKFILTER_CTL sub-command of the prologue, which must succeed."""
        arg = struct.pack("<32sIIQ", b"blksnap", cmd, optlen, opt)
        self.must(f"ctl{cmd}", ioctl(self.fds[dev], CTL, self.mem.put(arg)))

    def prologue(self):
        """Each kind of operation once, right: see the module's docstring."""
        m = self.mem
        dev = self.members[0]
        name = b"blksnap".ljust(32, b"\0")
        m.reset()
        self.must("version", ioctl(self.ctl, VERSION, m.put(b"", 8)))
        at = m.put(self.paths[0].encode() + b"\0")
        arg = m.put(struct.pack("<QQ16s", 64 << 11, at, bytes(16)))
        self.must("create", ioctl(self.ctl, CREATE, arg))
        uuid = m.get(arg + 16, 16)
        self.live.append(uuid)
        m.reset()
        arg = struct.pack("<32sQI4x", name, 0, 0)
        self.must("attach", ioctl(self.fds[dev], ATTACH, m.put(arg)))

        # Change tracking: sector 0 marked, then seen in the map.
        m.reset()
        info = m.put(b"", 40)
        self.must_ctl(dev, CBTINFO, info, 40)
        capacity, _, count = struct.unpack("<QII", m.get(info, 16))
        if capacity != self.sizes[dev] or count == 0:
            raise Broken(f"prologue: CBTINFO of {dev}: capacity {capacity}, {count} blocks")
        m.reset()
        ranges = m.put(struct.pack("<QQ", 0, 1))
        self.must_ctl(dev, CBTDIRTY, m.put(struct.pack("<I4xQ", 1, ranges)), 16)
        m.reset()
        length = min(count, 1024)
        buf = m.put(b"", length)
        self.must_ctl(dev, CBTMAP, m.put(struct.pack("<IIQ", 0, length, buf)), 16)
        if m.get(buf, 1) == b"\0":
            raise Broken(f"prologue: CBTMAP of {dev} does not show block 0 CBTDIRTY marked")

        # The snapshot: added, found, taken, its image named.
        m.reset()
        self.must_ctl(dev, SNAPSHOTADD, m.put(uuid), 16)
        self.member_of[dev] = uuid
        m.reset()
        arg = m.put(struct.pack("<IIQ", 0, 0, 0))
        self.must("collect", ioctl(self.ctl, COLLECT, arg))
        if struct.unpack("<I", m.get(arg, 4))[0] < 1:
            raise Broken("prologue: COLLECT counts no snapshot")
        m.reset()
        self.must("take", ioctl(self.ctl, TAKE, m.put(uuid)))
        self.image[dev] = dict(self.data[dev])
        m.reset()
        info = m.put(b"", 36)
        self.must_ctl(dev, SNAPSHOTINFO, info, 36)
        error_code, image = struct.unpack("<i32s", m.get(info, 36))
        image = image.split(b"\0")[0].decode()
        if error_code or not image:
            raise Broken(f"prologue: SNAPSHOTINFO of {dev}: error_code {error_code}, "
                         f"image '{image}'")

        # A write after the take: the image still reads the block of the
        # take.
        block = 1
        data = bytes(range(256)) * (BLOCK // 256)
        os.pwrite(self.fds[dev], data, block * BLOCK)
        os.fdatasync(self.fds[dev])
        self.data[dev][block] = data
        self.counts[("write", "OK")] += 1
        buf = mmap.mmap(-1, BLOCK)
        fd = os.open(f"/dev/{image}", os.O_RDONLY | os.O_DIRECT)
        try:
            got = os.preadv(fd, [buf], block * BLOCK)
        except OSError as e:
            raise Broken(f"prologue: read of /dev/{image}: {e}") from e
        finally:
            os.close(fd)
        if got != BLOCK or buf[:] != self.image[dev].get(block, bytes(BLOCK)):
            raise Broken(f"prologue: /dev/{image} block {block}: not the data of the take")
        self.counts[("image_read", "OK")] += 1

        # No event for a snapshot nothing went wrong with; then the end.
        m.reset()
        arg = struct.pack("<16sII", uuid, 0, 0)
        self.must("wait_event", ioctl(self.ctl, WAIT_EVENT, m.put(arg, room=4096 - len(arg))),
                  errno.ENOENT)
        m.reset()
        self.must("destroy", ioctl(self.ctl, DESTROY, m.put(uuid)))
        self.forget(uuid)
        m.reset()
        self.must("detach", ioctl(self.fds[dev], DETACH, m.put(name)))
        m.reset()

    # --- The end ----------------------------------------------------------

    def finish(self):
        """Destroys every snapshot, detaches every filter, checks the
        members' data; with --shared, only checks the members' data."""
        if not self.shared:
            self.clean_up()
        self.check_members()

    def clean_up(self):
        self.mem.reset()
        arg = self.mem.put(struct.pack("<IIQ", 0, 0, 0))
        if ioctl(self.ctl, COLLECT, arg):
            raise Broken("COLLECT of the count failed")
        count = struct.unpack("<I", self.mem.get(arg, 4))[0]
        self.mem.reset()
        ids = self.mem.put(b"", 16 * count)
        arg = self.mem.put(struct.pack("<IIQ", count, 0, ids))
        if count and ioctl(self.ctl, COLLECT, arg):
            raise Broken("COLLECT of the snapshots failed")
        for uuid in [self.mem.get(ids + 16 * i, 16) for i in range(count)]:
            self.mem.reset()
            rc = ioctl(self.ctl, DESTROY, self.mem.put(uuid))
            if rc:
                raise Broken(f"DESTROY at the end: {errno.errorcode.get(rc, rc)}")
        for dev, fd in self.fds.items():
            self.mem.reset()
            rc = ioctl(fd, DETACH, self.mem.put(b"blksnap".ljust(32, b"\0")))
            if rc not in (0, errno.ENOENT):
                raise Broken(f"DETACH of {dev} at the end: {errno.errorcode.get(rc, rc)}")

    def check_members(self):
        for dev, blocks in self.data.items():
            fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
            buf = mmap.mmap(-1, 1 << 20)
            try:
                for off in range(0, self.sizes[dev], len(buf)):
                    os.preadv(fd, [buf], off)
                    for b in range(off // BLOCK, (off + len(buf)) // BLOCK):
                        at = b * BLOCK - off
                        if buf[at:at + BLOCK] != blocks.get(b, bytes(BLOCK)):
                            raise Broken(f"{dev} block {b} does not hold what was written")
            finally:
                os.close(fd)


def main():
    args = sys.argv[1:]
    shared = args[:1] == ["--shared"]
    if shared:
        args = args[1:]
    go = None
    if args[:1] == ["--go"]:
        go, args = args[1], args[2:]
    seed, ops, storage_dir, storage_dev, *members = args
    fuzz = Fuzz(int(seed), storage_dir, storage_dev, members, shared)
    try:
        fuzz.prologue()
        if go:
            print("ready", flush=True)
            while not os.path.exists(go):
                time.sleep(0.01)
        for _ in range(int(ops)):
            fuzz.step()
        fuzz.finish()
    except Broken as e:
        sys.exit(f"operation {fuzz.op}: {e}")
    print(f"ops={fuzz.op}")
    for (what, result), n in sorted(fuzz.counts.items()):
        print(what, result, n)


if __name__ == "__main__":
    main()
