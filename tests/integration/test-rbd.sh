#!/bin/bash
# test-rbd: "rumpblk serve rbd:POOL/IMAGE[@SNAP]" against a real
# single-node Ceph cluster started here (ceph-functions.sh: one monitor,
# one memstore OSD, cephx, 127.0.0.1, a directory under $tmp, stopped
# and removed at exit).  It skips only when a Ceph daemon cannot start
# here (and says why), or without the tools.
#
#   - "rumpblk info rbd:rbd/test" names the image, its pool and size,
#     and librbd's cache: write-around from the start (rumpblk's
#     default rbd_cache_writethrough_until_flush=false), or as CEPH_ARGS
#     sets it back (writethrough until the first FLUSH; no cache);
#   - data: nbdcopy with 4 connections writes a random file through
#     rumpblk; qemu-img compare (through rumpblk) and "rbd export" (the
#     image read directly) agree with the local copy;
#   - write-zeroes reads back as zeroes and block status reports it as
#     a hole (rbd_diff_iterate2), written data as data;
#   - ext4 made through nbdfuse + a loop device holds a file and passes
#     e2fsck -fn after unmounting (root, /dev/fuse and loop devices; the
#     part is skipped, and said, without them);
#   - a snapshot, served (rbd:rbd/test@s1), is read-only (a write gets
#     EPERM) and holds the snapshot's data, not the head's;
#   - the layers: a fault rule fires as on a file (the 3rd read fails);
#     --write-cache and a power cut (model lose): a write not flushed is
#     not in the image afterwards (rbd export), a flushed one is; the
#     write log and --stats count what went by;
#   - bad input: a missing pool, image or snapshot, a --ceph-conf that
#     does not exist, an unknown --ceph-id and a wrong key (cephx),
#     --write-cache on a snapshot: each exits 1 with a line naming what
#     failed, and the image is unchanged;
#   - the cluster goes away (the OSD is ended): requests fail with EIO
#     within the op timeout, never hang, the server says so, and it
#     still exits on SIGTERM.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/ceph-functions.sh"
requires nbdinfo --version
requires nbdcopy --version
requires qemu-img --version
requires jq --version
requires /usr/bin/python3 -c 'import nbd'
ceph_requires

PY=/usr/bin/python3
SIZE=$((256 << 20))
s=$tmp/s
ctl=$tmp/ctl
suri="nbd+unix:///?socket=$s"

ceph_start cephx
ceph_cli osd pool create rbd 8 8 >/dev/null 2>"$tmp/ceph.err" ||
    fail "ceph osd pool create: $(cat "$tmp/ceph.err")"
rbd_cli pool init rbd 2>"$tmp/ceph.err" ||
    fail "rbd pool init: $(cat "$tmp/ceph.err")"
rbd_cli create --size 256M rbd/test 2>"$tmp/ceph.err" ||
    fail "rbd create: $(cat "$tmp/ceph.err")"

# rserve SPEC [serve options...]: rumpblk serve SPEC on $s.
rserve() {
	local spec=$1
	shift
	rm -f "$s" "$tmp/pid"
	start_server -P "$tmp/pid" "$RUMPBLK" serve --socket "$s" \
	    --pidfile "$tmp/pid" --ceph-conf "$CEPH_CONF" "$@" "$spec" \
	    2>>"$tmp/serve.err"
	spid=$(cat "$tmp/pid")
}

runserve() {
	stop_nbd "$spid" "rumpblk serve" ||
	    fail "rumpblk serve exited $? on SIGTERM: $(cat "$tmp/serve.err")"
}

# export_image [SPEC]: the image as the cluster holds it, into $tmp/exp.
export_image() {
	rm -f "$tmp/exp"
	rbd_cli export "${1:-rbd/test}" "$tmp/exp" >/dev/null 2>&1 ||
	    fail "rbd export ${1:-rbd/test}: $(rbd_cli export \
	    "${1:-rbd/test}" - 2>&1 >/dev/null | tail -n 2)"
}

# --- info ------------------------------------------------------------

"$RUMPBLK" info --ceph-conf "$CEPH_CONF" rbd:rbd/test >"$tmp/info.txt" ||
    fail "rumpblk info rbd:rbd/test"
