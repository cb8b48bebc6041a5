#!/bin/bash
# test-nbd-nbdinfo: what "rumpblk serve" advertises, read by nbdinfo --json
# in captive mode: export size, flags (read-only, flush, FUA, trim, zero,
# multi-conn), block sizes (minimum = sector size, preferred >= 4096,
# maximum 32 MiB), the --export name in --list, the captive-mode
# environment over a Unix socket and over TCP on a port the server picks.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
. "$RUMPBLK_SRCDIR/tests/integration/nbd-functions.sh"
requires nbdinfo --version
requires jq --version

img=$tmp/disk.img
truncate -s 5M "$img"
sock=$tmp/s

# field FILE JQ-EXPR: one value of the first export.
field() {
	jq -r ".exports[0].$2" "$1"
}
expect() {
	local v
	v=$(field "$1" "$2")
	[ "$v" = "$3" ] || fail "$4: $2 is '$v', expected '$3' ($(cat "$1"))"
}

serve --socket "$sock" --export disk0 \
    --run "nbdinfo --json \"\$uri\" >'$tmp/rw.json' &&
	   nbdinfo --list --json \"\$uri\" >'$tmp/list.json' &&
	   echo \"\$unixsocket\" >'$tmp/env'" "$img" ||
    fail "captive nbdinfo exited $?"
j=$tmp/rw.json
expect "$j" '"export-size"' 5242880 read-write
expect "$j" is_read_only false read-write
expect "$j" can_flush true read-write
expect "$j" can_fua true read-write
expect "$j" can_trim true read-write
expect "$j" can_zero true read-write
expect "$j" can_multi_conn true read-write
expect "$j" block_size_minimum 512 read-write
expect "$j" block_size_maximum $((32 << 20)) read-write
pref=$(field "$j" block_size_preferred)
[ "$pref" -ge 4096 ] && [ $((pref & (pref - 1))) = 0 ] ||
    fail "preferred block size $pref is not a power of two >= 4096"
[ "$(jq -r .protocol "$j")" = newstyle-fixed ] || fail "protocol: $(cat "$j")"
grep -q '"base:allocation"' "$j" || fail "no base:allocation context: $(cat "$j")"
jq -r '.exports[]."export-name"' "$tmp/list.json" | grep -qx disk0 ||
    fail "--list does not show --export disk0: $(cat "$tmp/list.json")"
[ "$(cat "$tmp/env")" = "$sock" ] || fail "\$unixsocket is '$(cat "$tmp/env")'"

# --read-only advertises READ_ONLY.
serve --socket "$sock" --read-only \
    --run "nbdinfo --json \"\$uri\" >'$tmp/ro.json'" "$img" ||
    fail "captive nbdinfo (read-only) exited $?"
expect "$tmp/ro.json" is_read_only true read-only
expect "$tmp/ro.json" '"export-size"' 5242880 read-only

# --sector-size 4096: the minimum block size follows it.
serve --socket "$sock" --sector-size 4096 \
    --run "nbdinfo --json \"\$uri\" >'$tmp/4k.json'" "$img" ||
    fail "captive nbdinfo (sector size 4096) exited $?"
expect "$tmp/4k.json" block_size_minimum 4096 "sector size 4096"
pref=$(field "$tmp/4k.json" block_size_preferred)
[ "$pref" -ge 4096 ] || fail "sector size 4096: preferred $pref"

# --offset/--size: the export is the window.
serve --socket "$sock" --offset 1M --size 2M \
    --run "nbdinfo --json \"\$uri\" >'$tmp/win.json'" "$img" ||
    fail "captive nbdinfo (window) exited $?"
expect "$tmp/win.json" '"export-size"' $((2 << 20)) "--offset 1M --size 2M"

# TCP on a port the server picks: $port and $uri name it.
serve --listen 127.0.0.1:0 \
    --run "echo \"\$port\" >'$tmp/port' && echo \"\$uri\" >'$tmp/uri' &&
	   nbdinfo --json \"\$uri\" >'$tmp/tcp.json'" "$img" ||
    fail "captive nbdinfo over TCP exited $?"
port=$(cat "$tmp/port")
[ "$port" -gt 0 ] 2>/dev/null && [ "$port" -lt 65536 ] ||
    fail "\$port is '$port'"
case $(cat "$tmp/uri") in
nbd://127.0.0.1:$port*) ;;
*) fail "TCP \$uri is '$(cat "$tmp/uri")'" ;;
esac
expect "$tmp/tcp.json" '"export-size"' 5242880 TCP

# The exit status of the captive command is the server's.
serve --socket "$sock" --run 'exit 3' "$img"
[ $? = 3 ] || fail "--run 'exit 3' did not exit 3"
exit 0
