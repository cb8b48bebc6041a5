#!/bin/bash
# test-crash-check: rumpblk crash-check on synthetic write logs that
# synthlog.py makes from the format (independently of the C reader):
#
#   - exact counts: three unflushed writes that do not overlap give 8
#     subset states and 4 prefix states; a FUA write in the middle
#     leaves 6 subsets; two writes to one sector give, under reorder, 5
#     possible states of which 3 distinct contents (the base's, each
#     write's) run and 2 are duplicates; sectors counts per sector;
#   - what a checker sees: $image and $uri hold the state (read through
#     both), and writes the checker makes do not reach the next state
#     or the base;
#   - the budget: more states than --max-states are sampled, the same
#     seed gives the same sample twice and another seed another;
#   - a careless workload (a commit marker written with its record and
#     no flush between; the checker wants "marker implies record") is
#     caught: exit 1, the state named, and its rebuild command makes a
#     file with the marker and without the record;
#   - refusals: an unknown model, a truncated log, a corrupt entry, a
#     base that is not the log's, --out that exists; IMAGE never changes.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires jq --version
requires nbdfuse --version
requires fusermount3 --version
requires nbdinfo --version
[ -c /dev/fuse ] || { echo "$0: test skipped: needs /dev/fuse"; exit 77; }

H="python3 $RUMPBLK_SRCDIR/tests/integration/synthlog.py"
cd "$tmp" || fail "cd $tmp"
export TMPDIR=$tmp

head -c 1048576 /dev/urandom >base.img || fail "base.img"
basesum=$(md5sum <base.img)

# mklog LOG ENTRIES: a log over base.img (hashed) with these entries.
mklog() {
	echo "{\"sector_size\":512,\"base\":{\"path\":\"base.img\"," \
	    "\"image\":\"base.img\"},\"entries\":$2}" >spec.json
	$H make spec.json "$1" || fail "synthlog.py make $1"
}

# check LOG MODEL [ARGS...]: crash-check --json with --check true into
# report.json; fails unless it exits 0.
check() {
	local log=$1 model=$2
	shift 2
	timeout -k 10 300 "$RUMPBLK" crash-check --log "$log" --base base.img \
	    --model "$model" --json "$@" >report.json 2>err.txt ||
	    fail "crash-check $log --model $model $*: exit $?: $(cat err.txt)"
}

# field JQ: one value of report.json.
field() {
	jq -r "$1" report.json
}

# want WHAT GOT EXPECTED
want() {
	[ "$2" = "$3" ] || fail "$1: $2, expected $3 ($(cat report.json))"
}

# --- exact counts ----------------------------------------------------

mklog three.log '[["write",0,8,1],["write",16,8,2],["write",32,8,3]]'
check three.log subset --check true
want "subset possible" "$(field '.epochs[0].possible')" 8
want "subset generated" "$(field '.epochs[0].generated')" 8
want "subset explored" "$(field '.epochs[0].explored')" 8
want "subset duplicates" "$(field '.epochs[0].duplicates')" 0
want "subset sampled" "$(field '.epochs[0].sampled')" false
want "subset failed" "$(field '.failed')" 0
check three.log prefix --check true
want "prefix possible" "$(field '.epochs[0].possible')" 4
want "prefix explored" "$(field '.epochs[0].explored')" 4

# A FUA write: a state with a later write has it.  Sets: {}, {0},
# {1}, {0,1}, {1,2}, {0,1,2}.
mklog fua.log '[["write",0,8,1],["fua",16,8,2],["write",32,8,3]]'
check fua.log subset --check true
want "FUA subset possible" "$(field '.epochs[0].possible')" 6
want "FUA subset explored" "$(field '.epochs[0].explored')" 6

