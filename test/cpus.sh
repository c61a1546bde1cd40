#!/bin/sh
# x25519chat on CPUs without hardware AES, on an x86_64 Debian/Ubuntu
# machine.  libsodium 1.0.18 has AES-256-GCM only with AES-NI, so there
# only ChaChaPoly may be offered.  This script:
#
#   - installs what it needs if it is missing: the arm64 architecture in
#     dpkg, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, libsodium-dev:arm64
#     and qemu-user (which has qemu-aarch64 and qemu-x86_64);
#   - cross-builds x25519chat for arm64 in a copy of the sources in a
#     temporary directory (./x25519chat, the native build, is left alone);
#   - runs the arm64 build under qemu-aarch64, and the native build under
#     qemu-x86_64 -cpu Nehalem (an x86 CPU without AES-NI), each as
#     listener and as connector against the native build: 10 MiB from the
#     connector, 1 MiB from the listener, both must exit 0, every byte must
#     arrive, both must say "Cipher: ChaChaPoly" and show the same code;
#   - checks that --cipher aesgcm and --classic are refused there (exit 1,
#     one line), and that where AES-NI exists (this machine, if its CPU
#     has it, and qemu-x86_64 -cpu Westmere) AESGCM is chosen.
#
# Output: one line "PASS: what" or "FAIL: what: why" per check, "note:"
# lines with what the emulated programs printed on stderr and how long
# each session took, then "N passed, N failed".  Exit status 0 only if
# nothing failed.  Every process runs under timeout(1), with a time limit
# of CPUS_LIMIT seconds (default 120) per session, and is ended by its pid
# if the script stops early.  CPUS_KEEP=1 keeps the temporary directory.
# Run from anywhere, after "make" has built ./x25519chat.
cd "$(dirname "$0")/.." || exit 1
LIMIT=${CPUS_LIMIT:-120}
BIG=10485760
SMALL=1048576
ARM64_LIBDIR=/usr/lib/aarch64-linux-gnu

passed=0
failed=0
runs=0
pids=""
tmp=$(mktemp -d) || exit 1
# The command lines below are kept as strings and split at spaces.
case $tmp in
*[[:space:]]*)
	echo "FAIL: temporary directory: $tmp has a space; set TMPDIR"
	echo "0 passed, 1 failed"
	rmdir "$tmp"
	exit 1
	;;
esac

pass() {
	echo "PASS: $1"
	passed=$((passed + 1))
}

fail() {
	what=$1
	shift
	echo "FAIL: $what: $*"
	failed=$((failed + 1))
}

note() {
	echo "note: $*"
}

# End what is still running (timeout(1) passes the signal on, and kills
# its command 10 s later if need be), wait for it, remove the files.
cleanup() {
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	pids=""
	if [ -n "${CPUS_KEEP:-}" ]; then
		echo "note: files kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
interrupted() {
	fail "interrupted" "signal $1"
	echo "$passed passed, $failed failed"
	exit $((128 + $2))
}
trap cleanup EXIT
trap 'interrupted INT 2' INT
trap 'interrupted TERM 15' TERM

forget() {
	pids=$(echo " $pids " | sed "s/ $1 / /; s/^ *//; s/ *$//")
}

now() {
	date +%s.%N
}

since() {
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'
}

# Describe an exit status; 124 and 137 are timeout(1)'s.
status() {
	case $1 in
	124 | 137) echo "killed after the $LIMIT s limit" ;;
	*) echo "exit $1" ;;
	esac
}

#
# The tools.
#

# Run a command as root: directly, or through sudo where it can be used
# (as test/deps.sh does).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 &&
	    { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
		sudo "$@"
	else
		echo "x25519chat: not root and no sudo; run as root: $*" >&2
		return 1
	fi
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null |
	    grep -q 'install ok installed'
}

