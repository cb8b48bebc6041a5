#!/usr/bin/env python3
"""Write logs in dm-log-writes' format, and model their replay.

Written from lib/log/format.h alone, independently of cli/logfile.c
(and of logwrites.py, which checks the writer), so that test-log-cli.sh
checks the C reader against a second reading of the format.  rb_hash128
(lib/log/hash.c) is ported here for the same reason.

  synthlog.py hash FILE              print rbh128:HEX of FILE's bytes
  synthlog.py make SPEC LOG          write LOG as the JSON SPEC says
  synthlog.py model LOG BASE OUT [TO]
                                     what 'rumpblk log replay' must make:
                                     BASE ('-': zeroes of the base's
                                     recorded size) with LOG's entries
                                     applied (through --to TO), into OUT
  synthlog.py counts LOG             the counts 'log info --json' must
                                     print, as JSON

SPEC is a JSON object:
  sector_size   S (default 512)
  base          null, or {"path": P, "image": FILE} (size, hash and zero
                from FILE) or {"path": P, "size": N, "zero": bool,
                "hash": "HEX" or null}; "time" (default 1700000000)
  entries       a list of ["write", SECTOR, NR, SEED], ["fua", ...],
                ["zero", SECTOR, NR] (a write of zeroes, a hole),
                ["discard", SECTOR, NR], ["flush"], ["mark", NAME]
  nr_entries    overrides the count in the super
  truncate      bytes to cut from the end of the file
  poke          a list of [OFFSET, HEXBYTES] written over the file
"""
import ctypes
import json
import random
import struct
import sys

LW_MAGIC = 0x6A736677736872
LW_FLUSH, LW_FUA, LW_DISCARD, LW_MARK = 1, 2, 4, 8
MASK = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK


def mix(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def rb_hash128(data):
    """lib/log/hash.c over data in one piece: (16 bytes, all zero?)."""
    lanes = [(P1 + P2) & MASK, P2, 0, (-P1) & MASK]
    n = len(data) - len(data) % 32
    for (w0, w1, w2, w3) in struct.iter_unpack("<4Q", data[:n]):
        for i, w in enumerate((w0, w1, w2, w3)):
            lanes[i] = (rotl((lanes[i] + w * P2) & MASK, 31) * P1) & MASK
    tailb = data[n:]
    tail = 0
    for b in tailb:
        tail = ((tail * 0x100000001B3) & MASK) ^ b
    acc = (rotl(lanes[0], 1) + rotl(lanes[1], 7) + rotl(lanes[2], 12) +
           rotl(lanes[3], 18)) & MASK
    acc ^= mix((tail + len(tailb)) & MASK)
    length = len(data) & MASK
    lo = mix(acc ^ length)
    hi = mix(lo ^ lanes[0] ^ rotl(lanes[2], 29) ^ ((length * P1) & MASK))
    return struct.pack("<QQ", lo, hi), not any(data)


def data_of(seed, n):
    return random.Random(seed).randbytes(n)


def make(spec, path):
    S = spec.get("sector_size", 512)
    super_ = bytearray(S)
    base = spec.get("base")
    if base is not None:
        if "image" in base:
            img = open(base["image"], "rb").read()
            size = len(img)
            h, zero = rb_hash128(img)
            flags = 2 | (1 if zero else 0)
        else:
            size = base["size"]
            h = bytes.fromhex(base["hash"]) if base.get("hash") else bytes(16)
            flags = (2 if base.get("hash") else 0) | \
                (1 if base.get("zero") else 0)
        p = base["path"].encode()
        rec = (b"RBLKBASE" + struct.pack("<IIQ", 1, flags, size) + h +
               struct.pack("<QH", base.get("time", 1700000000), len(p)) +
               p + b"\0")
        assert len(rec) == 50 + len(p) + 1
        super_[64:64 + len(rec)] = rec
    out = bytearray()
    holes = []          # (offset, length) of write-zeroes data
    for e in spec["entries"]:
        kind = e[0]
        sec = bytearray(S)
        if kind in ("write", "fua", "zero"):
            flags = LW_FUA if kind == "fua" else 0
            sec[:32] = struct.pack("<4Q", e[1], e[2], flags, 0)
            out += sec
            if kind == "zero":
                holes.append((S + len(out), e[2] * S))
                out += bytes(e[2] * S)
            else:
                out += data_of(e[3], e[2] * S)
        elif kind == "discard":
            sec[:32] = struct.pack("<4Q", e[1], e[2], LW_DISCARD, 0)
            out += sec
        elif kind == "flush":
            sec[:32] = struct.pack("<4Q", 0, 0, LW_FLUSH, 0)
            out += sec
        elif kind == "mark":
            name = e[1].encode()
            sec[:32] = struct.pack("<4Q", 0, 0, LW_MARK, len(name))
            sec[32:32 + len(name)] = name
            out += sec
        else:
            raise SystemExit("synthlog.py: unknown entry %r" % (e,))
    nr = spec.get("nr_entries", len(spec["entries"]))
    super_[:28] = struct.pack("<QQQI", LW_MAGIC, 1, nr, S)
    blob = bytearray(super_) + out
    for off, hexb in spec.get("poke", []):
        b = bytes.fromhex(hexb)
        blob[off:off + len(b)] = b
    if spec.get("truncate"):
        del blob[len(blob) - spec["truncate"]:]
    with open(path, "wb") as f:
        f.write(blob)
    # The zeroes of write-zeroes entries as holes, as the writer leaves
    # them (the bytes read the same either way).
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "r+b") as f:
        for off, n in holes:
            if off + n <= len(blob):
                # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; where the
                # file system cannot, the zeroes stay written.
                libc.fallocate(f.fileno(), 3, ctypes.c_long(off),
                               ctypes.c_long(n))


