#!/bin/bash
# test-nbd-backing: "rumpblk serve NBD-URI" puts its layers in front of
# another NBD server (issue 13), chained in front of "nbdkit memory" and
# of "qemu-nbd" with a qcow2 image:
#
#   - what the remote offers comes through: nbdinfo's size, flags and
#     map on the chain; "rumpblk info URI" names the remote;
#   - data: nbdcopy with 4 connections writes a random file through the
#     chain, and the remote itself (read directly) and qemu-img compare
#     against the local file agree, for both remotes;
#   - reads of 64 KiB or more are lent as pipes and spliced on: reads
#     of random sizes and places match the local copy, and --stats
#     counts lent bytes (none with --copy-reads);
#   - a fault rule fires as on a file (the 3rd read fails, the others
#     do not);
#   - --write-cache and a power cut (model lose): a write acknowledged
#     but not flushed is not on the remote afterwards, a flushed one is;
#   - the remote goes away mid-run: requests fail with EIO at once (the
#     client's reads return errors within seconds, no hang), the server
#     says so on stderr; the remote comes back on the same socket: the
#     connection is regained and reads work again;
#   - bad input: an unparsable URI, an unreachable server, a socket that
#     does not exist, --write-cache on a read-only remote, --create with
#     a URI: each exits 1 or 2 with one line naming what failed.
# Servers bind Unix sockets only and are ended by PID.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdkit --version
requires nbdinfo --version
requires nbdcopy --version
requires qemu-img --version
requires qemu-nbd --version
requires /usr/bin/python3 -c 'import nbd'

PY=/usr/bin/python3
SIZE=$((64 << 20))
nk=$tmp/nk.sock
s=$tmp/s
ctl=$tmp/ctl
rpids=()
cleanup_remotes() {
	local p
	for p in "${rpids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
}
cleanup_fn cleanup_remotes

# remote_nbdkit: nbdkit memory on $nk, its pid in $nkpid.
remote_nbdkit() {
	local i
	rm -f "$nk" "$tmp/nk.pid"
	nbdkit -f -U "$nk" -P "$tmp/nk.pid" memory "$SIZE" \
	    2>"$tmp/nbdkit.err" &
	nkpid=$!
	rpids+=("$nkpid")
	for ((i = 0; i < 100; i++)); do
		[ -s "$tmp/nk.pid" ] && return 0
		sleep 0.1
	done
	fail "nbdkit did not start: $(cat "$tmp/nbdkit.err")"
}

# chain URI [serve options...]: rumpblk serve in front of URI on $s.
chain() {
	local uri=$1
	shift
	rm -f "$s"
	start_server -P "$tmp/pid" "$RUMPBLK" serve --socket "$s" \
	    --pidfile "$tmp/pid" "$@" "$uri" 2>>"$tmp/serve.err"
	spid=$(cat "$tmp/pid")
}

unchain() {
	stop_nbd "$spid" "the chain" ||
	    fail "the chain exited $? on SIGTERM: $(cat "$tmp/serve.err")"
}

nkuri="nbd+unix:///?socket=$nk"
suri="nbd+unix:///?socket=$s"

# --- in front of nbdkit memory ---------------------------------------

remote_nbdkit
"$RUMPBLK" info "$nkuri" >"$tmp/info.txt" || fail "rumpblk info $nkuri"
grep -q "^type: *NBD export" "$tmp/info.txt" ||
    fail "info: not an NBD export: $(cat "$tmp/info.txt")"
# One data connection per two CPUs by default, 1 to 4.
want=$(( $(nproc) / 2 ))
[ $want -lt 1 ] && want=1
[ $want -gt 4 ] && want=4
[ $want = 1 ] && want="1 data connection" || want="$want data connections"
grep -Eq "^remote: .*connected; $want and one for block status; flush yes, FUA yes" \
    "$tmp/info.txt" || fail "info: the remote line: $(cat "$tmp/info.txt")"
RUMPBLK_NBD_CONNECTIONS=2 "$RUMPBLK" info "$nkuri" | grep -q "; 2 data connections and one" ||
    fail "RUMPBLK_NBD_CONNECTIONS=2: $(RUMPBLK_NBD_CONNECTIONS=2 "$RUMPBLK" info "$nkuri" 2>&1)"
