# A throwaway single-node Ceph cluster for the RBD tests and benchmark
# (sourced after tests/functions.sh): one monitor and one OSD on a
# memstore, bound to 127.0.0.1 on two free ports, no mgr, no systemd,
# everything in one directory under $tmp, stopped (the OSD, then the
# monitor, by the PIDs in their pid files) and removed at exit on every
# path.  The facts it follows: /work/shared/notes/ceph-single-node.md.
#
#   ceph_requires          skip (77) without Debian's Ceph tools
#   ceph_start [AUTH]      start the cluster (AUTH: cephx, the default, or
#                          none); skip (77) only when a daemon cannot
#                          start here, printing the daemon's error; any
#                          other failure fails the test
#   ceph_stop              stop and remove it (idempotent; registered as
#                          a cleanup by ceph_start)
#   ceph_kill_osd          end the OSD now, to lose the cluster mid-run
#   ceph_cli ARGS...       ceph -c $CEPH_CONF ARGS, time-bounded
#   rbd_cli ARGS...        rbd -c $CEPH_CONF ARGS, time-bounded
#
#   $CEPH_DIR              the cluster's directory
#   $CEPH_CONF             its ceph.conf (client.admin's key in
#                          $CEPH_DIR/keyring with cephx)
#   $CEPH_MON_ADDR         v1 address of the monitor (HOST:PORT)
#
# The functions of tests/functions.sh (requires, fail, cleanup_fn) do the
# rest.  The ceph CLI is Debian's python script: /usr/bin/python3 runs it,
# whatever python3 comes first in PATH (a pyenv one lacks rados).

CEPH_DIR=
CEPH_CONF=
CEPH_MON_ADDR=
CEPH_TIMEOUT=${CEPH_TIMEOUT:-60}
_ceph_mon_pidf= _ceph_osd_pidf=

ceph_requires() {
	requires ceph-mon --version
	requires ceph-osd --version
	requires monmaptool --help
	requires command -v ceph-authtool
	requires /usr/bin/python3 -c 'import rados, rbd'
	requires rbd --version
	requires uuidgen
}

ceph_cli() {
	timeout -k 5 "$CEPH_TIMEOUT" /usr/bin/python3 /usr/bin/ceph \
	    -c "$CEPH_CONF" --connect-timeout 30 "$@"
}

rbd_cli() {
	timeout -k 5 "$CEPH_TIMEOUT" rbd -c "$CEPH_CONF" "$@"
}

# _ceph_ports: two free TCP ports on 127.0.0.1, "P2 P1".
_ceph_ports() {
	/usr/bin/python3 - <<'PY'
import socket
s = [socket.socket() for _ in range(2)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))
PY
}

# _ceph_skip WHAT LOG: a daemon could not start here: say why, skip.
_ceph_skip() {
	echo "$0: test skipped: $1 could not start here:"
	[ -f "$2" ] && sed 's/^/  /' "$2" | tail -n 20
	exit 77
}

# _ceph_kill PIDFILE: end the daemon it names, wait (bounded) for it.
_ceph_kill() {
	local pid i
	[ -n "$1" ] && [ -s "$1" ] || return 0
	pid=$(cat "$1")
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "ceph daemon $pid still running 10 s after SIGTERM: killed" >&2
	kill -KILL "$pid" 2>/dev/null
}

# ceph_kill_osd: end the OSD now (the cluster "goes away"); ceph_stop
# then has only the monitor to stop.
ceph_kill_osd() {
	_ceph_kill "$_ceph_osd_pidf"
	_ceph_osd_pidf=
}

ceph_stop() {
	[ -n "$CEPH_DIR" ] || return 0
	# One at a time: the OSD, then the monitor (both at once can hang
	# the OSD).
	_ceph_kill "$_ceph_osd_pidf"
	_ceph_kill "$_ceph_mon_pidf"
	rm -rf "$CEPH_DIR"
	CEPH_DIR=
}

# _ceph_wait_pidfile FILE SECS: true once FILE names a live process.
_ceph_wait_pidfile() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