grep -q "^type: *Ceph RBD image" "$tmp/info.txt" ||
    fail "info: not an RBD image: $(cat "$tmp/info.txt")"
grep -q "^remote: .*pool rbd, image test, $SIZE bytes in 4194304-byte" \
    "$tmp/info.txt" || fail "info: the remote line: $(cat "$tmp/info.txt")"
grep -q "; librbd cache writearound;" "$tmp/info.txt" ||
    fail "info: librbd's cache is not write-around from the start:" \
    "$(cat "$tmp/info.txt")"
# The configuration has the last word.
for c in "--rbd_cache_writethrough_until_flush=true" "--rbd_cache=false"; do
	CEPH_ARGS=$c "$RUMPBLK" info --ceph-conf "$CEPH_CONF" rbd:rbd/test \
	    >"$tmp/info.txt" || fail "rumpblk info with CEPH_ARGS=$c"
	case $c in
	*until*) want="writearound after the first FLUSH (writethrough" ;;
	*) want="none" ;;
	esac
	grep -qF "; librbd cache $want" "$tmp/info.txt" ||
	    fail "info with CEPH_ARGS=$c: $(cat "$tmp/info.txt")"
done
"$RUMPBLK" info --json --ceph-conf "$CEPH_CONF" rbd:rbd/test |
    jq -e '.backend == "rbd" and .size == '"$SIZE"' and
    (.remote | test("connected as client.admin"))' >/dev/null ||
    fail "info --json: $("$RUMPBLK" info --json --ceph-conf "$CEPH_CONF" \
    rbd:rbd/test 2>&1)"

# --- data --------------------------------------------------------------

random_file "$tmp/data" "$SIZE"
rserve rbd:rbd/test --stats "$tmp/stats.json"
nbdinfo --json "$suri" >"$tmp/nbdinfo.json" || fail "nbdinfo"
jq -e '.exports[0]["export-size"] == '"$SIZE"' and
    (.exports[0].is_read_only | not) and .exports[0].can_flush and
    .exports[0].can_trim and .exports[0].can_zero' "$tmp/nbdinfo.json" \
    >/dev/null || fail "nbdinfo: $(cat "$tmp/nbdinfo.json")"
timeout 300 nbdcopy --flush -C 4 "$tmp/data" "$suri" ||
    fail "nbdcopy -C 4 into rbd:rbd/test"
timeout 300 qemu-img compare -f raw -F raw "$suri" "$tmp/data" \
    >/dev/null || fail "qemu-img compare: the image and the local copy differ"
export_image
cmp -s "$tmp/exp" "$tmp/data" ||
    fail "rbd export does not hold what was written through rumpblk"
runserve
jq -e '.bytes_written == '"$SIZE"' and .bytes_read >= '"$SIZE"' and
    .flushes >= 1' "$tmp/stats.json" >/dev/null ||
    fail "--stats: $(jq -c '[.bytes_written, .bytes_read, .flushes]' \
    "$tmp/stats.json")"

# --- a snapshot of it, for later ---------------------------------------

rbd_cli snap create rbd/test@s1 >/dev/null 2>&1 ||
    fail "rbd snap create: $(rbd_cli snap create rbd/test@s2 2>&1)"

# --- write-zeroes and block status, and the write log -------------------

rserve rbd:rbd/test --write-log "$tmp/w.log"
$PY - "$suri" <<'PY' || fail "write-zeroes and block status"
import sys, nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
M = 1 << 20
h.zero(8 * M, 8 * M)            # two whole objects
h.pwrite(b"w" * 4096, 12 * M)   # and data in the second again
h.flush()
assert h.pread(4096, 8 * M) == bytes(4096), "zeroed range is not zero"
assert h.pread(4096, 12 * M) == b"w" * 4096
seen = []
h.block_status(16 * M, 4 * M, lambda ctx, off, ents, err: seen.extend(ents))
# [4M, 8M) data, [8M, 12M) a hole, [12M, 16M) data, [16M, 20M) data.
assert seen[0:2] == [4 * M, 0], seen
assert seen[2:4] == [4 * M, 3], seen
assert seen[4:6] == [8 * M, 0], seen
h.shutdown()
PY
runserve
"$RUMPBLK" log info --json "$tmp/w.log" >"$tmp/wlog.json" ||
    fail "rumpblk log info"