# Two writes to one sector.  Under reorder: {}, {a}, {b}, {a,b}, {b,a}:
# 5 possible; the contents are the base's, a's and b's: 3 run, 2 are
# duplicates.  The checker records what it read through $image and
# through $uri.
mklog same.log '[["write",8,1,11],["write",8,1,12]]'
rm -f seen.txt
check same.log reorder --check 'a=$(dd if="$image" bs=512 skip=8 count=1 2>/dev/null | md5sum); b=$(nbdcopy "$uri" - | dd bs=512 skip=8 count=1 2>/dev/null | md5sum); [ "$a" = "$b" ] || exit 3; echo "$a" >>'"$tmp"'/seen.txt'
want "reorder possible" "$(field '.epochs[0].possible')" 5
want "reorder generated" "$(field '.epochs[0].generated')" 5
want "reorder explored" "$(field '.epochs[0].explored')" 3
want "reorder duplicates" "$(field '.epochs[0].duplicates')" 2
want "distinct contents seen" "$(sort -u seen.txt | wc -l)" 3
base8=$(dd if=base.img bs=512 skip=8 count=1 2>/dev/null | md5sum)
grep -qx -- "$base8" seen.txt || fail "no state had the base's sector 8"
$H model same.log base.img both.img || fail "synthlog.py model"
last8=$(dd if=both.img bs=512 skip=8 count=1 2>/dev/null | md5sum)
grep -qx -- "$last8" seen.txt || fail "no state had the last write's sector 8"
# subset of the same: {}, {a}, {b}, {a,b}: 4, and {a,b} is {b}.
check same.log subset --check true
want "same-sector subset possible" "$(field '.epochs[0].possible')" 4
want "same-sector subset duplicates" "$(field '.epochs[0].duplicates')" 1

# sectors: a two-sector write and a one-sector write over its second
# sector: sector 0 has {prefix, a}, sector 1 {prefix, a, b}: 6.
mklog sect.log '[["write",0,2,21],["write",1,1,22]]'
check sect.log sectors --check true
want "sectors possible" "$(field '.epochs[0].possible')" 6
want "sectors explored" "$(field '.epochs[0].explored')" 6

# Epochs: a flush between; the second epoch's empty set is the first's
# full set, a duplicate across epochs.
mklog two.log '[["write",0,8,1],["write",16,8,2],["flush"],["write",32,8,3]]'
check two.log subset --check true
want "epochs" "$(field '.epochs | length')" 2
want "epoch 1 explored" "$(field '.epochs[0].explored')" 4
want "epoch 2 possible" "$(field '.epochs[1].possible')" 2
want "epoch 2 duplicates" "$(field '.epochs[1].duplicates')" 1
want "epoch 2 flush entry" "$(field '.epochs[0].flush_entry')" 2

# --- what a checker may do -------------------------------------------

# It writes its state (a whole sector: the export's block size is the
# sector's, and nbdfuse keeps to it): the next state does not see it,
# nor the base.
rm -f marks.txt
check three.log subset --check 'od -An -tx1 -j 524288 -N 4 "$image" >>'"$tmp"'/marks.txt && head -c 512 /dev/urandom | dd of="$image" bs=512 seek=1024 conv=notrunc,fsync 2>/dev/null'
[ "$(sort -u marks.txt | wc -l)" = 1 ] ||
    fail "a checker's write reached another state: $(sort -u marks.txt)"
[ "$(md5sum <base.img)" = "$basesum" ] || fail "base.img changed"

# --- the budget and the seed -----------------------------------------

ents='['
for i in $(seq 0 11); do ents+="[\"write\",$((i * 16)),8,$((i + 1))],"; done
mklog twelve.log "${ents%,}]"
sample() {	# sample SEED OUT: the states run, by id and content
	rm -f "$2"
	check twelve.log subset --max-states 40 --seed "$1" --check 'echo "$state $(md5sum <"$image")" >>'"$tmp/$2"
	sort -o "$2" "$2"
}
sample 7 s7a.txt
want "sampled" "$(field '.epochs[0].sampled')" true
want "sampled possible" "$(field '.epochs[0].possible')" 4096
want "sampled generated" "$(field '.epochs[0].generated')" 40
sample 7 s7b.txt
sample 8 s8.txt
cmp -s s7a.txt s7b.txt || fail "the same seed drew different states"
cmp -s s7a.txt s8.txt && fail "seeds 7 and 8 drew the same states"

# --- a careless workload ---------------------------------------------

# Base zero.  The record at sector 100, then its commit marker at sector
# 0, with no flush between: "marker implies record" fails in the state
# that kept the marker and dropped the record.
head -c 1048576 /dev/zero >zero.img
echo '{"sector_size":512,"base":{"path":"zero.img","image":"zero.img"},
    "entries":[["write",100,1,31],["write",0,1,32],["flush"]]}' >spec.json
