#!/bin/bash
# test-nbd-smoke: rumpblk serve in captive mode with real clients:
# nbdinfo --json reports the export, qemu-io writes and reads patterns
# (aligned, unaligned, aio + flush, write-zeroes, discard), nbdcopy with 4
# connections round-trips 16 MiB byte-exact, and a client that does not
# negotiate block sizes (nbdsh, strict mode off) does byte-granular I/O.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires nbdinfo --version
requires qemu-io --version
requires nbdcopy --version
# nbdsh runs "python3 -m nbd": the system python has the module even
# where another python3 comes first in PATH.
PATH=/usr/bin:$PATH
requires nbdsh --version
requires jq --version

img=$tmp/disk.img
serve() {
	timeout 120 "$RUMPBLK" serve --backend "$TEST_BACKEND" \
	    --socket "$tmp/s" "$@"
}

# nbdinfo: size, flags, block sizes.
serve --create --size 16M --export smoke \
    --run 'nbdinfo --json "$uri"' "$img" >"$tmp/info.json" ||
    fail "serve --create + nbdinfo"
[ "$(stat -c %s "$img")" = 16777216 ] || fail "--create size"
j() { jq -r ".exports[0].$1" "$tmp/info.json"; }
[ "$(j '"export-size"')" = 16777216 ] || fail "export-size: $(cat "$tmp/info.json")"
[ "$(j '"export-name"')" = smoke ] || fail "export-name"
[ "$(j is_read_only)" = false ] || fail "is_read_only"
[ "$(j can_flush)" = true ] || fail "can_flush"
[ "$(j can_fua)" = true ] || fail "can_fua"
[ "$(j can_trim)" = true ] || fail "can_trim"
[ "$(j can_zero)" = true ] || fail "can_zero"
[ "$(j can_multi_conn)" = true ] || fail "can_multi_conn"
[ "$(j block_size_minimum)" = 512 ] || fail "block_size_minimum"
[ "$(j block_size_maximum)" = 33554432 ] || fail "block_size_maximum"

# --create refuses to overwrite, and leaves the file alone.
serve --create --size 1M --run true "$img" 2>"$tmp/err" &&
    fail "--create overwrote an image"
grep -q "disk.img" "$tmp/err" || fail "--create error does not name the file"
[ "$(stat -c %s "$img")" = 16777216 ] || fail "--create touched the image"

# qemu-io patterns.
serve --run 'qemu-io -f raw \
    -c "write -P 0xab 1000 5000" -c "read -P 0xab 1000 5000" \
    -c "aio_write -P 0xcd 1M 64k" -c "aio_write -P 0xce 2M 64k" \
    -c "aio_flush" -c "read -P 0xcd 1M 64k" -c "read -P 0xce 2M 64k" \
    -c "write -z 3M 1M" -c "read -P 0 3M 1M" \
    -c "write -P 0x11 4M 4M" -c "read -P 0x11 4M 4M" \
    -c "discard 4M 1M" -c "write -z -u 8M 1M" -c "write -f -P 0x22 9M 4096" \
    -c "read -P 0x22 9M 4096" "$uri"' "$img" >"$tmp/qio.out" 2>&1 ||
    fail "qemu-io: $(cat "$tmp/qio.out")"
grep -qi "pattern verification failed\|error" "$tmp/qio.out" &&
    fail "qemu-io: $(cat "$tmp/qio.out")"
cmp -s <(dd if="$img" bs=1 skip=1000 count=5000 2>/dev/null) \
    <(head -c 5000 /dev/zero | tr '\0' '\253') ||
    fail "unaligned write not in the image"

# nbdcopy round trip with 4 connections.
export tmp
head -c 16M /dev/urandom >"$tmp/src"
serve --run 'nbdcopy --connections=4 "$tmp/src" "$uri" &&
    nbdcopy --connections=4 "$uri" "$tmp/out"' "$img" ||
    fail "nbdcopy"
cmp "$tmp/src" "$tmp/out" || fail "nbdcopy round trip differs"
cmp "$tmp/src" "$img" || fail "image differs from what nbdcopy wrote"

# Byte-granular I/O for a client without block sizes (libnbd, no
# NBD_INFO_BLOCK_SIZE request, strict checks off).
serve --run 'nbdsh -c "
h.set_request_block_size(False)
h.set_strict_mode(0)
h.connect_uri(\"$uri\")
h.pwrite(b\"hello, world\", 12345)
assert h.pread(12, 12345) == b\"hello, world\"
assert h.pread(3, 12344)[1:] == b\"he\"
h.zero(7, 12346)
assert h.pread(12, 12345) == b\"h\" + bytes(7) + b\"orld\"
h.flush()
# A write past the end gets ENOSPC and writes nothing (the refused
# payload used to be answered with success).
size = h.get_size()
before = h.pread(512, size - 512)
try:
    h.pwrite(b\"x\" * 1024, size - 512)
    assert False, \"write past the end succeeded\"
except nbd.Error as e:
    assert e.errno == \"ENOSPC\", e
assert h.pread(512, size - 512) == before
"' "$img" || fail "byte-granular I/O"

# Read-only: flags, EPERM for writes; block status of a sparse region.
serve --read-only --run 'nbdsh -c "
h.add_meta_context(\"base:allocation\")
h.connect_uri(\"$uri\")
assert h.is_read_only() and not h.can_trim() and not h.can_zero()
try:
    h.pwrite(b\"x\" * 512, 0)
    assert False, \"write on a read-only export succeeded\"
except nbd.Error as e:
    assert e.errno == \"EPERM\", e
ext = []
h.block_status(65536, 0, lambda m, o, e, err: ext.extend(e))
assert sum(ext[0::2]) >= 65536 and all(x % 512 == 0 for x in ext[0::2]), ext
"' "$img" || fail "read-only export"

# WRITE_ZEROES longer than the maximum block size, as nbdcopy sends for
# the holes of a sparse source, from a client held to block sizes.
serve --create --size 40M --run 'nbdsh -c "
h.connect_uri(\"$uri\")
h.pwrite(b\"y\" * 4096, 36 << 20)
h.zero(40 << 20, 0)
assert h.pread(4096, 36 << 20) == bytes(4096)
"' "$tmp/big.img" || fail "40 MiB write-zeroes"

# TCP on a port the kernel picks: $port and $uri name the real one.
timeout 60 "$RUMPBLK" serve --backend "$TEST_BACKEND" --listen 127.0.0.1:0 \
    --run 'test "$port" -gt 0 && test -z "${unixsocket-}" &&
    test "$uri" = "nbd://127.0.0.1:$port/" && nbdinfo --size "$uri"' \
    "$img" >"$tmp/size" || fail "--listen 127.0.0.1:0"
[ "$(cat "$tmp/size")" = 16777216 ] || fail "size over TCP: $(cat "$tmp/size")"

# The image lock: a second writer is refused with a message naming it.
start_server -P "$tmp/pid" "$RUMPBLK" serve --backend "$TEST_BACKEND" \
    --socket "$tmp/s1" --pidfile "$tmp/pid" "$img"
serve --run true "$img" 2>"$tmp/err" && fail "a second writer was served"
grep -q "disk.img.*in use" "$tmp/err" || fail "lock message: $(cat "$tmp/err")"
kill "$(cat "$tmp/pid")"
exit 0
