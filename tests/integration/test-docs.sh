#!/bin/bash
# test-docs: the documentation tells the truth about the code.
#
#   - both man pages pass `mandoc -T lint` at warning level;
#   - every subcommand `rumpblk --help` lists has a working
#     `rumpblk CMD --help` (exit 0), a `.Ss CMD` section in rumpblk(1) and
#     a `.Cm CMD` in its SYNOPSIS, and every long option that
#     `rumpblk CMD --help` prints is in that section;
#   - every function, struct, macro and enum constant of
#     include/rumpblk/rumpblk.h, and every RUMP_BLK* variable the library
#     reads, is in librumpblk(3), each function with a NAME entry, a
#     SYNOPSIS line and one `.It Fn` entry of its own text;
#   - the C examples of README.md and librumpblk(3) (between BEGIN/END
#     EXAMPLE markers) compile with -Werror against a staged install,
#     found with `pkg-config --cflags --libs rumpblk` as a user would, and
#     print what the documents say they print;
#   - the install links man3/FUNCTION.3 to librumpblk.3 for each function.
#
# It runs once, not per backend.  Every problem is listed before it fails.
. "$RUMPBLK_SRCDIR/tests/functions.sh"

src=$RUMPBLK_SRCDIR
build=${RUMPBLK_BUILDDIR:?RUMPBLK_BUILDDIR must name the build directory}
man1=$src/man/rumpblk.1
man3=$src/man/librumpblk.3
hdr=$src/include/rumpblk/rumpblk.h
problems=0

problem() {
	echo "test-docs: $*" >&2
	problems=$((problems + 1))
}

# --- the pages are well-formed ---------------------------------------

for page in "$man1" "$man3"; do
	if ! mandoc -T lint -W warning "$page" >"$tmp/lint" 2>&1; then
		problem "mandoc -T lint ${page#$src/}: $(cat "$tmp/lint")"
	fi
done

# --- rumpblk(1) ------------------------------------------------------

# section CMD: the source of rumpblk(1) from ".Ss CMD" to the next .Ss/.Sh
section() {
	awk -v cmd="$1" '
	    /^\.S[sh] / && f { exit }
	    /^\.Ss / {
		t = $0; sub(/^\.Ss +/, "", t); sub(/^(rumpblk|Nm) +/, "", t)
		sub(/^Cm +/, "", t)
		if (t == cmd) f = 1
	    }
	    f { print }' "$man1"
}

# documents OPT FILE: FILE has --OPT as mdoc (Fl Fl opt, Fl -opt) or text
documents() {
	grep -qE -- "(Fl Fl |Fl -|\\\\-\\\\-|--)$1([^A-Za-z0-9-]|\$)" "$2"
}