for bad in 0 5 two; do
	RUMPBLK_NBD_CONNECTIONS=$bad "$RUMPBLK" info "$nkuri" >"$tmp/out" 2>"$tmp/err" &&
	    fail "RUMPBLK_NBD_CONNECTIONS='$bad' was taken: $(cat "$tmp/out")"
	grep -q "RUMPBLK_NBD_CONNECTIONS=$bad: want 1 to 4 data connections" "$tmp/err" ||
	    fail "RUMPBLK_NBD_CONNECTIONS='$bad': $(cat "$tmp/err")"
	[ "$(wc -l <"$tmp/err")" = 1 ] ||
	    fail "RUMPBLK_NBD_CONNECTIONS='$bad': more than one line: $(cat "$tmp/err")"
done
"$RUMPBLK" info --json "$nkuri" | jq -e '.backend == "nbd" and
    .size == '"$SIZE"' and (.remote | test("block status yes"))' \
    >/dev/null || fail "info --json: $("$RUMPBLK" info --json "$nkuri")"

chain "$nkuri"
nbdinfo --json "$suri" >"$tmp/nbdinfo.json" || fail "nbdinfo on the chain"
jq -e '.exports[0]["export-size"] == '"$SIZE"' and
    .exports[0].can_flush and .exports[0].can_fua and
    .exports[0].can_trim and .exports[0].can_zero' "$tmp/nbdinfo.json" \
    >/dev/null || fail "nbdinfo on the chain: $(cat "$tmp/nbdinfo.json")"
head -c "$SIZE" /dev/urandom >"$tmp/data" || fail "random data"
nbdcopy -C 4 "$tmp/data" "$suri" || fail "nbdcopy -C 4 into the chain"
nbdcopy "$nkuri" "$tmp/direct" || fail "nbdcopy out of nbdkit"
cmp -s "$tmp/data" "$tmp/direct" || fail "nbdkit does not hold what was" \
    "written through the chain"
qemu-img compare -f raw -F raw "$suri" "$tmp/data" >/dev/null ||
    fail "qemu-img compare: the chain and the local copy differ"
# Block status comes through: a trimmed range reads as zero, a hole.
$PY - "$suri" <<'PY' || fail "trim and block status through the chain"
import sys, nbd
h = nbd.NBD()
h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
h.connect_uri(sys.argv[1])
h.trim(1 << 20, 8 << 20)
h.flush()
seen = []
h.block_status(1 << 20, 8 << 20,
               lambda ctx, off, ents, err: seen.extend(ents))
assert seen[1] & 1, "the trimmed range is not a hole: %r" % seen[:4]
assert h.pread(4096, 8 << 20) == bytes(4096)
h.shutdown()
PY
unchain
dd if=/dev/zero of="$tmp/data" bs=1M seek=8 count=1 conv=notrunc \
    status=none || fail "zeroing the local copy"

# Reads of 64 KiB or more go from the remote's socket to the client's
# by splice, through a pipe the read is lent as (RUMPBLK_B_LOAN_FD):
# reads of random sizes and places (nbd-loan.py: 512 bytes to 1 MiB, 64
# in flight) each match the local copy, and --stats says bytes were
# lent; with --copy-reads, none.
for mode in lend copy; do
	opts=(--stats "$tmp/$mode.json")
	[ "$mode" = copy ] && opts+=(--copy-reads)
	chain "$nkuri" "${opts[@]}"
	timeout -k 10 120 $PY "$RUMPBLK_SRCDIR/tests/integration/nbd-loan.py" \
	    reads "$suri" "$tmp/data" 3 >"$tmp/$mode.out" ||
	    fail "$mode: reads through the chain: $(cat "$tmp/$mode.out")"
	unchain
	echo "$mode: $(cat "$tmp/$mode.out"), read $(jq .bytes_read \
	    "$tmp/$mode.json"), lent $(jq .bytes_lent "$tmp/$mode.json")"
done
jq -e '.bytes_lent > 0' "$tmp/lend.json" >/dev/null ||
    fail "no read was lent as a pipe: $(cat "$tmp/lend.json")"
jq -e '.bytes_lent == 0' "$tmp/copy.json" >/dev/null ||
    fail "--copy-reads lent bytes: $(cat "$tmp/copy.json")"

# A fault rule: the 3rd read fails, the others do not.
chain "$nkuri" --fault "error,op=read,nth=3"
$PY - "$suri" <<'PY' || fail "a fault rule over the NBD backing"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
res = []
for i in range(5):
    try:
        h.pread(4096, i * 4096)
        res.append("ok")
    except nbd.Error as e:
        res.append("err")
assert res == ["ok", "ok", "err", "ok", "ok"], res
h.shutdown()
PY
unchain