tools() {
	if [ "$(uname -m)" != x86_64 ]; then
		echo "this script needs an x86_64 machine, not $(uname -m)"
		return 1
	fi
	if ! command -v dpkg >/dev/null 2>&1 ||
	    ! command -v apt-get >/dev/null 2>&1; then
		echo "not a Debian/Ubuntu machine: install an aarch64 cross" \
		    "compiler, arm64 libsodium and qemu-user by hand"
		return 1
	fi
	# The arm64 libsodium comes from the arm64 archive.  (On Debian the
	# same mirror serves it; Ubuntu serves arm64 from ports.ubuntu.com,
	# which its sources must name before this can work.)
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		echo "x25519chat: adding the arm64 architecture to dpkg" >&2
		if ! as_root dpkg --add-architecture arm64 ||
		    ! as_root apt-get update -q >/dev/null; then
			echo "could not add the arm64 architecture"
			return 1
		fi
	fi
	sh test/deps.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
	    libsodium-dev:arm64 pkg-config >&2 || {
		echo "could not install the arm64 compiler and libsodium"
		return 1
	}
	# qemu-user without its recommended qemu-user-binfmt, which would
	# have the kernel run every foreign binary through qemu, machine-wide;
	# the emulator is named on each command line here instead.
	if ! installed qemu-user; then
		echo "x25519chat: installing qemu-user" >&2
		set -- env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		    --no-install-recommends qemu-user
		as_root "$@" >/dev/null || {
			as_root apt-get update -q >/dev/null &&
			    as_root "$@" >/dev/null
		} || {
			echo "could not install qemu-user"
			return 1
		}
	fi
	for t in aarch64-linux-gnu-gcc qemu-aarch64 qemu-x86_64; do
		command -v $t >/dev/null 2>&1 || {
			echo "$t is missing after the install"
			return 1
		}
	done
	[ -f "$ARM64_LIBDIR/pkgconfig/libsodium.pc" ] || {
		echo "$ARM64_LIBDIR/pkgconfig/libsodium.pc is missing"
		return 1
	}
}

