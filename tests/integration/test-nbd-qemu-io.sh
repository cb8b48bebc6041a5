#!/bin/bash
# test-nbd-qemu-io: qemu-io over NBD (nbd+unix URI, -f raw): pattern writes
# and reads at unaligned offsets, aio writes and reads completed by
# aio_flush, write-zeroes with and without unmap, discard.  The same
# commands run on a local copy through qemu's file driver give the
# reference; the served image must match it byte for byte.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires qemu-io --version

img=$tmp/disk.img
random_file "$img" $((8 << 20))
cp "$img" "$tmp/ref.img"

# Writes, then reads that verify them.  Offsets and lengths are not
# sector multiples on purpose.
writes=(
	"write -P 0xab 1000 3000"
	"write -P 0x5c 4095 1"
	"write -P 0x77 5119 1026"
	"aio_write -P 0x11 65536 131072"
	"aio_write -P 0x22 300001 5000"
	"aio_write -P 0x33 1048575 70000"
	"aio_flush"
	"write -z 2097152 1048576"
	"write -z 3146000 10000"
	"write -z -u 4194304 1048576"
	"discard 5242880 1048576"
	"write -P 0xee 8387584 1024"
	"flush"
)
reads=(
	"read -P 0xab 1000 3000"
	"read -P 0x5c 4095 1"
	"read -P 0x77 5119 1026"
	"aio_read -P 0x11 65536 131072"
	"aio_read -P 0x22 300001 5000"
	"aio_read -P 0x33 1048575 70000"
	"aio_flush"
	"read -P 0 2097152 1048576"
	"read -P 0 3146000 10000"
	"read -P 0 4194304 1048576"
	"read -P 0xee 8387584 1024"
)

printf '%s\n' "${writes[@]}" >"$tmp/w.cmds"
printf '%s\n' "${reads[@]}" >"$tmp/r.cmds"
cat "$tmp/w.cmds" "$tmp/r.cmds" >"$tmp/wr.cmds"

# qio.sh TARGET CMDFILE: run qemu-io on the commands, fail (1) if any
# command failed.  A script file, because --run hands its command to sh.
cat >"$tmp/qio.sh" <<'QIO'
#!/bin/bash
out=$(timeout 120 qemu-io -f raw -d unmap "$1" <"$2" 2>&1)
rc=$?
echo "$out" >>"${2%.cmds}.out"
if [ $rc != 0 ] || echo "$out" | grep -Eiq 'fail|error|mismatch'; then
	echo "qemu-io $1 <$2: status $rc"
	echo "$out" | grep -Ei 'fail|error|mismatch'
	exit 1
fi
QIO
chmod +x "$tmp/qio.sh"

"$tmp/qio.sh" "$tmp/ref.img" "$tmp/wr.cmds" ||
    fail "qemu-io on the local reference copy"
# What discard leaves is unspecified for NBD, but rumpblk punches a hole
# in a regular file and qemu's file driver does too: both read zeroes.
cmp -s <(head -c 1048576 /dev/zero) \
    <(tail -c +$((5242880 + 1)) "$tmp/ref.img" | head -c 1048576) ||
    fail "reference: discard did not leave zeroes (qemu file driver)"

# Over NBD: the writes and reads in one session, the reads again in a
# second one (what reached the server, not qemu's cache), and everything
# once more with the same results.
serve --socket "$tmp/s" --run "
	'$tmp/qio.sh' \"\$uri\" '$tmp/wr.cmds' || exit 11
	'$tmp/qio.sh' \"\$uri\" '$tmp/r.cmds' || exit 12
	'$tmp/qio.sh' \"\$uri\" '$tmp/wr.cmds' || exit 13" "$img"
rc=$?
[ $rc = 0 ] || fail "qemu-io over NBD: status $rc" \
    "(11 first session, 12 re-read, 13 again)"
cmp "$img" "$tmp/ref.img" ||
    fail "the served image differs from qemu's local reference"

# Read it all back through NBD too.
serve --socket "$tmp/s" --read-only --run \
    "qemu-img compare -f raw -F raw \"\$uri\" '$tmp/ref.img'" "$img" ||
    fail "qemu-img compare over a read-only export"
exit 0
