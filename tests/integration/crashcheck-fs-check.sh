#!/bin/bash
# crashcheck-fs-check.sh KIND MANIFEST MARKS [SEED]: the checker
# test-crash-check-fs and -sqlite give crash-check, run once per crash
# state with $image and $epoch_end set.  e2fsck -fy on $image must exit 0
# or 1 (errors corrected); then, mounted read-only through a loop device:
#   KIND files   crashcheck-fs.py verify-files finds every file made
#                durable before the state's epoch ended
#   KIND sqlite  a copy of the database directory (SQLite recovers the
#                WAL, which needs a writable place) passes issue 11's
#                powercut-sqlite.py verify, with POWERCUT_MARKS=MARKS:
#                integrity ok, every commit acknowledged before the
#                epoch ended there (SEED: the run's)
# The loop device and the mount are undone on every path.
set -u
kind=$1 manifest=$2 marks=$3 seed=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
: "${image:?crash-check sets image}" "${epoch_end:?crash-check sets epoch_end}"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/crashcheck.XXXXXX") || exit 2
mnt=$work/mnt
loop=
cleanup() {
	if mountpoint -q "$mnt"; then
		umount "$mnt" || umount -l "$mnt"
	fi
	[ -n "$loop" ] && losetup -d "$loop"
	rm -rf "$work"
}
trap cleanup EXIT
mkdir "$mnt" || exit 2
e2fsck -fy "$image" >"$work/fsck.log" 2>&1
st=$?
if [ $st -gt 1 ]; then
	echo "e2fsck -fy exited $st:"
	tail -n 20 "$work/fsck.log"
	exit 1
fi
loop=$(losetup -f --show "$image") || { echo "losetup $image failed"; exit 2; }
if ! mount -o ro "$loop" "$mnt"; then
	echo "mount -o ro after e2fsck -fy failed"
	exit 1
fi
case $kind in
files)
	/usr/bin/python3 "$here/crashcheck-fs.py" verify-files "$mnt" \
	    "$manifest" "$marks" "$epoch_end"
	;;
sqlite)
	if [ ! -e "$mnt/db/test.db" ]; then
		# Before the database was made durable: nothing to require
		# but that no commit was acknowledged by then.
		POWERCUT_MARKS=$marks /usr/bin/python3 -c '
import json, os, sys
at = {m["name"]: m["entry"] for m in json.load(open(sys.argv[1]))["marks"]}
n = sum(1 for k, v in at.items() if k.startswith("c-") and
        v < int(os.environ["epoch_end"]))
print("no database; %d commit(s) required" % n)
sys.exit(1 if n else 0)' "$marks"
		exit
	fi
	cp -a "$mnt/db" "$work/db" || exit 2
	POWERCUT_MARKS=$marks /usr/bin/python3 "$here/powercut-sqlite.py" \
	    verify "$work/db/test.db" "$manifest" "$seed"
	;;
esac
