#!/bin/bash
# test-layout-root: from the root of a checkout, "import nbd" and nbdsh
# find libnbd's Python module, not a folder of the checkout (issue 10:
# the NBD server sat in ./nbd, and a python3 run there took that folder
# for the module nbd, as a namespace package, so "python3 -m nbd" and
# nbdsh failed with "'nbd' is a package and cannot be directly executed").
#
#   - nothing at the root can be imported as nbd (PathFinder over the
#     root alone finds no spec): this holds whatever python3 is installed;
#   - the system python3, which has libnbd's module, imports from the
#     root the same file it imports elsewhere, and that is libnbd's;
#   - a python3 earlier in PATH (pyenv, venv) either has its own nbd
#     outside the checkout or has none; it never finds the checkout's;
#   - nbdsh -c 'h.get_version()' works from the root.
#
# It runs once, not per backend.
. "$RUMPBLK_SRCDIR/tests/functions.sh"

root=$(cd "$RUMPBLK_SRCDIR" && pwd -P)
# The caller's python3 before the system directories go first (the
# libnbd module belongs to the system interpreter; see nbd-functions.sh).
user_python=$(command -v python3 || true)
PATH=/usr/bin:/bin:$PATH
export PATH
requires /usr/bin/python3 -c 'import nbd'
requires nbdsh --version

# Where a python3 finds the module nbd when run in DIR: its file, or
# "none".  Namespace packages have no file; they print their path.
where() {
	(cd "$2" && timeout 60 "$1" -c '
import sys
try:
    import nbd
except ImportError:
    print("none")
    sys.exit(0)
f = getattr(nbd, "__file__", None)
print(f if f is not None else "namespace:" + ":".join(nbd.__path__))
')
}

# Nothing at the root is importable as nbd, by any interpreter.
spec=$(cd "$root" && timeout 60 /usr/bin/python3 -c '
import importlib.machinery, sys
s = importlib.machinery.PathFinder.find_spec("nbd", [sys.argv[1]])
print("none" if s is None else (s.origin or
    "namespace:" + ":".join(s.submodule_search_locations)))
' "$root") || fail "PathFinder failed"
[ "$spec" = none ] ||
    fail "the checkout root holds something importable as nbd: $spec"

# The system python3: libnbd's module, the same from the root as from
# anywhere else.
want=$(where /usr/bin/python3 "$tmp") || fail "python3 failed in $tmp"
got=$(where /usr/bin/python3 "$root") || fail "python3 failed in $root"
[ "$got" = "$want" ] ||
    fail "from $root, /usr/bin/python3 imports nbd from $got, not $want"
case $got in
"$root"/* | namespace:*)
	fail "from $root, nbd is $got, a part of the checkout" ;;
esac
(cd "$root" && timeout 60 /usr/bin/python3 -c '
import nbd
assert hasattr(nbd, "NBD") and hasattr(nbd.NBD, "get_version"), nbd
') || fail "from $root, the module nbd is not libnbd's"

# The python3 a user would have run, if it is another one.
if [ -n "$user_python" ] && [ -x "$user_python" ]; then
	got=$(where "$user_python" "$root") ||
	    fail "$user_python failed in $root"
	case $got in
	"$root"/* | namespace:*"$root"*)
		fail "from $root, $user_python imports nbd from $got, a" \
		    "part of the checkout" ;;
	esac
fi

# nbdsh, as users run it (python3 -m nbd, the system python3 first).
out=$(cd "$root" && timeout 60 nbdsh -c 'print(h.get_version())' 2>&1) ||
    fail "nbdsh -c 'h.get_version()' failed in $root: $out"
[ -n "$out" ] || fail "nbdsh printed no version in $root"
exit 0