# Build the arm64 binary from a copy of the sources, with pkg-config
# reading only the arm64 .pc files, and with the Makefile's own defaults
# rather than flags meant for the native build.
build_arm64() {
	mkdir "$tmp/arm64" && cp ./*.c ./*.h Makefile "$tmp/arm64/" &&
	    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    PKG_CONFIG_LIBDIR="$ARM64_LIBDIR/pkgconfig:/usr/share/pkgconfig" \
	    make -C "$tmp/arm64" CC=aarch64-linux-gnu-gcc PKG_CONFIG=pkg-config \
	    CFLAGS="-O2 -g" CPPFLAGS= LDFLAGS= LDLIBS= x25519chat \
	    >"$tmp/arm64.log" 2>&1
}

#
# The sessions.
#

# Print the port of the listener whose stderr is file $1 and whose pid is
# $2, once it says it listens; fail if it ends first or takes 60 s.
port_of() {
	i=0
	while [ $i -lt 600 ]; do
		port=$(sed -n 's/^Server listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$1")
		if [ -n "$port" ]; then
			echo "$port"
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# What one side printed on stderr, as note lines.
show() {
	while IFS= read -r line; do
		note "$1: $line"
	done <"$2"
}

# session NAME LISTENER CONNECTOR CIPHER LEMU CEMU: run the command line
# LISTENER with -v -l and CONNECTOR with -v -c against it, each with its
# own configuration directory (so fresh identity keys and known_peers);
# the connector sends $BIG random bytes, the listener $SMALL.  Check that
# both exit 0, every byte arrives, both chose CIPHER and both show the
# same session code.  LEMU and CEMU name the emulated side(s), whose
# stderr is shown; "-" for a native side.
# shellcheck disable=SC2086 # $lrun and $crun are split into words
session() {
	name=$1 lrun=$2 crun=$3 want=$4 lemu=$5 cemu=$6
	runs=$((runs + 1))
	d=$tmp/run$runs
	mkdir -p "$d/l" "$d/c" || return
	t0=$(now)
	XDG_CONFIG_HOME=$d/l timeout -k 10 "$LIMIT" $lrun -v -l 127.0.0.1:0 \
	    <"$tmp/small" >"$d/l.out" 2>"$d/l.err" &
	lpid=$!
	pids="$pids $lpid"
	if ! port=$(port_of "$d/l.err" "$lpid"); then
		kill -TERM "$lpid" 2>/dev/null
		wait "$lpid"
		lrc=$?
		forget "$lpid"
		fail "$name" "the listener never said where it listens" \
		    "($(status $lrc)): $(tail -1 "$d/l.err")"
		return
	fi
	XDG_CONFIG_HOME=$d/c timeout -k 10 "$LIMIT" $crun -v \
	    -c "127.0.0.1:$port" <"$tmp/big" >"$d/c.out" 2>"$d/c.err" &
	cpid=$!
	pids="$pids $cpid"
	wait "$cpid"
	crc=$?
	forget "$cpid"
	wait "$lpid"
	lrc=$?
	forget "$lpid"
	secs=$(since "$t0")

	[ "$lemu" = - ] || show "$lemu" "$d/l.err"
	[ "$cemu" = - ] || show "$cemu" "$d/c.err"
	if [ "$lemu" = - ] && [ "$cemu" = - ]; then
		note "$name: listener: $(grep '^Cipher:' "$d/l.err")"
		note "$name: connector: $(grep '^Cipher:' "$d/c.err")"
	fi
	note "$name: $secs s for the session (handshake, 10 MiB one way," \
	    "1 MiB the other)"

	if [ "$lrc" -eq 0 ] && [ "$crc" -eq 0 ]; then
		pass "$name: both exit 0"
	else
		fail "$name: both exit 0" "listener $(status $lrc)," \
		    "connector $(status $crc); last lines:" \
		    "[$(tail -1 "$d/l.err")] [$(tail -1 "$d/c.err")]"
	fi
	if cmp -s "$tmp/big" "$d/l.out"; then
		pass "$name: 10 MiB from the connector arrive intact"
	else
		fail "$name: 10 MiB from the connector arrive intact" \
		    "$(wc -c <"$d/l.out") bytes arrived, not identical"
	fi
	if cmp -s "$tmp/small" "$d/c.out"; then
		pass "$name: 1 MiB from the listener arrives intact"
	else
		fail "$name: 1 MiB from the listener arrives intact" \
		    "$(wc -c <"$d/c.out") bytes arrived, not identical"
	fi
	if grep -qx "Cipher: $want" "$d/l.err" &&
	    grep -qx "Cipher: $want" "$d/c.err"; then
		pass "$name: both chose $want"
	else
		fail "$name: both chose $want" "listener said" \
		    "[$(grep '^Cipher:' "$d/l.err")], connector said" \
		    "[$(grep '^Cipher:' "$d/c.err")]"
	fi
	lcode=$(sed -n 's/^Session code: \([^ ]*\) .*/\1/p' "$d/l.err")
	ccode=$(sed -n 's/^Session code: \([^ ]*\) .*/\1/p' "$d/c.err")
	if [ -n "$lcode" ] && [ "$lcode" = "$ccode" ]; then
		pass "$name: both show the same session code"
	else
		fail "$name: both show the same session code" \
		    "listener [$lcode], connector [$ccode]"
	fi
}

# refused NAME RUN ARGS: RUN with ARGS must stop at once, before any
# connection: exit 1, nothing on stdout, one line on stderr that says
# hardware AES is missing.
# shellcheck disable=SC2086 # $run is split into words
refused() {
	name=$1 run=$2
	shift 2
	runs=$((runs + 1))
	d=$tmp/run$runs
	mkdir -p "$d" || return
	XDG_CONFIG_HOME=$d timeout -k 10 30 $run "$@" \
	    </dev/null >"$d/out" 2>"$d/err" &
	p=$!
	pids="$pids $p"
	wait "$p"
	rc=$?
	forget "$p"
	note "$name: stderr: $(cat "$d/err")"
	if [ "$rc" -eq 1 ] && [ ! -s "$d/out" ] &&
	    [ "$(wc -l <"$d/err")" -eq 1 ] &&
	    grep -q 'needs AES-256-GCM, which libsodium runs only on x86 CPUs with AES-NI' "$d/err"; then
		pass "$name: exit 1 with one line"
	else
		fail "$name: exit 1 with one line" "$(status $rc)," \
		    "$(wc -l <"$d/err") lines on stderr," \
		    "$(wc -c <"$d/out") bytes on stdout"
	fi
}