$H make spec.json careless.log || fail "synthlog.py make careless.log"
$H model careless.log zero.img full.img || fail "synthlog.py model"
dd if=full.img of=record.bin bs=512 skip=100 count=1 2>/dev/null
dd if=full.img of=marker.bin bs=512 count=1 2>/dev/null
cat >marker-implies-record.sh <<EOF
#!/bin/sh
dd if="\$image" of=m.bin bs=512 count=1 2>/dev/null
dd if="\$image" of=r.bin bs=512 skip=100 count=1 2>/dev/null
if cmp -s m.bin $tmp/marker.bin && ! cmp -s r.bin $tmp/record.bin; then
	echo "marker without its record"
	exit 1
fi
EOF
chmod +x marker-implies-record.sh
timeout -k 10 300 "$RUMPBLK" crash-check --log careless.log --base zero.img \
    --check "cd $tmp && ./marker-implies-record.sh" >report.txt 2>err.txt
rc=$?
[ "$rc" = 1 ] || fail "careless: exit $rc, expected 1: $(cat report.txt err.txt)"
grep -q "^FAILED state 1\.[0-9]* (epoch 1): kept entries 1; dropped 0" report.txt ||
    fail "careless: the failed state is not named: $(cat report.txt)"
grep -q "marker without its record" report.txt ||
    fail "careless: no checker output in the report: $(cat report.txt)"
rebuild=$(sed -n 's/^  rebuild: //p' report.txt | head -n 1)
[ -n "$rebuild" ] || fail "careless: no rebuild command: $(cat report.txt)"
rebuild=${rebuild//STATE.img/$tmp/state.img}
rebuild=${rebuild/#rumpblk /\"\$RUMPBLK\" }
eval "$rebuild" >/dev/null 2>err.txt || fail "rebuild: $rebuild: $(cat err.txt)"
dd if=state.img of=m.bin bs=512 count=1 2>/dev/null
dd if=state.img of=r.bin bs=512 skip=100 count=1 2>/dev/null
cmp -s m.bin marker.bin || fail "the rebuilt state has no marker"
cmp -s r.bin record.bin && fail "the rebuilt state has the record"
[ "$(stat -c %s state.img)" = 1048576 ] || fail "the rebuilt state's size"
# The same with --json: the failure's kept and dropped entries.
timeout -k 10 300 "$RUMPBLK" crash-check --log careless.log --base zero.img \
    --json --check "cd $tmp && ./marker-implies-record.sh" >report.json \
    2>err.txt
want "careless JSON failed" "$(field '.failed')" 1
want "careless JSON kept" "$(field '.failures[0].kept | join(",")')" 1
want "careless JSON dropped" "$(field '.failures[0].dropped | join(",")')" 0
want "careless JSON exit" "$(field '.failures[0].exit')" 1

# --- refusals --------------------------------------------------------

# expect RC PATTERN ARGS...: crash-check exits RC, stderr matches.
expect() {
	local want=$1 pat=$2 rc
	shift 2
	timeout -k 10 120 "$RUMPBLK" crash-check "$@" >out.txt 2>err.txt
	rc=$?
	[ "$rc" = "$want" ] ||
	    fail "crash-check $*: exit $rc, expected $want: $(cat err.txt)"
	grep -qE -- "$pat" err.txt ||
	    fail "crash-check $*: stderr does not match '$pat': $(cat err.txt)"
}
expect 2 "unknown model 'bogus'" --log three.log --base base.img \
    --model bogus --check true
expect 2 "--check CMD is needed" --log three.log --base base.img
cp three.log trunc.log
truncate -s -600 trunc.log
expect 1 "trunc.log: entry 2 .*" --log trunc.log --base base.img --check true
cp three.log poke.log
printf '\001' | dd of=poke.log bs=1 seek=$((512 + 4608 + 100)) conv=notrunc 2>/dev/null
expect 1 "poke.log: entry 1 \(byte 5120\)" --log poke.log --base base.img \
    --check true
head -c 1048576 /dev/urandom >other.img
expect 1 "three.log was recorded from a base with hash rbh128:[0-9a-f]{32}; other.img has rbh128:" \
    --log three.log --base other.img --check true
: >exists.img
expect 1 "--out exists.img: exists" --log three.log --base base.img \
    --state 1.0 --out exists.img
[ -s exists.img ] && fail "--out exists.img was written"
expect 2 "--state 9.0: no such state" --log three.log --base base.img \
    --state 9.0 --out new.img
[ -e new.img ] && fail "new.img made for a state that does not exist"
[ "$(md5sum <base.img)" = "$basesum" ] || fail "base.img changed"
ls "$tmp" | grep -q rumpblk-crash && fail "a work directory was left behind"
exit 0