"$RUMPBLK" --help >"$tmp/help" 2>&1 || problem "rumpblk --help exits non-zero"
cmds=$(awk '/^Commands:/ { f = 1; next }
    f && /^  [a-z]/ { print $1 }
    f && /^$/ { exit }' "$tmp/help")
[ -n "$cmds" ] || problem "no commands found in 'rumpblk --help' (expected" \
    "a 'Commands:' list of '  NAME  summary' lines): $(cat "$tmp/help")"
for opt in help version; do
	grep -q -- "--$opt" "$tmp/help" ||
	    problem "'rumpblk --help' does not mention --$opt"
	documents "$opt" "$man1" || problem "rumpblk(1) does not document --$opt"
done
"$RUMPBLK" --version >/dev/null 2>&1 || problem "rumpblk --version exits non-zero"

for cmd in $cmds; do
	if ! "$RUMPBLK" "$cmd" --help >"$tmp/cmdhelp" 2>&1; then
		problem "'rumpblk $cmd --help' exits non-zero"
	elif ! [ -s "$tmp/cmdhelp" ]; then
		problem "'rumpblk $cmd --help' prints nothing"
	fi
	section "$cmd" >"$tmp/section"
	if ! [ -s "$tmp/section" ]; then
		problem "rumpblk(1) has no '.Ss $cmd' section under COMMANDS"
		continue
	fi
	awk '/^\.Sh SYNOPSIS/ { f = 1; next } /^\.Sh / { f = 0 } f' "$man1" |
	    grep -qE "^\.Cm $cmd( |\$)" ||
	    problem "the SYNOPSIS of rumpblk(1) has no '.Cm $cmd'"
	for opt in $(grep -oE -- '--[A-Za-z0-9][A-Za-z0-9-]*' "$tmp/cmdhelp" |
	    sed 's/^--//' | sort -u); do
		[ "$opt" = help ] && continue
		documents "$opt" "$tmp/section" ||
		    problem "'rumpblk $cmd --help' prints --$opt, but the" \
		    "'$cmd' section of rumpblk(1) does not document it"
	done
done

# --- librumpblk(3) ---------------------------------------------------

# Strip comments so that names in them do not count as declarations.
sed 's,/\*.*\*/,,; /\/\*/,/\*\//d' "$hdr" >"$tmp/hdr"
funcs=$(grep -oE '\brumpblk_[a-z0-9_]+ *\(' "$tmp/hdr" | tr -d ' (' | sort -u)
[ -n "$funcs" ] || problem "no functions found in ${hdr#$src/}"
for f in $funcs; do
	grep -qE "^\.Nm $f( ,)?\$" "$man3" ||
	    problem "librumpblk(3): $f is not in NAME ('.Nm $f ,')"
	awk '/^\.Sh SYNOPSIS/ { f = 1; next } /^\.Sh / { f = 0 } f' "$man3" |
	    grep -qE "^\.(Fn|Fo) $f( |\$)" ||
	    problem "librumpblk(3): $f is not in SYNOPSIS ('.Fn $f ...')"
	n=$(grep -cE "^\.It Fn $f( |\$)" "$man3")
	[ "$n" = 1 ] ||
	    problem "librumpblk(3): $f has $n '.It Fn $f' entries, expected 1"
done
for s in $(grep -oE '^struct rumpblk_[a-z0-9_]+ *\{' "$tmp/hdr" |
    sed -E 's/^struct //; s/ *\{//'); do
	grep -qE "^\.Vt struct $s ;" "$man3" ||
	    problem "librumpblk(3): struct $s is not in SYNOPSIS"
	grep -qE "^struct $s \{" "$man3" ||
	    problem "librumpblk(3): struct $s has no definition shown"
done
for e in $(grep -oE '^enum rumpblk_[a-z0-9_]+ *\{' "$tmp/hdr" |
    sed -E 's/^enum //; s/ *\{//'); do
	grep -qE "^\.Vt enum $e ;" "$man3" ||
	    problem "librumpblk(3): enum $e is not in SYNOPSIS"
done
# Every macro (but the include guard) and enum constant.
consts=$( { grep -oE '^#define RUMPBLK_[A-Z0-9_]+' "$tmp/hdr" |
    sed 's/^#define //'; grep -oE '^	RUMPBLK_[A-Z0-9_]+' "$tmp/hdr" |
    tr -d '\t'; } | grep -v '^RUMPBLK_RUMPBLK_H$' | sort -u)
for c in $consts; do
	grep -qE "(^|[^A-Z0-9_])$c([^A-Z0-9_]|\$)" "$man3" ||
	    problem "librumpblk(3) does not mention $c"
done
for v in $(grep -rhoE 'RUMP_BLK[A-Z_]+' "$src/lib" | sort -u); do
	awk '/^\.Sh ENVIRONMENT/ { f = 1; next } /^\.Sh / { f = 0 } f' \
	    "$man3" | grep -qE "^\.It Ev $v\$" ||
	    problem "librumpblk(3): ENVIRONMENT has no '.It Ev $v'"
done

# --- the examples compile and run ------------------------------------

# A staged install, found through pkg-config as a user would find it.
dest=$tmp/dest
if ! meson install -C "$build" --destdir "$dest" --no-rebuild --quiet \
    >"$tmp/install.log" 2>&1; then
	fail "meson install --destdir failed: $(tail -n 20 "$tmp/install.log")"
fi
pc=$(find "$dest" -name rumpblk.pc | head -n 1)
[ -n "$pc" ] || fail "the staged install has no rumpblk.pc"
export PKG_CONFIG_PATH=${pc%/*} PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs rumpblk) ||
    fail "pkg-config --cflags --libs rumpblk failed on the staged install"
libdir=$(pkg-config --libs-only-L rumpblk | sed 's/^ *-L//; s/ *$//')
[ -e "$libdir/librumpblk.so" ] || fail "no librumpblk.so in $libdir"
# `man FUNCTION` finds librumpblk(3): man/meson.build links every function.
man3dir=$(find "$dest" -type d -path '*/man3' | head -n 1)
for f in $funcs; do
	[ "$(readlink "$man3dir/$f.3" 2>/dev/null)" = librumpblk.3 ] ||
	    problem "the install has no man3/$f.3 link to librumpblk.3" \
	    "(add $f to man/meson.build)"
done
# A sanitizer build's library needs the sanitizer at link time too.
san=$(meson introspect "$build" --buildoptions 2>/dev/null | python3 -c '
import json, sys
for o in json.load(sys.stdin):
    if o["name"] == "b_sanitize" and o["value"] not in ("none", ""):
        print("-fsanitize=" + o["value"])' 2>/dev/null)

# example NAME FILE AWK-EXTRACTOR EXPECTED-OUTPUT
example() {
	local name=$1 file=$2 prog=$3 want=$4 img=$tmp/$1.img
	awk "$prog" "$file" >"$tmp/$name.c"
	if ! [ -s "$tmp/$name.c" ]; then
		problem "${file#$src/}: no example between BEGIN/END EXAMPLE"
		return
	fi
	# shellcheck disable=SC2086
	if ! cc -std=gnu11 -Wall -Wextra -Werror $san -o "$tmp/$name" \
	    "$tmp/$name.c" $flags >"$tmp/cc.log" 2>&1; then
		problem "the example of ${file#$src/} does not compile:" \
		    "$(cat "$tmp/cc.log")"
		return
	fi
	"$RUMPBLK" create "$img" 1M || fail "rumpblk create $img"
	if ! LD_LIBRARY_PATH=$libdir "$tmp/$name" "$img" >"$tmp/$name.out" \
	    2>&1; then
		problem "the example of ${file#$src/} fails:" \
		    "$(cat "$tmp/$name.out")"
	elif [ "$(cat "$tmp/$name.out")" != "$want" ]; then
		problem "the example of ${file#$src/} prints" \
		    "'$(cat "$tmp/$name.out")', the document says '$want'"
	fi
}

# README.md: the ```c block between the markers.
example readme "$src/README.md" '
    /<!-- BEGIN EXAMPLE/ { f = 1; next } /<!-- END EXAMPLE/ { f = 0 }
    f && !/^```/' \
    "$(sed -n 's/^ *\.\/hello disk\.img *# *//p' "$src/README.md")"
# librumpblk(3): the .Bd -literal block between the markers, unescaped.
example man3 "$man3" '
    /^\.\\" BEGIN EXAMPLE/ { f = 1; next } /^\.\\" END EXAMPLE/ { f = 0 }
    f && !/^\.(Bd|Ed)/ { gsub(/\\e/, "\\"); gsub(/\\&/, ""); print }' \
    "$(awk '/^\.\\" END EXAMPLE/ { f = 1 } f && /^\.Dl / {
	sub(/^\.Dl /, ""); print; exit }' "$man3")"

[ "$problems" = 0 ] || fail "$problems problem(s) in the documentation"
exit 0