#
# The checks.
#

t_all=$(now)
if [ ! -x ./x25519chat ]; then
	fail "native build" "./x25519chat is missing: run make first"
	echo "$passed passed, $failed failed"
	exit 1
fi
if ! why=$(tools); then
	fail "tools" "$why"
	echo "$passed passed, $failed failed"
	exit 1
fi
note "$(qemu-aarch64 --version | head -1)"
note "$(aarch64-linux-gnu-gcc --version | head -1)"
note "libsodium23:arm64 $(dpkg-query -W -f='${Version}' libsodium23:arm64)"

NATIVE=./x25519chat
# The arm64 build uses the arm64 multiarch C library (libc6:arm64, which
# libsodium23:arm64 needs), so the emulator's root is /, where its loader
# is.  -L /usr/aarch64-linux-gnu would pair the cross package's loader with
# the multiarch libc.so.6 that ld.so.cache names, and the first
# pthread_create() then spins for ever.
ARM64=""
t0=$(now)
if build_arm64; then
	ARM64="qemu-aarch64 -L / $tmp/arm64/x25519chat"
	pass "arm64 cross build"
	note "arm64 cross build: $(since "$t0") s"
else
	fail "arm64 cross build" "$(tail -1 "$tmp/arm64.log")"
fi
NEHALEM="qemu-x86_64 -cpu Nehalem $NATIVE"
WESTMERE="qemu-x86_64 -cpu Westmere $NATIVE"

head -c $BIG /dev/urandom >"$tmp/big" &&
    head -c $SMALL /dev/urandom >"$tmp/small" || exit 1

if [ -n "$ARM64" ]; then
	session "arm64 listener, native connector" "$ARM64" "$NATIVE" \
	    ChaChaPoly "arm64 listener" -
	session "native listener, arm64 connector" "$NATIVE" "$ARM64" \
	    ChaChaPoly - "arm64 connector"
fi
session "Nehalem listener, native connector" "$NEHALEM" "$NATIVE" \
    ChaChaPoly "Nehalem listener" -
session "native listener, Nehalem connector" "$NATIVE" "$NEHALEM" \
    ChaChaPoly - "Nehalem connector"

# Where AES-NI exists, AESGCM: on this machine if its CPU has it, and
# under an emulated CPU that has it, the other half of the Nehalem result.
if grep -qw aes /proc/cpuinfo; then
	native=AESGCM
else
	native=ChaChaPoly
	note "this machine's CPU has no AES-NI"
fi
session "native pair" "$NATIVE" "$NATIVE" $native - -
session "Westmere listener (AES-NI), native connector" "$WESTMERE" \
    "$NATIVE" $native "Westmere listener" -

for emu in Nehalem arm64; do
	if [ $emu = Nehalem ]; then
		run=$NEHALEM
	else
		run=$ARM64
		[ -n "$run" ] || continue
	fi
	refused "$emu: --cipher aesgcm -l" "$run" --cipher aesgcm \
	    -l 127.0.0.1:0
	refused "$emu: --cipher aesgcm -c" "$run" --cipher aesgcm \
	    -c 127.0.0.1:1
	refused "$emu: --classic -l" "$run" --classic -l 127.0.0.1:0
	refused "$emu: --classic -c" "$run" --classic -c 127.0.0.1:1
done

note "all checks: $(since "$t_all") s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
