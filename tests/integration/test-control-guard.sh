#!/bin/bash
# test-control-guard: the control socket obeys its owner only (issue 14).
#
#   - `serve --control PATH` makes the socket mode 0600 under umask 000
#     and umask 0277, from the first moment it is at PATH (a watcher
#     polls for it), also when PATH's directory name is too long for the
#     private directory the socket is made in (the fallback); no
#     temporary directory is left next to it;
#   - a client running as nobody is refused: with the socket 0600 by the
#     file's mode (connect: EACCES), and, with the socket chmodded 0666
#     so that the mode lets anyone in and only the SO_PEERCRED check
#     stands, by the server: one JSON error line, and a line on the
#     server's stderr with the client's pid and uid;
#   - garbage, binary bytes, NULs, control bytes, empty lines, unknown
#     commands, lines of 4 KiB and 1 MiB, vanishing clients: one JSON
#     error per line, valid commands answered as ever
#     (control-guard.py hostile); at most 65536 commands on one
#     connection (many) and 16 clients at once (clients); the server
#     serves `rumpblk ctl stats` afterwards;
#   - a PATH that is a regular file, a directory, a symbolic link or a
#     live socket (another server's) is refused with one line naming the
#     path and why, and left as it was; a stale socket is replaced;
#   - the socket is removed when the server exits.
#
# It runs once, not per backend.  The nobody part needs root (setpriv);
# without it everything else runs and the test then exits 77.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
PATH=/usr/bin:/bin:$PATH
export PATH
requires /usr/bin/python3 --version
requires jq --version

py=$RUMPBLK_SRCDIR/tests/integration/control-guard.py

# nobody must reach the socket's directory: $tmp is 0700.
chmod 711 "$tmp"
pub=$tmp/pub
mkdir "$pub" && chmod 755 "$pub" || fail "cannot make $pub"

# start_ctl NAME CTLPATH UMASK: a server of $tmp/NAME.img with
# --control CTLPATH under UMASK; its pid in $srv_pid.
start_ctl() {
	local old
	truncate -s 4M "$tmp/$1.img"
	rm -f "$tmp/$1.pid"
	old=$(umask)
	umask "$3"
	start_server -P "$tmp/$1.pid" "$RUMPBLK" serve --socket "$tmp/$1.sock" \
	    --pidfile "$tmp/$1.pid" --control "$2" "$tmp/$1.img" \
	    2>"$tmp/$1.err"
	umask "$old"
	srv_pid=$(cat "$tmp/$1.pid")
}

