#!/bin/sh
# Run every test suite from the top of the tree.  Each suite prints one
# line "PASS: what" or "FAIL: what: why" per check; a suite that exits
# non-zero without saying FAIL counts as one failure.  The last line is
# "N passed, N failed"; the exit status is 0 only if nothing failed.
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-/usr/bin/python3}
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
passed=0
failed=0

suite() {
	name=$1
	shift
	echo "== $name"
	"$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	p=$(grep -c '^PASS' "$log")
	f=$(grep -c '^FAIL' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $name: exited with status $rc"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
}

suite unit ./test/unit test/vectors
suite classic "$PY" test/classic.py
suite noise "$PY" test/noise.py
suite attack "$PY" test/attack.py
suite cli "$PY" test/cli.py
suite delivery "$PY" test/delivery.py
suite listen "$PY" test/listen.py
suite terminal expect test/chat.exp
suite bounds "$PY" test/bounds.py
suite docs sh test/docs.sh

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
