#!/usr/bin/env python3
# make-corpus.py: write the seed corpora of the NBD fuzz targets,
# fuzz/corpus/fuzz-nbd-handshake/ and fuzz/corpus/fuzz-nbd-request/, from
# the wire format of proto.md (see the targets' head comments for what
# the first byte of an input selects).  Rerun after changing it; the
# files are committed so that CI needs no generator run.
import os
import struct

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513
here = os.path.dirname(os.path.abspath(__file__))


def opt(o, body=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(body)) + body


def go(name=b"", infos=(3,)):
    return opt(7, struct.pack(">I", len(name)) + name +
               struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def info(name=b"", infos=(0, 1, 2, 3)):
    return opt(6, struct.pack(">I", len(name)) + name +
               struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(o, queries=(b"base:allocation",), name=b""):
    body = struct.pack(">I", len(name)) + name + \
        struct.pack(">I", len(queries))
    for q in queries:
        body += struct.pack(">I", len(q)) + q
    return opt(o, body)


def req(cmd, off, length, flags=0, handle=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, cmd, handle, off,
                       length) + payload


FLAGS = struct.pack(">I", 3)
reqs = {
    "read": req(0, 0, 4096),
    "write": req(1, 4096, 512, payload=b"\xA5" * 512),
    "write-fua": req(1, 8192, 4096, flags=1, payload=b"\x5A" * 4096),
    "flush": req(3, 0, 0),
    "trim": req(4, 65536, 65536),
    "zero-nohole": req(6, 0, 8192, flags=2),
    "zero": req(6, 131072, 8192),
    "block-status": req(7, 0, 1 << 20),
    "block-status-one": req(7, 4096, 65536, flags=8),
    "unaligned": req(1, 1001, 3, payload=b"xyz") + req(0, 3, 1001),
    "past-end": req(0, (1 << 20) - 512, 4096) + req(1, 1 << 20, 512,
                                                     payload=bytes(512)),
    "unknown": req(42, 0, 0) + req(0, 0, 512, flags=0x8000),
    "bad-magic": b"\xde\xad\xbe\xef" + req(0, 0, 512)[4:],
    "pipeline": b"".join(req(0, i * 4096, 4096, handle=i)
                         for i in range(16)) +
    b"".join(req(1, i * 512, 512, handle=100 + i, payload=bytes([i]) * 512)
             for i in range(8)) + req(3, 0, 0, handle=999),
    "disc": req(0, 0, 512) + req(2, 0, 0),
}
hs = {
    "go": FLAGS + go() + reqs["read"] + reqs["disc"],
    "go-noblock": FLAGS + go(infos=()) + reqs["unaligned"],
    "list-abort": FLAGS + opt(3) + opt(2),
    "info-go": FLAGS + info() + info(b"other") + go(b"fuzz"),
    "structured-meta": FLAGS + opt(8) + meta(9) + meta(10) +
    meta(9, (b"base:",)) + go() + reqs["block-status"],
    "export-name": FLAGS + opt(1, b"") + reqs["read"],
    "zeroes": struct.pack(">I", 1) + opt(1, b"fuzz") + reqs["write"],
    "unknown-opt": FLAGS + opt(0x4242, b"junk") + opt(5) + go(),
    "bad-info": FLAGS + opt(6, b"\x10\x00\x00\x00abc") + opt(7, b"\0"),
}


def write(target, items, first):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, body in items.items():
        for sel in first:
            with open(os.path.join(d, "%s-%d" % (name, sel)), "wb") as f:
                f.write(bytes([sel]) + body)


write("fuzz-nbd-handshake", hs, (0, 1))
write("fuzz-nbd-request", reqs, (0, 1, 2, 3, 6))
