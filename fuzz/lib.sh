# fuzz/lib.sh: what fuzz/run-smoke.sh and fuzz/campaign.sh share (sourced,
# POSIX sh): one build set-up, one list of targets, one set of libFuzzer
# options, so that a target added to fuzz/meson.build is built, smoked
# and fuzzed with no other list to edit.  Set src (the source tree) and
# prog (the name messages start with) before sourcing it.
#
#   build                FUZZ_BUILDDIR, else $src/build-fuzz
#   fuzz_setup           configure $build if it is not: clang, ASan +
#                        UBSan, the library and the server compiled with
#                        -fsanitize=fuzzer-no-link so that their code is
#                        instrumented for coverage too
#   fuzz_targets [T...]  the libFuzzer targets fuzz/meson.build defines,
#                        one a line, in its order (with T...: those, each
#                        checked to be one; an unknown name is an error)
#   fuzz_build T...      build them (ninja); non-zero if any fails
#   fuzz_exe T           the path of T's executable
#   fuzz_dict T          -dict=FILE for T: fuzz/T.dict if there is one,
#                        else fuzz/nbd.dict
#   fuzz_env             export the sanitizers' options for a run
#   FUZZ_OPTS            libFuzzer options every run takes

build=${FUZZ_BUILDDIR:-$src/build-fuzz}
FUZZ_OPTS="-timeout=30 -rss_limit_mb=2048 -max_len=65536"

fuzz_setup() {
	command -v clang >/dev/null || {
		echo "$prog: clang is needed" >&2
		return 1
	}
	[ -f "$build/build.ninja" ] && return 0
	CC=clang meson setup "$build" "$src" -Dfuzz=true -Dtests=disabled \
	    -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dc_args=-fsanitize=fuzzer-no-link \
	    -Dc_link_args=-fsanitize=fuzzer-no-link >/dev/null
}

fuzz_targets() {
	# build.ninja first: it reconfigures if fuzz/meson.build changed
	# since, so that a target added there is listed.
	ninja -C "$build" build.ninja >/dev/null || return 1
	meson introspect --targets "$build" | python3 -c '
import json, sys
names = [t["name"] for t in json.load(sys.stdin)
         if t["type"] == "executable" and
         t["defined_in"].replace("\\", "/").endswith("fuzz/meson.build")]
want = sys.argv[2:]
bad = [w for w in want if w not in names]
if bad:
    sys.exit("%s: not a fuzz target of fuzz/meson.build: %s (it has %s)"
             % (sys.argv[1], " ".join(bad), " ".join(names)))
print("\n".join(want or names))' "$prog" "$@"
}

fuzz_build() {
	ninja -C "$build" $(for t in "$@"; do echo "fuzz/$t"; done)
}

fuzz_exe() {
	echo "$build/fuzz/$1"
}

fuzz_dict() {
	if [ -f "$src/fuzz/$1.dict" ]; then
		echo "-dict=$src/fuzz/$1.dict"
	else
		echo "-dict=$src/fuzz/nbd.dict"
	fi
}

fuzz_env() {
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	ASAN_OPTIONS=detect_leaks=1
	TMPDIR=${TMPDIR:-/tmp}
	export UBSAN_OPTIONS ASAN_OPTIONS TMPDIR
}
