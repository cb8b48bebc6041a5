#!/bin/bash
# test-install-pkgconfig: `make install PREFIX=... DESTDIR=...` from a
# private build directory (the developer's build keeps its configuration),
# then a program that includes <rumpblk/rumpblk.h> builds with
# `pkg-config --cflags --libs rumpblk` against the install, links the
# shared and the static library, and runs.  The shared library exports
# only rumpblk_* symbols; the man pages, header, static library and the
# command are installed.
. "$RUMPBLK_SRCDIR/tests/functions.sh"
requires pkg-config --version
requires cc --version
requires nm --version

src=$RUMPBLK_SRCDIR
prefix=$tmp/p
build=$tmp/build
dest=$tmp/dest

# 1. Stage with DESTDIR: everything lands under $dest$prefix, nothing in
#    $prefix itself.
make -s -C "$src" install BUILD="$build" PREFIX="$prefix" DESTDIR="$dest" \
    MESON_OPTS="-Dtests=disabled" >"$tmp/make.log" 2>&1 ||
    { tail -n 30 "$tmp/make.log"; fail "make install DESTDIR=$dest"; }
[ -e "$prefix" ] && fail "make install with DESTDIR wrote into $prefix"
[ -f "$dest$prefix/include/rumpblk/rumpblk.h" ] ||
    fail "DESTDIR install has no header"

# 2. Install for real under a private PREFIX.
make -s -C "$src" install BUILD="$build" PREFIX="$prefix" DESTDIR= \
    >>"$tmp/make.log" 2>&1 ||
    { tail -n 30 "$tmp/make.log"; fail "make install PREFIX=$prefix"; }

pcfile=$(find "$prefix" -name rumpblk.pc | head -n 1)
[ -n "$pcfile" ] || fail "no rumpblk.pc under $prefix"
export PKG_CONFIG_PATH=$(dirname "$pcfile")
libdir=$(pkg-config --variable=libdir rumpblk) || fail "pkg-config rumpblk"
[ -f "$libdir/librumpblk.so" ] || fail "no $libdir/librumpblk.so"
[ -f "$libdir/librumpblk.a" ] || fail "no $libdir/librumpblk.a"
[ -f "$prefix/include/rumpblk/rumpblk.h" ] || fail "no header"
[ -x "$prefix/bin/rumpblk" ] || fail "no rumpblk command"
for m in man1/rumpblk.1 man3/librumpblk.3; do
	[ -f "$prefix/share/man/$m" ] || fail "man page $m not installed"
done
LD_LIBRARY_PATH=$libdir "$prefix/bin/rumpblk" --version |
    grep -q "^rumpblk [0-9]" || fail "installed rumpblk --version"

# 3. Only rumpblk_* is exported (the version node RUMPBLK_1 is an absolute
#    symbol, not code).
bad=$(nm -D --defined-only "$libdir/librumpblk.so" |
    awk '$2 != "A" && $3 !~ /^rumpblk_/ { print $3 }')
[ -z "$bad" ] || fail "librumpblk.so exports non-rumpblk_ symbols: $bad"
nm -D --defined-only "$libdir/librumpblk.so" | grep -q ' T rumpblk_strategy' ||
    fail "rumpblk_strategy not exported"

# 4. A program built with pkg-config against the install.
cat >"$tmp/prog.c" <<'PROG'
#include <rumpblk/rumpblk.h>
#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
	struct rumpblk_config cfg;
	struct rumpblk *rb;
	struct rumpblk_buf b;
	char w[512], r[512];
	int unit;

	(void)argc;
	rumpblk_config_init(&cfg);
	if (rumpblk_create(&cfg, &rb) != 0 ||
	    rumpblk_register(rb, argv[1], 0, RUMPBLK_SIZENOTSET, &unit) != 0)
		return 1;
	memset(w, 0x5a, sizeof(w));
	memset(&b, 0, sizeof(b));
	b.b_unit = unit;
	b.b_flags = RUMPBLK_B_WRITE;
	b.b_blkno = 3;
	b.b_bcount = sizeof(w);
	b.b_data = w;
	rumpblk_strategy(rb, &b);
	if (rumpblk_biowait(&b) != 0)
		return 2;
	memset(&b, 0, sizeof(b));
	b.b_unit = unit;
	b.b_flags = RUMPBLK_B_READ;
	b.b_blkno = 3;
	b.b_bcount = sizeof(r);
	b.b_data = r;
	rumpblk_strategy(rb, &b);
	if (rumpblk_biowait(&b) != 0 || memcmp(w, r, sizeof(r)) != 0)
		return 3;
	if (rumpblk_destroy(rb) != 0)
		return 4;
	printf("ok %s\n", rumpblk_version());
	return 0;
}
PROG
truncate -s 64K "$tmp/disk.img"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/prog" "$tmp/prog.c" \
    $(pkg-config --cflags --libs rumpblk) 2>"$tmp/cc.log" ||
    { cat "$tmp/cc.log"; fail "cannot build against the install"; }
LD_LIBRARY_PATH=$libdir "$tmp/prog" "$tmp/disk.img" | grep -q '^ok ' ||
    fail "the program built against the install did not run"
# It really used the installed library.
LD_LIBRARY_PATH=$libdir ldd "$tmp/prog" | grep -q "$libdir/librumpblk.so" ||
    fail "the program did not pick the installed librumpblk.so"

# 5. And statically.
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/prog-static" "$tmp/prog.c" \
    $(pkg-config --cflags rumpblk) "$libdir/librumpblk.a" \
    $(pkg-config --static --libs-only-other --libs-only-l rumpblk |
    sed 's/-lrumpblk//') 2>"$tmp/cc.log" ||
    { cat "$tmp/cc.log"; fail "cannot link the static library"; }
"$tmp/prog-static" "$tmp/disk.img" | grep -q '^ok ' ||
    fail "the statically linked program did not run"
ldd "$tmp/prog-static" | grep -q librumpblk &&
    fail "the static program still needs librumpblk.so"
exit 0
