#!/bin/bash
# test-log-cli: rumpblk log info and replay on synthetic write logs that
# synthlog.py makes from lib/log/format.h (independently of the C
# reader): exact counts, byte-exact replays for every --to form against
# a Python model, a recorded-zero base without --base, rbh128 computed by
# the Python port of lib/log/hash.c, and every refusal with its message,
# its exit status, no OUT left behind and the base unchanged.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires jq --version
requires python3 --version

H="python3 $RUMPBLK_SRCDIR/tests/integration/synthlog.py"
cd "$tmp" || fail "cd $tmp"

# expect RC PATTERN CMD...: rumpblk CMD exits RC, stderr matches PATTERN.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	"$RUMPBLK" "$@" >out.txt 2>err.txt
	rc=$?
	[ "$rc" = "$want" ] ||
	    fail "rumpblk $*: exit $rc, expected $want; stderr: $(cat err.txt)"
	grep -qE -- "$pat" err.txt ||
	    fail "rumpblk $*: stderr does not match '$pat': $(cat err.txt)"
}

# A 256 KiB base of random bytes, and a log of it (S = 512).  Layout:
#   entry 0 @512    mark "start"
#   entry 1 @1024   write sectors 0-7          (4096 bytes of data)
#   entry 2 @5632   FUA write sectors 16-19    (2048)
#   entry 3 @8192   FLUSH
#   entry 4 @8704   discard sectors 4-11
#   entry 5 @9216   FLUSH
#   entry 6 @9728   write sectors 300-315      (8192)
#   entry 7 @18432  mark "end"; the file ends at 18944
# Epochs: [0-3] and [4-5] end at FLUSHes, [6-7] at the end: 3.
head -c 262144 /dev/urandom >base.img || fail "base.img"
basesum=$(md5sum <base.img)
entries='[["mark","start"],["write",0,8,1],["fua",16,4,2],["flush"],
    ["discard",4,8],["flush"],["write",300,16,3],["mark","end"]]'
mklog() {	# mklog LOG EXTRA-SPEC-MEMBERS
	echo "{\"sector_size\":512,\"base\":{\"path\":\"/srv/disk.img\"," \
	    "\"image\":\"base.img\",\"time\":1700000000},\"entries\":$entries" \
	    "${2:+,$2}}" >spec.json
	$H make spec.json "$1" || fail "synthlog.py make $1 ($2)"
}
mklog run.log
[ "$(stat -c %s run.log)" = 18944 ] ||
    fail "synthlog.py: run.log is $(stat -c %s run.log) bytes, not 18944"

# --- info ---
json=$("$RUMPBLK" log info --json run.log) || fail "log info --json"
want='{"sector_size":512,"entries":8,"writes":3,"bytes_written":14336,
    "fua_writes":1,"discards":1,"bytes_discarded":4096,"flushes":2,
    "epochs":3,"marks":[{"name":"start","entry":0},{"name":"end","entry":7}]}'
got=$(echo "$json" | jq -c '{sector_size,entries,writes,bytes_written,
    fua_writes,discards,bytes_discarded,flushes,epochs,marks}')
[ "$got" = "$(echo "$want" | jq -c .)" ] ||
    fail "log info counts: $got; expected $want"
[ "$(echo "$json" | jq -cS '{sector_size,entries,writes,bytes_written,
    fua_writes,discards,bytes_discarded,flushes,epochs,marks}')" = \
    "$($H counts run.log | jq -cS .)" ] ||
    fail "log info disagrees with synthlog.py counts: $json"
hash=$($H hash base.img) || fail "synthlog.py hash"
[ "$(echo "$json" | jq -c .base)" = \
    "{\"path\":\"/srv/disk.img\",\"path_truncated\":false,\"size\":262144,\"hash\":\"$hash\",\"zero\":false,\"began\":1700000000}" ] ||
    fail "log info base: $json (Python's hash $hash)"
[ "$(echo "$json" | jq '[.file_size, .log_end]' -c)" = "[18944,18944]" ] ||
    fail "log info sizes: $json"
"$RUMPBLK" log info run.log >info.txt || fail "log info"
for line in "entries:       8" "writes:        3, 14336 bytes (1 FUA)" \
    "epochs:        3 (with writes or discards)" "  entry 7      end" \
    "base hash:     $hash" "logging began: 2023-11-14 22:13:20 UTC"; do
	grep -qxF -- "$line" info.txt || fail "log info: no '$line': $(cat info.txt)"
done

