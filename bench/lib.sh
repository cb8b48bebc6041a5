# Shared helpers of the benchmarks (sourced).
#
#   median               the median of the numbers on stdin (spaces or lines)
#   pairmed "A..." "B..."  the median over rounds of Bi / Ai
#   random_image PATH BYTES   real data (no holes), left in the page cache

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