jq -e '.writes >= 1 and .flushes >= 1 and .base.path == "rbd:rbd/test"' \
    "$tmp/wlog.json" >/dev/null || fail "the write log: $(cat "$tmp/wlog.json")"

# --- ext4 through nbdfuse and a loop device ----------------------------

if [ -c /dev/fuse ] && [ -e /dev/loop-control ] && [ "$(id -u)" = 0 ] &&
    command -v nbdfuse >/dev/null && command -v mkfs.ext4 >/dev/null; then
	. "$RUMPBLK_SRCDIR/tests/integration/powercut-functions.sh"
	PC_SIZE=$SIZE
	pc_sock=$s
	rserve rbd:rbd/test
	cleanup_fn pc_cleanup
	pc_attach || fail "$pc_why"
	pc_mkfs || fail "$pc_why"
	head -c $((32 << 20)) "$tmp/data" >"$tmp/file"
	cp "$tmp/file" "$pc_mnt/file" || fail "cp onto ext4"
	timeout 120 umount "$pc_mnt" || fail "umount"
	pc_mounted=
	e2fsck -fn "$pc_loopdev" >"$tmp/fsck.log" 2>&1 ||
	    fail "e2fsck -fn: $(cat "$tmp/fsck.log")"
	mount -o ro "$pc_loopdev" "$pc_mnt" || fail "mount again"
	pc_mounted=1
	cmp -s "$tmp/file" "$pc_mnt/file" || fail "the file on ext4 differs"
	pc_cleanup
	runserve
	# The cluster's copy, read directly, is the same clean file system.
	export_image
	e2fsck -fn "$tmp/exp" >"$tmp/fsck.log" 2>&1 ||
	    fail "e2fsck -fn on rbd export: $(cat "$tmp/fsck.log")"
else
	echo "ext4 part skipped: needs root, /dev/fuse, loop devices," \
	    "nbdfuse and mkfs.ext4"
	# The head must differ from the snapshot for the check below.
	rserve rbd:rbd/test
	$PY -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.zero(1 << 20, 0); h.flush()' "$suri" || fail "zeroing the head"
	runserve
fi

# --- the snapshot, served: read-only, the snapshot's data ----------------

"$RUMPBLK" info --ceph-conf "$CEPH_CONF" rbd:rbd/test@s1 >"$tmp/info.txt" ||
    fail "rumpblk info rbd:rbd/test@s1"
grep -q "^access: *read-only" "$tmp/info.txt" &&
    grep -q "snapshot s1 (read-only)" "$tmp/info.txt" ||
    fail "info of the snapshot: $(cat "$tmp/info.txt")"
rserve rbd:rbd/test@s1
grep -q "read-only" "$tmp/serve.err" ||
    fail "no note that the snapshot is served read-only"
nbdinfo --json "$suri" | jq -e '.exports[0].is_read_only' >/dev/null ||
    fail "the snapshot is not read-only to nbdinfo"
timeout 300 qemu-img compare -f raw -F raw "$suri" "$tmp/data" \
    >/dev/null || fail "the snapshot does not hold the data of its time"
$PY - "$suri" <<'PY' || fail "a write to the snapshot"
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
assert h.is_read_only()
try:
    h.pwrite(b"s" * 4096, 0)
    raise SystemExit("a write to the snapshot succeeded")
except nbd.Error as e:
    assert e.errnum in (errno.EPERM, errno.EROFS), e
h.shutdown()
PY
runserve
export_image rbd/test@s1
cmp -s "$tmp/exp" "$tmp/data" || fail "the snapshot changed"

# --- a fault rule ----------------------------------------------------

rserve rbd:rbd/test --fault "error,op=read,nth=3"
$PY - "$suri" <<'PY' || fail "a fault rule over the RBD backing"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
res = []
for i in range(5):
    try:
        h.pread(4096, i * 4096)
        res.append("ok")
    except nbd.Error:
        res.append("err")
assert res == ["ok", "ok", "err", "ok", "ok"], res
h.shutdown()
PY
runserve