# --- replay, every --to form, against the model ---
n=0
for to in "" entry=0 entry=1 entry=5 entry=8 flush=1 flush=2 mark=start \
    mark=end; do
	n=$((n + 1))
	"$RUMPBLK" log replay --json --base base.img --out "out$n.img" \
	    ${to:+--to "$to"} run.log >rep.json 2>err.txt ||
	    fail "replay --to '$to': $(cat err.txt)"
	$H model run.log base.img "model$n.img" $to || fail "model $to"
	cmp "out$n.img" "model$n.img" ||
	    fail "replay --to '$to' differs from the model"
	case $to in
	"") want=8 ;; entry=*) want=${to#entry=} ;; flush=1) want=4 ;;
	flush=2) want=6 ;; mark=start) want=1 ;; mark=end) want=8 ;;
	esac
	[ "$(jq .entries rep.json)" = "$want" ] ||
	    fail "replay --to '$to': $(cat rep.json), expected $want entries"
done
[ "$(jq -c '[.writes,.bytes_written,.fua_writes,.discards,.flushes,.marks]' \
    rep.json)" = "[3,14336,1,1,2,2]" ] || fail "replay counts: $(cat rep.json)"
cmp -s out1.img base.img && fail "the replay changed nothing"
cmp out2.img base.img || fail "--to entry=0 is not a copy of the base"
[ "$(md5sum <base.img)" = "$basesum" ] || fail "replay changed base.img"

# --- 4 KiB sectors, overlapping writes, a write of zeroes (a hole) ---
head -c 1048576 /dev/urandom >base4k.img || fail "base4k.img"
cat >spec4k.json <<EOF
{"sector_size":4096,"base":{"path":"b","image":"base4k.img"},"entries":[
 ["write",10,20,7],["flush"],["write",15,2,8],["zero",12,40],["fua",0,1,9],
 ["discard",100,50],["write",110,3,10],["mark","m"],["flush"],["write",255,1,11]]}
EOF
$H make spec4k.json run4k.log || fail "make run4k.log"
for to in "" flush=1 mark=m entry=4; do
	rm -f out.img
	"$RUMPBLK" log replay --base base4k.img --out out.img \
	    ${to:+--to "$to"} run4k.log >/dev/null 2>err.txt ||
	    fail "4K replay --to '$to': $(cat err.txt)"
	$H model run4k.log base4k.img model.img $to || fail "model 4K"
	cmp out.img model.img || fail "4K replay --to '$to' differs"
done
[ "$("$RUMPBLK" log info --json run4k.log | jq -c '[.epochs,.writes]')" = \
    "[3,6]" ] || fail "4K info: $("$RUMPBLK" log info --json run4k.log)"

# --- a base recorded as all zero: no --base needed; OUT is sparse ---
zhash=$(head -c 2097152 /dev/zero | $H hash /dev/stdin) || fail "zero hash"
cat >specz.json <<EOF
{"sector_size":512,"base":{"path":"z","size":2097152,"zero":true,
 "hash":"${zhash#rbh128:}"},"entries":[["write",8,4,5],["flush"],["discard",9,1]]}
EOF
$H make specz.json zero.log || fail "make zero.log"
json=$("$RUMPBLK" log replay --json --out z.img zero.log) ||
    fail "replay onto a zero base"
$H model zero.log - zmodel.img || fail "model zero"
cmp z.img zmodel.img || fail "zero-base replay differs from the model"
[ "$(echo "$json" | jq -r .base_copy)" = zero ] || fail "zero base: $json"
[ "$(stat -c %b z.img)" -lt 1024 ] ||
    fail "zero-base OUT is not sparse: $(stat -c %b z.img) blocks"
[ "$("$RUMPBLK" log info --json zero.log | jq .base.zero)" = true ] ||
    fail "info: zero base"
# With --base: a zero image of that size passes the hash check.
truncate -s 2M zbase.img || fail "zbase.img"
"$RUMPBLK" log replay --base zbase.img --out z2.img zero.log >/dev/null ||
    fail "replay onto an explicit zero base"
cmp z2.img zmodel.img || fail "explicit zero base differs"

# --- a base whose size is not a multiple of the sector: the tail ---
head -c 1000 /dev/urandom >odd.img || fail "odd.img"
cat >specodd.json <<EOF
{"sector_size":512,"base":{"path":"odd","image":"odd.img"},
 "entries":[["write",1,1,4],["discard",0,1]]}
EOF
$H make specodd.json odd.log || fail "make odd.log"
"$RUMPBLK" log replay --base odd.img --out oddout.img odd.log >/dev/null \
    2>err.txt || fail "odd-sized base: $(cat err.txt)"