def read_log(path):
    """(S, base dict or None, [entries]) by format.h, for the model."""
    blob = open(path, "rb").read()
    magic, ver, nr, S = struct.unpack_from("<QQQI", blob, 0)
    assert magic == LW_MAGIC and ver == 1, "not a log"
    base = None
    if blob[64:72] == b"RBLKBASE":
        _, flags, size = struct.unpack_from("<IIQ", blob, 72)
        base = {"flags": flags, "size": size, "hash": blob[88:104]}
    entries, off = [], S
    for i in range(nr):
        sector, nrs, flags, dlen = struct.unpack_from("<4Q", blob, off)
        e = {"index": i, "sector": sector, "nr": nrs, "flags": flags}
        off += S
        if flags & LW_MARK:
            e["name"] = blob[off - S + 32:off - S + 32 + dlen].decode()
        elif not flags & (LW_FLUSH | LW_DISCARD):
            e["data"] = blob[off:off + nrs * S]
            off += nrs * S
        entries.append(e)
    return S, base, entries


def select(entries, to):
    """The entries 'replay --to TO' applies (None: all)."""
    if to is None:
        return entries
    kind, _, val = to.partition("=")
    if kind == "entry":
        return entries[:int(val)]
    seen = 0
    for i, e in enumerate(entries):
        if kind == "flush" and e["flags"] & LW_FLUSH:
            seen += 1
            if seen == int(val):
                return entries[:i + 1]
        if kind == "mark" and e["flags"] & LW_MARK and e["name"] == val:
            return entries[:i + 1]
    raise SystemExit("synthlog.py: --to %s not in the log" % to)


def model(log, base, out, to):
    S, rec, entries = read_log(log)
    if base == "-":
        img = bytearray(rec["size"])
    else:
        img = bytearray(open(base, "rb").read())
    for e in select(entries, to):
        # What lies past the image (the rest of a last partial sector)
        # is dropped.
        off = e["sector"] * S
        n = max(0, min(e["nr"] * S, len(img) - off))
        if e["flags"] & (LW_FLUSH | LW_MARK):
            continue
        if e["flags"] & LW_DISCARD:
            img[off:off + n] = bytes(n)
        else:
            img[off:off + n] = e["data"][:n]
    open(out, "wb").write(img)


def counts(log):
    S, _, entries = read_log(log)
    c = {"sector_size": S, "entries": len(entries), "writes": 0,
         "bytes_written": 0, "fua_writes": 0, "discards": 0,
         "bytes_discarded": 0, "flushes": 0, "epochs": 0, "marks": []}
    io = False
    for e in entries:
        if e["flags"] & LW_MARK:
            c["marks"].append({"name": e["name"], "entry": e["index"]})
        elif e["flags"] & LW_FLUSH:
            c["flushes"] += 1
            c["epochs"] += io
            io = False
        elif e["flags"] & LW_DISCARD:
            c["discards"] += 1
            c["bytes_discarded"] += e["nr"] * S
            io = True
        else:
            c["writes"] += 1
            c["bytes_written"] += e["nr"] * S
            c["fua_writes"] += bool(e["flags"] & LW_FUA)
            io = True
    c["epochs"] += io
    return c


def main(argv):
    if len(argv) >= 3 and argv[1] == "hash":
        h, _ = rb_hash128(open(argv[2], "rb").read())
        print("rbh128:" + h.hex())
    elif len(argv) == 4 and argv[1] == "make":
        make(json.load(open(argv[2])), argv[3])
    elif len(argv) in (5, 6) and argv[1] == "model":
        model(argv[2], argv[3], argv[4], argv[5] if len(argv) == 6 else None)
    elif len(argv) == 3 and argv[1] == "counts":
        print(json.dumps(counts(argv[2]), sort_keys=True))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