# --- --write-cache and a power cut -------------------------------------

rserve rbd:rbd/test --write-cache 16M --control "$ctl"
$PY - "$suri" "$RUMPBLK" "$ctl" <<'PY' || fail "a power cut over the RBD backing"
import subprocess, sys, nbd
uri, rumpblk, ctl = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"F" * 4096, 0)
h.flush()
h.pwrite(b"U" * 4096, 8192)
assert h.pread(4096, 8192) == b"U" * 4096
subprocess.run([rumpblk, "ctl", ctl, "power-cut", "model=lose"],
               check=True, stdout=subprocess.DEVNULL)
PY
runserve
export_image
$PY - "$tmp/exp" <<'PY' || fail "the image after the power cut"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(0)
    assert f.read(4096) == b"F" * 4096, "the flushed write is lost"
    f.seek(8192)
    assert f.read(4096) != b"U" * 4096, "the unflushed write survived"
PY

# --- bad input ---------------------------------------------------------

sum=$(sha256sum <"$tmp/exp")
x=(serve --socket "$tmp/x.sock" --ceph-conf "$CEPH_CONF")
expect_one_error 1 "rbd:nopool/test: pool 'nopool' does not exist" \
    "${x[@]}" rbd:nopool/test
expect_one_error 1 "rbd:rbd/none: image 'none' not found in pool 'rbd'" \
    "${x[@]}" rbd:rbd/none
expect_one_error 1 "rbd:rbd/test@s9: image 'test' in pool 'rbd' has no snapshot 's9'" \
    "${x[@]}" rbd:rbd/test@s9
expect_one_error 1 "rbd:rbd/test: cannot read the Ceph configuration $tmp/none.conf" \
    serve --socket "$tmp/x.sock" --ceph-conf "$tmp/none.conf" rbd:rbd/test
# Credentials (the cluster runs cephx): a client the cluster does not
# know, and client.admin with a key that is not the cluster's.
expect_one_error 1 "rbd:rbd/test: cannot connect to the cluster as client.nosuch: .*Permission denied" \
    "${x[@]}" --ceph-id nosuch rbd:rbd/test
ceph-authtool --create-keyring "$tmp/bad.keyring" --gen-key \
    -n client.admin >/dev/null 2>&1 || fail "ceph-authtool"
sed "s|^keyring = .*/keyring\$|keyring = $tmp/bad.keyring|" "$CEPH_CONF" \
    >"$tmp/bad.conf"
grep -q "bad.keyring" "$tmp/bad.conf" || fail "bad.conf"
expect_one_error 1 "rbd:rbd/test: cannot connect to the cluster as client.admin: .*Permission denied" \
    serve --socket "$tmp/x.sock" --ceph-conf "$tmp/bad.conf" rbd:rbd/test
expect_one_error 1 "expected rbd:POOL/IMAGE\[@SNAP\]" "${x[@]}" rbd:test
# --write-cache on a snapshot: refused, naming the option and the image.
expect_one_error 1 "write-cache: rbd:rbd/test@s1 is read-only" \
    "${x[@]}" --write-cache 1M rbd:rbd/test@s1
export_image
[ "$(sha256sum <"$tmp/exp")" = "$sum" ] ||
    fail "the image changed during the bad-input runs"

# --- the cluster goes away -------------------------------------------

rserve rbd:rbd/test
$PY -c 'import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.pread(4096, 0)' "$suri" ||
    fail "a read before the OSD goes"
ceph_kill_osd
$PY - "$suri" <<'PY' || fail "the cluster's disappearance"
import sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
t0 = time.monotonic()
errs = 0
for i in range(20):
    try:
        h.pread(4096, (i + 4096) * 4096)
    except nbd.Error:
        errs += 1
took = time.monotonic() - t0
assert errs == 20, "%d of 20 reads failed with the OSD gone" % errs
# The first waits for the OSD timeout (10 s); the rest fail at once,
# but for a probe every 2 s.
assert took < 60, "the reads took %.1f s" % took
h.shutdown()
PY
grep -q "stopped answering" "$tmp/serve.err" ||
    fail "no line about the lost cluster: $(cat "$tmp/serve.err")"
runserve
exit 0