# stop_ctl PID WHAT: SIGTERM, wait at most 30 s, want exit 0.
stop_ctl() {
	local i
	kill -TERM "$1" 2>/dev/null || fail "$2: the server is gone"
	for ((i = 0; i < 300; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && fail "$2: the server did not exit"
	wait "$1" || fail "$2: the server exited $? after SIGTERM"
}

# mode_is PATH WHAT: the socket at PATH is mode 0600.
mode_is_0600() {
	local m
	[ -S "$1" ] || fail "$2: $1 is not a socket"
	m=$(stat -c %a "$1")
	[ "$m" = 600 ] || fail "$2: $1 is mode $m, want 600"
}

no_leftovers() {
	local left
	left=$(find "$1" -maxdepth 1 -name '.rumpblk-*')
	[ -z "$left" ] || fail "$2: left behind: $left"
}

# --- mode 0600 from the first moment, whatever the umask ---------------

ctl=$pub/ctl
/usr/bin/python3 "$py" watch "$ctl" 30 >"$tmp/first" &
watcher=$!
cleanup_fn "kill $watcher 2>/dev/null; wait $watcher 2>/dev/null"
start_ctl a "$ctl" 000
apid=$srv_pid
wait "$watcher" || fail "the watcher: $(cat "$tmp/first")"
[ "$(cat "$tmp/first")" = 600 ] ||
    fail "umask 000: the socket first appeared mode $(cat "$tmp/first")"
mode_is_0600 "$ctl" "umask 000"
no_leftovers "$pub" "umask 000"
out=$(timeout 60 "$RUMPBLK" ctl "$ctl" stats) || fail "ctl stats: $out"
jq -e '.ok == true and (.stats | type == "object")' <<<"$out" >/dev/null ||
    fail "ctl stats answered $out"

start_ctl c "$pub/ctl277" 0277
mode_is_0600 "$pub/ctl277" "umask 0277"
timeout 60 "$RUMPBLK" ctl "$pub/ctl277" stats >/dev/null ||
    fail "umask 0277: the owner cannot use the socket"
stop_ctl "$srv_pid" "umask 0277"
[ -e "$pub/ctl277" ] && fail "umask 0277: the socket was left behind"

# A directory name so long that the private directory's socket would not
# fit in sun_path (108 bytes), while PATH does: the socket is bound at
# PATH directly, fchmod before bind keeping it 0600.
pad=$((95 - ${#tmp} - 1))
if [ "$pad" -ge 1 ]; then
	long=$tmp/$(printf 'd%.0s' $(seq "$pad"))
	mkdir "$long" || fail "mkdir $long"
	start_ctl d "$long/c" 000
	mode_is_0600 "$long/c" "a long directory name"
	no_leftovers "$long" "a long directory name"
	timeout 60 "$RUMPBLK" ctl "$long/c" stats >/dev/null ||
	    fail "a long directory name: ctl stats"
	stop_ctl "$srv_pid" "a long directory name"
	[ -e "$long/c" ] && fail "a long directory name: the socket was left"
else
	echo "note: \$tmp is too long to test the long-directory fallback"
fi

# --- another user: refused by the mode, then by SO_PEERCRED ------------

nobody_skipped=
# An array, not a function: "${nob[@]}" CMD & is CMD's own pid in $!.
nob=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
if [ "$(id -u)" != 0 ] || ! "${nob[@]}" true 2>/dev/null; then
	nobody_skipped="needs root and setpriv to run a client as nobody"
else
	nuid=$(id -u nobody)
	# The client: rumpblk ctl if nobody may run it, else Python (the
	# build directory may be private).
	if "${nob[@]}" "$RUMPBLK" ctl --help >/dev/null 2>&1; then
		client=("$RUMPBLK" ctl "$ctl" stats)
	else
		client=(/usr/bin/python3 - one "$ctl")
		echo "note: nobody cannot run $RUMPBLK; using a Python client"
	fi
	# run_nobody OUT: the client as nobody (Python reads the helper
	# from stdin, opened here), bounded; pid in $npid, exit status in
	# $nrc.
	run_nobody() {
		local i
		"${nob[@]}" "${client[@]}" >"$1" 2>&1 <"$py" &
		npid=$!
		for ((i = 0; i < 600; i++)); do
			kill -0 "$npid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$npid" 2>/dev/null; then
			kill "$npid"
			wait "$npid"
			fail "the client as nobody hung"
		fi
		wait "$npid"
		nrc=$?
	}

	# The mode alone keeps nobody out.
	run_nobody "$tmp/nob1"
	[ "$nrc" != 0 ] || fail "nobody used a 0600 socket: $(cat "$tmp/nob1")"
	grep -qE 'Permission denied|EACCES' "$tmp/nob1" ||
	    fail "nobody on a 0600 socket: $(cat "$tmp/nob1")"

	# Only SO_PEERCRED stands: the mode lets anyone connect.
	chmod 0666 "$ctl"
	run_nobody "$tmp/nob2"
	chmod 0600 "$ctl"
	[ "$nrc" != 0 ] || fail "nobody was served: $(cat "$tmp/nob2")"
	jq -e --argjson u "$nuid" '.ok == false and (.error |
	    contains("refused: uid \($u) may not use this control socket"))' \
	    <"$tmp/nob2" >/dev/null ||
	    fail "nobody's refusal is not the JSON error: $(cat "$tmp/nob2")"
	grep -q -- "--control $ctl: refused a connection from pid $npid uid $nuid gid " \
	    "$tmp/a.err" ||
	    fail "the server did not log the refusal of pid $npid uid $nuid:" \
	    "$(cat "$tmp/a.err")"
	timeout 60 "$RUMPBLK" ctl "$ctl" stats >/dev/null ||
	    fail "the owner is not served after refusing nobody"
fi

# --- bad input, bounds ------------------------------------------------

timeout -k 5 300 /usr/bin/python3 "$py" hostile "$ctl" ||
    fail "bad input (see FAIL above); server: $(cat "$tmp/a.err")"
timeout -k 5 300 /usr/bin/python3 "$py" many "$ctl" 65536 ||
    fail "commands per connection (see FAIL above)"
timeout -k 5 120 /usr/bin/python3 "$py" clients "$ctl" 16 ||
    fail "clients at once (see FAIL above)"
"$RUMPBLK" ctl "$ctl" $'stats\nfault clear' >/dev/null 2>"$tmp/err"
[ $? = 2 ] || fail "ctl took a command with a newline"
out=$(timeout 60 "$RUMPBLK" ctl "$ctl" stats) ||
    fail "ctl stats after the bad input: $out"
jq -e '.ok == true' <<<"$out" >/dev/null || fail "ctl stats answered $out"
kill -0 "$apid" || fail "the server is gone"

# --- what is at PATH already -------------------------------------------

# refused PATH WHY: serve --control PATH exits 1 with a line naming PATH
# and WHY, and serves nothing.
refused() {
	rm -f "$tmp/b.sock"
	truncate -s 4M "$tmp/b.img"
	timeout -k 5 60 "$RUMPBLK" serve --socket "$tmp/b.sock" \
	    --control "$1" "$tmp/b.img" >/dev/null 2>"$tmp/b.err"
	local rc=$?
	[ "$rc" = 1 ] || fail "--control $1 ($2): exit $rc: $(cat "$tmp/b.err")"
	[ "$(grep -c -- "--control" "$tmp/b.err")" = 1 ] &&
	    grep -qxF -- "rumpblk: --control $1: $2" "$tmp/b.err" ||
	    fail "--control $1: want one line '... $2': $(cat "$tmp/b.err")"
	[ -e "$tmp/b.sock" ] && fail "--control $1: served anyway"
	no_leftovers "$pub" "--control $1"
}

printf 'precious\n' >"$pub/file"
chmod 644 "$pub/file"
before=$(stat -c '%i %s %Y %a' "$pub/file")
refused "$pub/file" "File exists"
[ "$(stat -c '%i %s %Y %a' "$pub/file")" = "$before" ] &&
    [ "$(cat "$pub/file")" = precious ] || fail "the regular file changed"

mkdir "$pub/dir" && touch "$pub/dir/x"
refused "$pub/dir" "Is a directory"
[ -d "$pub/dir" ] && [ -e "$pub/dir/x" ] || fail "the directory changed"

ln -s file "$pub/link"
refused "$pub/link" "File exists"
[ "$(readlink "$pub/link")" = file ] || fail "the symbolic link changed"

refused "$ctl" "Address already in use"
mode_is_0600 "$ctl" "after a second server tried it"
timeout 60 "$RUMPBLK" ctl "$ctl" stats >/dev/null ||
    fail "the first server's socket stopped answering"

# A stale socket (nobody listens): replaced, and removed at exit.
/usr/bin/python3 "$py" stale "$pub/stale" || fail "cannot make a stale socket"
[ -S "$pub/stale" ] || fail "no stale socket"
start_ctl e "$pub/stale" 000
mode_is_0600 "$pub/stale" "a replaced stale socket"
timeout 60 "$RUMPBLK" ctl "$pub/stale" stats >/dev/null ||
    fail "the socket that replaced a stale one does not answer"
stop_ctl "$srv_pid" "stale"
[ -e "$pub/stale" ] && fail "the replacing socket was left behind"

stop_ctl "$apid" "the first server"
[ -e "$ctl" ] && fail "the control socket was left behind"
no_leftovers "$pub" "at the end"

if [ -n "$nobody_skipped" ]; then
	echo "$0: everything else passed; skipped: $nobody_skipped"
	exit 77
fi
exit 0