$H model odd.log odd.img oddmodel.img || fail "model odd"
cmp oddout.img oddmodel.img || fail "odd-sized replay differs"

# --- refusals: message, status, no OUT, the base untouched ---
echo "precious" >exists.img
sum=$(md5sum <exists.img)
expect 1 "^rumpblk log: exists.img: already exists; replay never overwrites" \
    log replay --base base.img --out exists.img run.log
[ "$(md5sum <exists.img)" = "$sum" ] || fail "OUT that existed was changed"

head -c 131072 /dev/urandom >small.img
expect 1 "small.img: 131072 bytes, but the base of run.log \(/srv/disk.img\) was 262144 bytes" \
    log replay --base small.img --out r.img run.log
[ -e r.img ] && fail "OUT left after a size mismatch"

# The same size, one byte flipped.
python3 -c 'import sys; b = bytearray(open("base.img", "rb").read())
b[1000] ^= 0xff; open("other.img", "wb").write(b)' || fail "other.img"
ohash=$($H hash other.img)
expect 1 "other.img: hash $ohash, but the base of run.log \(/srv/disk.img\) had $hash" \
    log replay --base other.img --out r.img run.log
[ -e r.img ] && fail "OUT left after a hash mismatch"

expect 2 "--to 'foo=1' is not entry=N, flush=N or mark=NAME" \
    log replay --base base.img --out r.img --to foo=1 run.log
expect 2 "--to 'entry=x': 'x' is not a number" \
    log replay --base base.img --out r.img --to entry=x run.log
expect 2 "--to 'flush=0': '0' is not a number from 1" \
    log replay --base base.img --out r.img --to flush=0 run.log
expect 2 "--out OUT is required" log replay --base base.img run.log
expect 1 "run.log: --to mark=nope: the log has no mark named 'nope'" \
    log replay --base base.img --out r.img --to mark=nope run.log
expect 1 "run.log: --to entry=9: the log has only 8 entries" \
    log replay --base base.img --out r.img --to entry=9 run.log
expect 1 "run.log: --to flush=3: the log has only 2 FLUSH entries" \
    log replay --base base.img --out r.img --to flush=3 run.log
[ -e r.img ] && fail "OUT left after a bad --to"

# A truncated log: entry 6's data is cut short.  A prefix before it
# still replays.
mklog trunc.log '"truncate":612'
expect 1 "^rumpblk log: trunc.log: entry 6 \(byte 9728\): data runs past the end of the file \(truncated log\?\)$" \
    log replay --base base.img --out r.img trunc.log
[ -e r.img ] && fail "OUT left after a truncated log"
expect 1 "trunc.log: entry 6 \(byte 9728\): data runs past the end" \
    log info trunc.log
"$RUMPBLK" log replay --base base.img --out r6.img --to entry=6 trunc.log \
    >/dev/null || fail "a prefix of a truncated log"
cmp r6.img out4.img || fail "the prefix of a truncated log differs"
# The super counts more entries than the file holds.
mklog more.log '"nr_entries":9'
expect 1 "more.log: entry 8 \(byte 18944\): the super counts 9 entries, but the file ends at byte 18944 \(truncated log\?\)" \
    log info more.log

# Corrupt entries, each named with its index and byte offset.
bad() {	# bad POKE-OFFSET HEX PATTERN
	mklog bad.log "\"poke\":[[$1,\"$2\"]]"
	expect 1 "^rumpblk log: bad.log: $3" log info bad.log
	expect 1 "^rumpblk log: bad.log: $3" \
	    log replay --base base.img --out r.img bad.log
	[ -e r.img ] && fail "OUT left after bad.log ($3)"
}
bad 8804 01 "entry 4 \(byte 8704\): the entry sector is not zero after its header \(byte 100 of it\)"
bad 0 00 "not a write log \(magic 0x006a736677736800"
bad 8 02 "log version 2 \(this rumpblk reads version 1\)"
bad 25 00 "sector size 0 is not a power of two"
bad 8208 20 "entry 3 \(byte 8192\): unknown flags 0x20"
bad 8200 01 "entry 3 \(byte 8192\): a FLUSH with 1 sectors"
bad 1032 00 "entry 1 \(byte 1024\): a write of no sectors"
bad 536 e001 "entry 0 \(byte 512\): a mark name of 480 bytes, longer than a sector of 512 bytes holds \(479\)"
bad 536 0a "entry 0 \(byte 512\): the mark name holds a NUL byte"
bad 9728 fe01 "entry 6 \(byte 9728\): bytes 261120 to 269312 are past the end of the base \(262144 bytes\)"
bad 40 01 "the super sector has stray data at byte 40"