# --write-cache and a power cut: the flushed write is on the remote, the
# unflushed one is not.
chain "$nkuri" --write-cache 16M --control "$ctl"
$PY - "$suri" "$nkuri" "$RUMPBLK" "$ctl" <<'PY' || fail "a power cut over the NBD backing"
import subprocess, sys, nbd
uri, remote, rumpblk, ctl = sys.argv[1:5]
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"F" * 4096, 0)
h.flush()
h.pwrite(b"U" * 4096, 8192)
subprocess.run([rumpblk, "ctl", ctl, "power-cut", "model=lose"],
               check=True, stdout=subprocess.DEVNULL)
r = nbd.NBD()
r.connect_uri(remote)
assert r.pread(4096, 0) == b"F" * 4096, "the flushed write is lost"
assert r.pread(4096, 8192) != b"U" * 4096, "the unflushed write survived"
r.shutdown()
PY
unchain

# The remote goes away mid-run, then comes back.
chain "$nkuri"
# As a crash would: SIGKILL (nbdkit may wait for its clients on SIGTERM).
kill -KILL "$nkpid" && wait "$nkpid" 2>/dev/null
$PY - "$suri" <<'PY' || fail "the remote's disappearance"
import sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
t0 = time.monotonic()
errs = 0
for i in range(20):
    try:
        h.pread(4096, i * 4096)
    except nbd.Error:
        errs += 1
assert errs == 20, "%d of 20 reads failed with the remote gone" % errs
assert time.monotonic() - t0 < 20, "the reads took %.1f s" % (
    time.monotonic() - t0)
h.shutdown()
PY
grep -q "connection lost" "$tmp/serve.err" ||
    fail "no line about the lost remote: $(cat "$tmp/serve.err")"
remote_nbdkit
for ((i = 0; i < 200; i++)); do
	grep -q "connection regained" "$tmp/serve.err" && break
	sleep 0.1
done
grep -q "connection regained" "$tmp/serve.err" ||
    fail "the remote came back, the chain did not: $(cat "$tmp/serve.err")"
nbdcopy "$suri" "$tmp/after" || fail "reading after the reconnection"
unchain

# --- in front of qemu-nbd with a qcow2 image -------------------------

qemu-img create -q -f qcow2 "$tmp/disk.qcow2" "$SIZE" || fail "qcow2"
qs=$tmp/q.sock
qemu-nbd -t -k "$qs" -f qcow2 "$tmp/disk.qcow2" 2>"$tmp/qemu-nbd.err" &
rpids+=($!)
for ((i = 0; i < 100; i++)); do
	[ -S "$qs" ] && break
	sleep 0.1
done
[ -S "$qs" ] || fail "qemu-nbd did not start: $(cat "$tmp/qemu-nbd.err")"
chain "nbd+unix:///?socket=$qs"
nbdcopy -C 4 "$tmp/data" "$suri" || fail "nbdcopy -C 4 into qemu-nbd's chain"
qemu-img compare -f raw -F raw "$suri" "$tmp/data" >/dev/null ||
    fail "qemu-img compare: qemu-nbd's chain and the local copy differ"
unchain
kill "${rpids[-1]}" && wait "${rpids[-1]}" 2>/dev/null
qemu-img compare -f qcow2 -F raw "$tmp/disk.qcow2" "$tmp/data" >/dev/null ||
    fail "the qcow2 image does not hold what was written through the chain"

# --- bad input -------------------------------------------------------

expect_one_error 1 "nbd://\[bad: .*parse URI" info 'nbd://[bad'
expect_one_error 1 "nbd://127.0.0.1:1/: .*Connection refused" info nbd://127.0.0.1:1/
expect_one_error 1 "nbd\+unix:///\?socket=$tmp/none.sock: .*(No such file|connect)" \
    serve --socket "$tmp/x.sock" "nbd+unix:///?socket=$tmp/none.sock"
remote_nbdkit
rm -f "$nk.ro"
nbdkit -f -r -U "$nk.ro" -P "$tmp/ro.pid" memory 1M 2>/dev/null &
rpids+=($!)
for ((i = 0; i < 100; i++)); do
	[ -s "$tmp/ro.pid" ] && break
	sleep 0.1
done
expect_one_error 1 "write-cache: nbd\+unix:///\?socket=.*nk.sock.ro is read-only" serve --socket "$tmp/x.sock" \
    --write-cache 1M "nbd+unix:///?socket=$nk.ro"
expect_one_error 2 "create makes a local file" serve --socket "$tmp/x.sock" \
    --create --size 1M "$nkuri"
exit 0
