#!/bin/sh
# Build the libFuzzer targets with clang into fuzz/build/ and run each for
# FUZZ_SECONDS (default 60) on a copy of its seed corpus in fuzz/corpus/,
# which libFuzzer never writes to.
#
#   sh fuzz/run.sh [TARGET...]   build and run these targets (default: all)
#   sh fuzz/run.sh --seeds       rewrite fuzz/corpus/ with fuzz/mkseeds.c
#
# Each target prints one line, "PASS: fuzz TARGET: N execs in S s" or
# "FAIL: fuzz TARGET: why", naming the saved input and the log of a
# failure; the last line is "N passed, N failed" and the exit status is 0
# only if nothing failed.  FUZZ_CC names the compiler (default clang).
set -u
cd "$(dirname "$0")/.." || exit 1

ALL="open_packet hs_msg1 hs_msg2 hs_msg3 hello1 hello2 handshake_fd classic_hs \
keyfile keylists hostport"
CC=${FUZZ_CC:-clang}
SECS=${FUZZ_SECONDS:-60}
B=fuzz/build
# Word-split on use; the quotes around fuzz are meant literally, making the
# version a string, as the Makefile's are.
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
FLAGS="-g -O1 -D_GNU_SOURCE -DX25519CHAT_VERSION=\"fuzz\" -std=c11
$(pkg-config --cflags libsodium 2>/dev/null)"
LIBS="-lsodium -pthread"
# The first line of a report that says what went wrong.
WHY='ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|'\
'fuzz: contract broken'
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

case $SECS in
''|*[!0-9]*|0)
	echo "fuzz/run.sh: FUZZ_SECONDS must be a number of seconds" >&2
	exit 2
esac

if [ "$#" -eq 1 ] && [ "$1" = "--seeds" ]; then
	mkdir -p "$B" || exit 1
	$CC -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	    $FLAGS -o "$B/mkseeds" fuzz/mkseeds.c proto.c handshake.c sodium_shim.c \
	    $LIBS || exit 1
	rm -rf fuzz/corpus && "$B/mkseeds" fuzz/corpus || exit 1
	echo "fuzz/corpus rewritten: $(find fuzz/corpus -type f | wc -l) files"
	exit 0
fi
# The targets to run: all, or those named.
targets=""
for t in "$@"; do
	case " $ALL " in
	*" $t "*)
		targets="$targets $t" ;;
	*)
		echo "fuzz/run.sh: unknown target $t (targets: $ALL)" >&2
		exit 2
	esac
done
[ -n "$targets" ] || targets=$ALL

passed=0
failed=0
built=""

pass() {
	echo "PASS: fuzz $1: $2"
	passed=$((passed + 1))
}

fail() {
	echo "FAIL: fuzz $1: $2"
	failed=$((failed + 1))
}

# Why a build failed, with a hint when libFuzzer itself is missing.
build_why() {
	if grep -q 'clang_rt\.fuzzer\|fuzzer.*No such file' "$1" 2>/dev/null
	then
		echo "cannot link libFuzzer (apt-get install libclang-rt-14-dev); see $1"
	else
		echo "build failed; see $1"
	fi
}

# The rooms of the program a target needs beyond proto.c and
# sodium_shim.c, which every target links.
rooms() {
	case $1 in
	hostport) echo "say net" ;;
	keylists) echo "say term trust" ;;
	esac
}

# The code under test, built once with the targets' flags.
mkdir -p "$B" || exit 1
objs_ok=1
for src in proto handshake sodium_shim; do
	if ! $CC $SAN $FLAGS -c -o "$B/$src.o" "$src.c" \
	    >"$B/$src.build.log" 2>&1 && [ "$objs_ok" -eq 1 ]; then
		objs_ok=0
		objs_log=$B/$src.build.log
	fi
done

for t in $targets; do
	d=$B/$t
	rm -rf "$d" && mkdir -p "$d/corpus" "$d/crashes" || exit 1
	if [ "$objs_ok" -eq 0 ]; then
		fail "$t" "$(build_why "$objs_log")"
		continue
	fi
	# Each room is built once, when a target first needs it.
	extra=""
	for r in $(rooms "$t"); do
		case " $built " in
		*" $r "*) ;;
		*)
			if ! $CC $SAN $FLAGS -c -o "$B/$r.o" "$r.c" \
			    >"$B/$r.build.log" 2>&1; then
				fail "$t" "$(build_why "$B/$r.build.log")"
				continue 2
			fi
			built="$built $r"
		esac
		extra="$extra $B/$r.o"
	done
	if ! $CC $SAN $FLAGS -o "$B/$t.bin" "fuzz/$t.c" $extra "$B/proto.o" \
	    "$B/handshake.o" "$B/sodium_shim.o" $LIBS >"$d/build.log" 2>&1; then
		fail "$t" "$(build_why "$d/build.log")"
		continue
	fi
	if [ -d "fuzz/corpus/$t" ]; then
		cp fuzz/corpus/"$t"/* "$d/corpus/" 2>/dev/null
	fi

	# The handshake targets feed a socket: keep inputs small.  The
	# targets built on the program's own parsers print an error line
	# per bad input.
	opts=""
	case $t in
	handshake_fd|classic_hs) opts="-max_len=1024" ;;
	keylists|hostport) opts="-close_fd_mask=2" ;;
	esac
	start=$(date +%s)
	"$B/$t.bin" -max_total_time="$SECS" -timeout=10 -print_final_stats=1 \
	    -artifact_prefix="$d/crashes/" $opts "$d/corpus" >"$d/log" 2>&1
	rc=$?
	end=$(date +%s)

	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log" |
	    tail -n 1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' \
	    "$d/log" | tail -n 1)
	[ -n "$secs" ] || secs=$((end - start))
	crash=$(find "$d/crashes" -type f | head -n 1)
	if [ "$rc" -eq 0 ] && [ -z "$crash" ] && [ -n "$execs" ]; then
		pass "$t" "$execs execs in $secs s"
		continue
	fi
	why=$(grep -E "$WHY" "$d/log" | head -n 1 | sed 's/^==[0-9]*== *//')
	[ -n "$why" ] || why="exited with status $rc"
	if [ -n "$crash" ]; then
		fail "$t" "$why; input $crash; log $d/log"
	else
		fail "$t" "$why; log $d/log"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
