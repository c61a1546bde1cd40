"""Shared pieces of the Python test suites: start x25519chat, find the
port a listener got, wait with time limits, and report each check as one
line "PASS: what" or "FAIL: what: why"."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(TOP, "x25519chat")
LISTENING = re.compile(r"^Server listening on (.*):(\d+)$", re.M)

failures = 0


def check(what, ok, why=""):
    """Report one check; return ok."""
    global failures
    if ok:
        print("PASS: %s" % what, flush=True)
    else:
        failures += 1
        print("FAIL: %s: %s" % (what, why), flush=True)
    return ok


def whole(f):
    """All that a file holds, read without moving its offset: the offset
    is shared with every process writing to it (a listener and its
    connections' processes), and moving it would have their next lines
    overwrite the first."""
    size = os.fstat(f.fileno()).st_size
    return os.pread(f.fileno(), size, 0)


def sanitizer():
    """The sanitizer x25519chat was built with, or None."""
    with open(BIN, "rb") as f:
        image = f.read()
    for mark, name in ((b"__asan_init", "AddressSanitizer"),
                       (b"__tsan_init", "ThreadSanitizer")):
        if mark in image:
            return name
    return None


def feed(data):
    """A file holding data, to be a process's stdin."""
    f = tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


def finish():
    """Exit with the status the suite earned."""
    sys.exit(1 if failures else 0)


class Home:
    """A private configuration directory, so tests never touch ~/.config."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="x25519chat-test.")
        self.env = dict(os.environ, XDG_CONFIG_HOME=self.dir, LC_ALL="C")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Proc:
    """x25519chat (or any command) with stdout and stderr in files, so
    that large outputs never block it."""

    def __init__(self, args, home, stdin=subprocess.DEVNULL, cmd=None,
                 preexec=None):
        self.outf = tempfile.TemporaryFile()
        self.errf = tempfile.TemporaryFile()
        argv = (cmd or [BIN]) + list(args)
        self.p = subprocess.Popen(argv, stdin=stdin, stdout=self.outf,
                                  stderr=self.errf, env=home.env,
                                  preexec_fn=preexec)
        self.rc = None

    def wait(self, timeout=10):
        """Exit status, or None after killing it when it overran."""
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            self.rc = None
        return self.rc

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.alive():
            self.p.kill()
        self.p.wait()

    def out(self):
        return whole(self.outf)

    def err(self):
        return whole(self.errf).decode("utf-8", "replace")


def listen(home, args=(), stdin=subprocess.DEVNULL, addr="127.0.0.1:0",
           timeout=5):
    """Start a listener; return (proc, port) once it says where it listens,
    or (proc, None) if it did not within timeout seconds."""
    p = Proc(["-l", addr] + list(args), home, stdin=stdin)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = LISTENING.search(p.err())
        if m:
            return p, int(m.group(2))
        if not p.alive():
            break
        time.sleep(0.02)
    return p, None
