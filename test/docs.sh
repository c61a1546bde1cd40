#!/bin/sh
# The documentation matches the program: the man page's SYNOPSIS is the
# usage that --help prints, every option of --help is described in the man
# page, so is every exit status (0 to 5, 5 being the peer's failure), and
# the README's test command is the one CI runs.
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

./x25519chat --help | sed -n 's/^usage: //p; s/^       x25519chat/x25519chat/p' \
    >"$tmp/help"
groff -mdoc -Tascii -P-cbou -rLL=200n man/x25519chat.1 2>"$tmp/warn" |
    sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed -n 's/^ *\(x25519chat .*\)/\1/p' \
    >"$tmp/synopsis"
if [ -s "$tmp/help" ] && cmp -s "$tmp/help" "$tmp/synopsis"; then
	echo "PASS: man page SYNOPSIS is the --help usage"
else
	echo "FAIL: man page SYNOPSIS differs from --help:"
	diff "$tmp/help" "$tmp/synopsis" | sed 's/^/    /'
fi
if [ -s "$tmp/warn" ]; then
	echo "FAIL: groff warns about the man page: $(head -1 "$tmp/warn")"
else
	echo "PASS: man page renders without warnings"
fi

groff -mdoc -Tascii -P-cbou -rLL=200n man/x25519chat.1 >"$tmp/man" 2>/dev/null
missing=""
for opt in $(./x25519chat --help | grep -o -- ' -[-a-zA-Z0-9]*' | sort -u); do
	grep -qE -- "^ +([^ ]+ )?(-[-a-zA-Z0-9]+[ ,|]+)*$opt([ ,|]|$)" "$tmp/man" ||
	    missing="$missing $opt"
done
if [ -z "$missing" ]; then
	echo "PASS: every option of --help is described in the man page"
else
	echo "FAIL: options missing from the man page:$missing"
fi
for code in 0 1 2 3 4 5; do
	if sed -n '/^EXIT STATUS/,/^EXAMPLES/p' "$tmp/man" | grep -q "^     $code "; then
		echo "PASS: man page documents exit status $code"
	else
		echo "FAIL: man page does not document exit status $code"
	fi
done
if grep -q '^make check$' README.md && grep -q 'make check' .ci/run; then
	echo "PASS: README and CI both run make check"
else
	echo "FAIL: README's test command is not what .ci/run runs"
fi