# No base recorded: --base is needed, and entries must fit it.
cat >specnb.json <<EOF
{"sector_size":512,"base":null,"entries":[["write",0,2,1],["write",600,1,2]]}
EOF
$H make specnb.json nb.log || fail "make nb.log"
[ "$("$RUMPBLK" log info --json nb.log | jq -c .base)" = null ] ||
    fail "info: a base that is not recorded"
"$RUMPBLK" log info nb.log | grep -qx "base:          not recorded" ||
    fail "info text: a base that is not recorded"
expect 1 "nb.log: records no base image; give --base IMAGE" \
    log replay --out r.img nb.log
expect 1 "nb.log: entry 1 \(byte 2048\): bytes 307200 to 307712 are past the end of base.img \(262144 bytes\)" \
    log replay --base base.img --out r.img nb.log
"$RUMPBLK" log replay --base base.img --out nbout.img --to entry=1 nb.log \
    >/dev/null || fail "replay without a recorded base"
$H model nb.log base.img nbmodel.img entry=1 || fail "model nb"
cmp nbout.img nbmodel.img || fail "replay without a recorded base differs"
[ -e r.img ] && fail "OUT left behind"
[ "$(md5sum <base.img)" = "$basesum" ] || fail "the refusals changed base.img"

# --- a log the server wrote: the same counts and image ---
# (libnbd's Python module is the system python3's; a python3 earlier in
# PATH may lack it.)
if /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
	cat >client.py <<'EOF'
import nbd, subprocess, sys
uri, rumpblk, ctl = sys.argv[1:4]
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"a" * 4096, 0)
h.flush()
subprocess.run([rumpblk, "ctl", ctl, "mark", "one"], check=True,
               stdout=subprocess.DEVNULL)
h.pwrite(b"b" * 8192, 65536, nbd.CMD_FLAG_FUA)
h.zero(8192, 1024)
h.flush()
h.shutdown()
EOF
	cp base.img srv.img || fail "srv.img"
	"$RUMPBLK" serve --socket "$tmp/s" --control "$tmp/ctl" \
	    --write-log srv.log --run "/usr/bin/python3 client.py \"\$uri\" \
	    '$RUMPBLK' '$tmp/ctl'" srv.img >serve.out 2>&1 ||
	    fail "serve --write-log: $(cat serve.out)"
	json=$("$RUMPBLK" log info --json srv.log) || fail "info on srv.log"
	# Entries: write, FLUSH, mark, FUA write, write of zeroes, FLUSH.
	[ "$(echo "$json" | jq -c '[.writes, .fua_writes, .flushes, .marks,
	    .epochs, .base.hash]')" = \
	    "[3,1,2,[{\"name\":\"one\",\"entry\":2}],2,\"$hash\"]" ] ||
	    fail "info on the server's log: $json"
	"$RUMPBLK" log replay --base base.img --out srvout.img srv.log \
	    >/dev/null || fail "replay of the server's log"
	cmp srvout.img srv.img ||
	    fail "the server's log does not replay to its image"
	"$RUMPBLK" log replay --base base.img --out srv1.img --to mark=one \
	    srv.log >/dev/null || fail "replay of the server's log to its mark"
	cp base.img one.img || fail "one.img"
	head -c 4096 /dev/zero | tr '\0' a |
	    dd of=one.img conv=notrunc 2>/dev/null || fail "one.img"
	cmp srv1.img one.img || fail "the server's log to mark=one differs"
else
	echo "$0: no nbd module for /usr/bin/python3: the part with a log" \
	    "the server wrote is skipped"
fi

# --- the command line ---
for c in "log --help" "log info --help" "log replay --help"; do
	# shellcheck disable=SC2086
	"$RUMPBLK" $c >help.txt 2>&1 || fail "rumpblk $c exits non-zero"
	grep -q "^usage: rumpblk log" help.txt || fail "rumpblk $c: $(cat help.txt)"
done
expect 2 "usage: rumpblk log info" log
expect 2 "log: unknown subcommand 'frob'" log frob
expect 2 "^rumpblk log info: unrecognized option '--bogus'" log info --bogus x
expect 2 "log info: expected one FILE" log info
expect 1 "missing.log: No such file or directory" log info missing.log
expect 1 "$tmp: is a directory, not a log" log info "$tmp"
exit 0
