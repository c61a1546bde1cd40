#!/bin/sh
# Install the Debian/Ubuntu packages named as arguments if any is missing:
# as root directly, else through sudo (which may ask for a password at a
# terminal); otherwise print the command to run and fail.
missing=""
for p in "$@"; do
	if command -v dpkg-query >/dev/null 2>&1; then
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q 'install ok installed' || missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "x25519chat: missing packages:$missing (install their equivalents)" >&2
	exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1 &&
    { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
	sudo="sudo"
else
	echo "x25519chat: missing packages; run: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "x25519chat: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q$missing >/dev/null ||
    { $sudo apt-get update -q >/dev/null &&
      $sudo apt-get install -y -q$missing >/dev/null; } || {
	echo "x25519chat: could not install:$missing" >&2
	exit 1
}
