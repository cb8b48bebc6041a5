# Shared helpers of the benchmarks (sourced).
#
#   median               the median of the numbers on stdin (spaces or lines)
#   pairmed "A..." "B..."  the median over rounds of Bi / Ai
#   random_image PATH BYTES   real data (no holes), left in the page cache
#   nbd_start SERVER DIR IMAGE BYTES   start an NBD server on DIR/s (pidfile
#                        DIR/pid, log DIR/server.log) in the background and
#                        wait for it: rumpblk (serve, with $RUMPBLK_ARGS),
#                        rumpblk-copy (the same with --copy-reads), nbdkit
#                        (file plugin), ceiling (nbdkit null), qemu-nbd;
#                        sets srvpid (ours) and spid (the server's, whose
#                        CPU time is measured).  Uses the caller's die.
#   nbd_stop             stop the server nbd_start started

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {
	if (NR == 0) print 0; else print a[int((NR + 1) / 2)] }'; }

pairmed() {
	awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " ");
	    split(b, y, " "); for (i = 1; i <= n; i++) if (x[i] > 0)
	    print y[i] / x[i] }' | median
}

random_image() {
	head -c "$2" /dev/urandom >"$1" || return 1
	cat "$1" >/dev/null
}

nbd_start() {
	local name=$1 dir=$2 img=$3 bytes=$4 i
	local sock=$dir/s pid=$dir/pid log=$dir/server.log
	rm -f "$sock" "$pid"
	case $name in
	rumpblk | rumpblk-copy)
		local copy=
		[ "$name" = rumpblk-copy ] && copy=--copy-reads
		# shellcheck disable=SC2086
		"$RUMPBLK" serve --socket "$sock" --pidfile "$pid" $copy \
		    ${RUMPBLK_ARGS:-} "$img" 2>"$log" &
		;;
	nbdkit)
		nbdkit -f -U "$sock" -P "$pid" file "$img" 2>"$log" &
		;;
	ceiling)
		nbdkit -f -U "$sock" -P "$pid" null "$bytes" 2>"$log" &
		;;
	qemu-nbd)
		# -t: stay up between clients; -e: connections allowed at
		# once (2 fio jobs); writeback cache like the others (page
		# cache, flush on request).
		qemu-nbd -f raw -k "$sock" --aio=io_uring --cache=writeback \
		    -t -e 8 --pid-file="$pid" "$img" 2>"$log" &
		;;
	*) die "unknown server $name" ;;
	esac
	srvpid=$!
	for ((i = 0; i < 300; i++)); do
		[ -s "$pid" ] && [ -S "$sock" ] && break
		kill -0 $srvpid 2>/dev/null || die "$name exited: $(cat "$log")"
		sleep 0.1
	done
	[ -s "$pid" ] || die "$name did not start within 30 s"
	spid=$(cat "$pid")
}

nbd_stop() {
	kill "$srvpid" 2>/dev/null
	wait "$srvpid" 2>/dev/null
	srvpid=
}