ceph_start() {
	local auth=${1:-cephx} fsid ports p1 p2 uuid id i D keyopt
	fsid=$(uuidgen)
	D=$tmp/ceph
	CEPH_DIR=$D
	CEPH_CONF=$D/ceph.conf
	cleanup_fn ceph_stop
	mkdir -p "$D/log" "$D/run" "$D/mon.a" || fail "mkdir $D"
	ports=$(_ceph_ports) || fail "no free ports"
	p2=${ports% *} p1=${ports#* }
	CEPH_MON_ADDR=127.0.0.1:$p1
	_ceph_mon_pidf=$D/run/mon.a.pid
	cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
run dir = $D/run
crash dir = $D/crash
keyring = $D/keyring
log file = $D/log/\$cluster-\$name.log
mon cluster log file = $D/log/\$cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.05
[mon]
mon data = $D/mon.\$id
keyring = $D/mon.\$id/keyring
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/mon.\$id.pid
[osd]
osd data = $D/osd.\$id
keyring = \$osd_data/keyring
osd objectstore = memstore
memstore device bytes = 1G
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/osd.\$id.pid
EOF
	if [ "$auth" = cephx ]; then
		ceph-authtool --create-keyring "$D/mon.keyring" --gen-key \
		    -n mon. --cap mon 'allow *' >"$D/log/authtool.log" 2>&1 &&
		ceph-authtool --create-keyring "$D/keyring" --gen-key \
		    -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
		    --cap mgr 'allow *' >>"$D/log/authtool.log" 2>&1 &&
		ceph-authtool "$D/mon.keyring" --import-keyring \
		    "$D/keyring" >>"$D/log/authtool.log" 2>&1 ||
		    fail "ceph-authtool: $(cat "$D/log/authtool.log")"
	fi
	monmaptool --create --fsid "$fsid" --enable-all-features \
	    --set-min-mon-release pacific \
	    --addv a "[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]" "$D/monmap" \
	    >"$D/log/monmaptool.log" 2>&1 ||
	    fail "monmaptool: $(cat "$D/log/monmaptool.log")"
	keyopt=()
	[ "$auth" = cephx ] && keyopt=(--keyring "$D/mon.keyring")
	ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$D/monmap" \
	    "${keyopt[@]}" >"$D/log/mon-mkfs.out" 2>&1 ||
	    _ceph_skip "ceph-mon (mkfs)" "$D/log/mon-mkfs.out"
	ceph-mon -c "$CEPH_CONF" -i a >"$D/log/mon.out" 2>&1 ||
	    _ceph_skip ceph-mon "$D/log/mon.out"
	_ceph_wait_pidfile "$_ceph_mon_pidf" 30 || {
		cat "$D/log/ceph-mon.a.log" >>"$D/log/mon.out" 2>/dev/null
		_ceph_skip ceph-mon "$D/log/mon.out"
	}
	uuid=$(uuidgen)
	id=$(ceph_cli osd new "$uuid" 2>"$D/log/osd-new.err") ||
	    fail "ceph osd new: $(cat "$D/log/osd-new.err")"
	_ceph_osd_pidf=$D/run/osd.$id.pid
	mkdir -p "$D/osd.$id"
	ceph-osd -c "$CEPH_CONF" -i "$id" --mkfs --no-mon-config \
	    --osd-uuid "$uuid" ${keyopt:+--mkkey} \
	    >"$D/log/osd-mkfs.out" 2>&1 ||
	    _ceph_skip "ceph-osd (mkfs)" "$D/log/osd-mkfs.out"
	if [ "$auth" = cephx ]; then
		ceph_cli auth add "osd.$id" osd 'allow *' \
		    mon 'allow profile osd' -i "$D/osd.$id/keyring" \
		    >"$D/log/auth-add.out" 2>&1 ||
		    fail "ceph auth add osd.$id: $(cat "$D/log/auth-add.out")"
	fi
	ceph-osd -c "$CEPH_CONF" -i "$id" >"$D/log/osd.out" 2>&1 ||
	    _ceph_skip ceph-osd "$D/log/osd.out"
	_ceph_wait_pidfile "$_ceph_osd_pidf" 30 || {
		tail -n 20 "$D/log/ceph-osd.$id.log" >>"$D/log/osd.out" \
		    2>/dev/null
		_ceph_skip ceph-osd "$D/log/osd.out"
	}
	for ((i = 0; i < 600; i++)); do
		ceph_cli osd dump --format json 2>/dev/null |
		    jq -e '.osds[0].up == 1 and .osds[0].in == 1' \
		    >/dev/null 2>&1 && return 0
		kill -0 "$(cat "$_ceph_osd_pidf")" 2>/dev/null || {
			tail -n 20 "$D/log/ceph-osd.$id.log" \
			    >>"$D/log/osd.out" 2>/dev/null
			_ceph_skip ceph-osd "$D/log/osd.out"
		}
		sleep 0.1
	done
	fail "the OSD is not up and in after 60 s: $(ceph_cli osd dump 2>&1)"
}
