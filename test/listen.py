"""The listener as a service: what connects before the right peer, a
second peer while a session runs, and connections that try to lock the
right peer out.  Every scenario runs real x25519chat processes on
127.0.0.1 (and 127.0.0.2 for an attacker elsewhere):

  strays   a port scan, garbage, a key one byte off the allowed one and a
           PSK one byte off, then the right peer, against a listener
           without -k: each stray is told in one line (the refused key
           always, the rest with -v), and the right peer's session is the
           listener's, exit 0;
  busy     a second connector while a session runs is refused in the
           hello within a second, exit 1 "the listener is busy";
  race     two connectors past the hello, the first held before its last
           handshake message: the second gets the session, the first the
           listener's ERROR "busy" as its first packet, exit 1;
  lockout  200 idle connections and 100 sending random bytes, held open
           against -k --allow: the allowed peer still finishes within 1 s,
           twice, and the listener's memory and descriptors come back;
  churn    attackers on 127.0.0.2 reconnecting as soon as they are
           dropped, the allowed peer on 127.0.0.1 behind a proxy that adds
           50 ms each way: 20 sessions of 20, each within 1 s;
  cut      -k in pipe mode: a session cut short says so in its line, with
           the bytes that came;
  exec     -e CMD: 16 connectors at once, 20 sessions each, through
           -e cat; a command's failure reaches the connector (status 5);
           a connector killed mid-stream has the command signalled, never
           given a clean end of input; the environment holds exactly the
           verified values; -e without a trust option is refused; SIGTERM
           ends the listener and its commands, 143, no process left.

Each check is one line "PASS: what" or "FAIL: what: why"; figures are
lines "figure: ...".
"""

import base64
import os
import queue
import select
import signal
import socket
import subprocess
import threading
import time

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (Encoding,
                                                          PublicFormat)

from harness import Home, Proc, check, feed, finish, listen, sanitizer

PROG = "x25519chat: "
procs = []
homes = []


# A sanitizer build's run times and memory say nothing of ours: its time
# and memory limits are reported as not run, never as passed.
SANITIZER = sanitizer()


def timed(what, took, limit):
    """Check that took seconds is within limit, or say why it is not run."""
    what = "%s within %.1f s" % (what, limit)
    if SANITIZER is not None:
        print("not run (a %s build is too slow to time): %s (took %.2f s)"
              % (SANITIZER, what, took), flush=True)
        return
    check(what, took <= limit, "took %.2f s" % took)


def bounded(what, ok, why):
    """Check a memory bound, or say why it is not run."""
    if SANITIZER is not None:
        print("not run (a %s build's memory is the sanitizer's): %s"
              % (SANITIZER, what), flush=True)
        return
    check(what, ok, why)


def new_home():
    h = Home()
    homes.append(h)
    return h


def track(p):
    procs.append(p)
    return p


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def key_file(home, name, raw=None):
    """A private key file in home; (path, public key text)."""
    raw = raw or os.urandom(32)
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    path = write_file(home.path(name), base64.b64encode(raw).decode() + "\n")
    return path, base64.b64encode(pub).decode()


def one_byte_off(key_text, at=31):
    """The same key text with byte at changed."""
    raw = bytearray(base64.b64decode(key_text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def errors(p):
    return [ln for ln in p.err().splitlines() if ln.startswith(PROG)]


def lines_with(p, text):
    return [ln for ln in p.err().splitlines() if text in ln]


def connect(args, home, stdin=b""):
    """A connector, started."""
    return track(Proc(["-c"] + list(args), home,
                      stdin=feed(stdin) if isinstance(stdin, bytes) else
                      stdin))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return None


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


# 1. Strays before the right peer.

def strays(verbose):
    h_l, h_c = new_home(), new_home()
    lkey, _ = key_file(h_l, "l.key")
    ckey, cpub = key_file(h_c, "c.key")
    wkey, wpub = key_file(h_c, "w.key")
    psk, _ = key_file(h_l, "psk")
    psk_c = write_file(h_c.path("psk"), open(psk).read())
    psk_off = write_file(h_c.path("psk-off"), one_byte_off(
        open(psk).read().strip(), 0) + "\n")
    # The allowed keys: the right peer's, and the wrong peer's one byte off.
    allow = write_file(h_l.path("allow"), "%s\n%s\n" % (
        cpub, one_byte_off(wpub)))
    tag = "with -v" if verbose else "without -v"
    lp, port = listen(h_l, ["-i", lkey, "--allow", allow, "--psk", psk] +
                      (["-v"] if verbose else []),
                      stdin=feed(b"from the listener\n"))
    track(lp)
    if port is None:
        return check("strays %s: the listener starts" % tag, False,
                     lp.err())
    where = "127.0.0.1:%d" % port
    bad = []
    # A port scan: connect, close.
    s = socket.create_connection(("127.0.0.1", port))
    scan = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    # Garbage.
    s = socket.create_connection(("127.0.0.1", port))
    junk = "127.0.0.1:%d" % s.getsockname()[1]
    s.sendall(os.urandom(1000))
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    wrong = connect([where, "-i", wkey, "--psk", psk_c], h_c)
    wrong.wait(10)
    off = connect([where, "-i", ckey, "--psk", psk_off], h_c)
    off.wait(10)
    if not lp.alive():
        bad.append("the listener exited %s after the strays" % lp.p.poll())
    right = connect([where, "-i", ckey, "--psk", psk_c], h_c,
                    b"from the connector\n")
    right.wait(10)
    lp.wait(10)
    if wrong.rc != 3 or off.rc != 3:
        bad.append("wrong key exited %s, wrong PSK %s, expected 3" % (
            wrong.rc, off.rc))
    if right.rc != 0 or right.out() != b"from the listener\n":
        bad.append("the right peer exited %s with %r" % (right.rc,
                                                        right.out()))
    if lp.rc != 0 or lp.out() != b"from the connector\n":
        bad.append("the listener exited %s with %r, expected 0 with the "
                   "connector's line" % (lp.rc, lp.out()))
    check("strays %s: a scan, garbage, a key one byte off, a PSK one byte "
          "off, then the right peer: its session is the listener's, exit 0"
          % tag, not bad, "; ".join(bad) + " / " + lp.err()[-500:])
    refused = [e for e in errors(lp) if "not in the --allow list" in e]
    check("strays %s: the refused key is told, in one error line naming it"
          % tag, len(refused) == 1 and wpub in refused[0] and
          len(errors(lp)) == 1, repr(lp.err()))
    told = {"scan": lines_with(lp, scan), "garbage": lines_with(lp, junk),
            "wrong PSK": [ln for ln in lp.err().splitlines()
                          if "--psk" in ln or "pre-shared" in ln]}
    if verbose:
        check("strays with -v: the scan, the garbage and the wrong PSK "
              "get one line each", all(len(v) == 1 for v in told.values()),
              repr(told))
    else:
        check("strays without -v: the scan, the garbage and the wrong PSK "
              "are not told", not any(told.values()), repr(told))


# 2. Busy.

def busy(keep):
    h_l, h_c = new_home(), new_home()
    tag = "-k listener" if keep else "listener"
    lp, port = listen(h_l, ["-k"] if keep else [], stdin=subprocess.PIPE)
    track(lp)
    if port is None:
        return check("busy %s: starts" % tag, False, lp.err())
    where = "127.0.0.1:%d" % port
    # The session runs once the listener's first line reaches the peer.
    lp.p.stdin.write(b"start\n")
    lp.p.stdin.flush()
    first = connect([where], h_c, subprocess.PIPE)
    ok = wait_for(lambda: first.out() == b"start\n", 10)
    t0 = time.monotonic()
    second = connect([where], h_c, b"must not arrive\n")
    second.wait(10)
    took = time.monotonic() - t0
    errs = errors(second)
    check("busy %s: a second connector while a session runs exits 1 with "
          "'the listener is busy', refused in the hello" % tag,
          ok and second.rc == 1 and len(errs) == 1 and
          "the listener is busy" in errs[0] and
          "Peer key" not in second.err(),
          "exit %s after %.2f s: %r" % (second.rc, took, second.err()))
    timed("busy %s: the refusal" % tag, took, 1.0)
    first.p.stdin.write(b"first\n")
    first.p.stdin.close()
    lp.p.stdin.write(b"back\n")
    lp.p.stdin.close()
    first.wait(10)
    if keep:
        wait_for(lambda: lines_with(lp, "Session with"), 5)
        alive = lp.alive()
        lp.kill()
    else:
        lp.wait(10)
    check("busy %s: the first session is untouched: both exit 0, each "
          "line arrives" % tag, first.rc == 0 and
          first.out() == b"start\nback\n"
          and lp.out() == b"first\n" and (lp.rc == 0 if not keep else
                                          alive),
          "connector %s %r, listener %s %r: %r" % (
              first.rc, first.out(), lp.rc, lp.out(), lp.err()[-400:]))


class HoldProxy:
    """Between one connector and the listener: passes everything, except
    that the connector's third handshake frame (Noise message 3) waits
    until release()."""

    def __init__(self, port):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.target = port
        self.held = threading.Event()
        self.go = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def release(self):
        self.go.set()

    def run(self):
        c, _ = self.srv.accept()
        up = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=self.pump, args=(up, c), daemon=True).start()
        try:
            for i in range(3):
                head = self.exactly(c, 4)
                body = self.exactly(c, int.from_bytes(head, "big"))
                if i == 2:
                    self.held.set()
                    self.go.wait(20)
                up.sendall(head + body)
            self.pump(c, up)
        except OSError:
            pass

    @staticmethod
    def exactly(s, n):
        b = b""
        while len(b) < n:
            got = s.recv(n - len(b))
            if not got:
                raise OSError("closed")
            b += got
        return b

    @staticmethod
    def pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def race():
    h_l, h_c = new_home(), new_home()
    lp, port = listen(h_l, [], stdin=subprocess.PIPE)
    track(lp)
    if port is None:
        return check("race: starts", False, lp.err())
    lp.p.stdin.write(b"start\n")
    lp.p.stdin.flush()
    proxy = HoldProxy(port)
    held = connect(["127.0.0.1:%d" % proxy.port], h_c, subprocess.PIPE)
    ok = proxy.held.wait(10)
    winner = connect(["127.0.0.1:%d" % port], h_c, subprocess.PIPE)
    # Its session runs once the listener's first line has reached it.
    ok = ok and wait_for(lambda: winner.out() == b"start\n", 10)
    proxy.release()
    held.wait(10)
    errs = errors(held)
    check("race: two connectors past the hello; the one held before "
          "message 3 gets the listener's ERROR 'busy' and exits 1 with "
          "'the listener is busy'", ok and held.rc == 1 and
          len(errs) == 1 and errs[0] == PROG + "the listener is busy",
          "exit %s: %r" % (held.rc, held.err()))
    check("race: the listener says it turned the second away",
          len(lines_with(lp, "away: busy")) == 1, repr(lp.err()))
    winner.p.stdin.write(b"won\n")
    winner.p.stdin.close()
    lp.p.stdin.close()
    winner.wait(10)
    lp.wait(10)
    check("race: the session that won goes on and ends cleanly",
          winner.rc == 0 and lp.rc == 0 and lp.out() == b"won\n" and
          winner.out() == b"start\n",
          "connector %s, listener %s %r" % (winner.rc, lp.rc, lp.out()))


# 3. Lockout.

def hold_connections(port, idle, noisy, src="127.0.0.1"):
    """Open idle silent connections and noisy ones that send random bytes
    now and then; return (sockets, stop event)."""
    socks = []
    for i in range(idle + noisy):
        s = socket.socket()
        s.bind((src, 0))
        s.setblocking(True)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    stop = threading.Event()

    def noise():
        while not stop.wait(0.2):
            for s in socks[idle:]:
                try:
                    s.send(os.urandom(64), socket.MSG_DONTWAIT)
                except OSError:
                    pass
    threading.Thread(target=noise, daemon=True).start()
    return socks, stop


def allowed_listener(h_l, h_c, extra=(), name=""):
    """A -k listener admitting one connector key, under name if one is
    given; (listener, port, connector key file, its public key)."""
    lkey, _ = key_file(h_l, "l.key")
    ckey, cpub = key_file(h_c, "c.key")
    allow = write_file(h_l.path("allow"), "%s %s\n" % (cpub, name))
    lp, port = listen(h_l, ["-k", "-i", lkey, "--allow", allow] +
                      list(extra))
    return track(lp), port, ckey, cpub


def lockout():
    h_l, h_c = new_home(), new_home()
    lp, port, ckey, _ = allowed_listener(h_l, h_c)
    if port is None:
        return check("lockout: starts", False, lp.err())
    where = "127.0.0.1:%d" % port
    # A first session, so that what is measured after is the steady state.
    first = connect([where, "-i", ckey], h_c, b"warm\n")
    first.wait(10)
    base = None
    for rnd in (1, 2):
        socks, stop = hold_connections(port, 200, 100)
        time.sleep(1.0)
        if rnd == 1:
            memory(lp.p.pid)
        t0 = time.monotonic()
        peer = connect([where, "-i", ckey], h_c, b"allowed\n")
        peer.wait(10)
        took = time.monotonic() - t0
        print("figure: lockout round %d: the allowed peer finished in "
              "%.3f s beside 300 held connections" % (rnd, took),
              flush=True)
        check("lockout round %d: 200 idle and 100 noisy connections held "
              "open against -k --allow; the allowed peer gets through, "
              "exit 0" % rnd, peer.rc == 0,
              "exit %s after %.3f s: %r" % (peer.rc, took, peer.err()))
        timed("lockout round %d: the allowed peer" % rnd, took, 1.0)
        stop.set()
        for s in socks:
            s.close()
        # The listener's processes for them end; then measure it.
        wait_for(lambda: len(os.listdir("/proc/%d/task" % lp.p.pid)) == 1
                 and not children(lp.p.pid), 10)
        now = (rss_kib(lp.p.pid), fds(lp.p.pid))
        print("figure: lockout round %d: listener RSS %d KiB, %d "
              "descriptors, after the connections closed" % (rnd, now[0],
                                                            now[1]),
              flush=True)
        if base is None:
            base = now
    check("lockout: after the second round the listener's RSS is within "
          "512 KiB of the first's and its descriptors are back to their "
          "count", abs(now[0] - base[0]) <= 512 and now[1] == base[1],
          "first %r, second %r" % (base, now))
    lp.kill()


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    """With the pending handshakes full: the listener's RSS, and what its
    processes for them take."""
    kids = children(pid)
    rss = rss_kib(pid)
    print("figure: with %d connections held and %d handshake processes, "
          "the listener's RSS is %d KiB; with its processes, %d KiB "
          "(PSS)" % (300, len(kids), rss, pss_kib(pid) +
                     sum(pss_kib(k) for k in kids)), flush=True)
    bounded("with 64 handshakes pending, the listener's RSS is at most "
            "8 MiB", rss <= 8192, "RSS %d KiB" % rss)


def children(pid):
    """The processes whose parent is pid."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that holds every byte 50 ms in each
    direction before passing it on."""

    def __init__(self, port, delay=0.05):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.target, self.delay = port, delay
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.srv.accept()
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            for a, b in ((c, up), (up, c)):
                q = queue.Queue()
                threading.Thread(target=self.reader, args=(a, q),
                                 daemon=True).start()
                threading.Thread(target=self.writer, args=(b, q),
                                 daemon=True).start()

    def reader(self, s, q):
        try:
            while True:
                d = s.recv(65536)
                q.put((time.monotonic() + self.delay, d))
                if not d:
                    return
        except OSError:
            q.put((time.monotonic(), b""))

    @staticmethod
    def writer(s, q):
        try:
            while True:
                due, d = q.get()
                left = due - time.monotonic()
                if left > 0:
                    time.sleep(left)
                if not d:
                    s.shutdown(socket.SHUT_WR)
                    return
                s.sendall(d)
        except OSError:
            pass


def reconnecting_attackers(port, n, stop):
    """n connections from 127.0.0.2, each made again as soon as the
    listener drops it."""
    def run():
        socks = []
        while not stop.is_set():
            while len(socks) < n:
                s = socket.socket()
                try:
                    s.bind(("127.0.0.2", 0))
                    s.connect(("127.0.0.1", port))
                    socks.append(s)
                except OSError:
                    s.close()
                    time.sleep(0.01)
            r, _, _ = select.select(socks, [], [], 0.1)
            for s in r:
                try:
                    gone = not s.recv(4096)
                except OSError:
                    gone = True
                if gone:
                    socks.remove(s)
                    s.close()
        for s in socks:
            s.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def churn():
    h_l, h_c = new_home(), new_home()
    lp, port, ckey, _ = allowed_listener(h_l, h_c)
    if port is None:
        return check("churn: starts", False, lp.err())
    try:
        socket.create_connection(("127.0.0.1", port), source_address=(
            "127.0.0.2", 0)).close()
    except OSError as e:
        lp.kill()
        return check("churn: 127.0.0.2 can reach the listener", False,
                     repr(e))
    proxy = DelayProxy(port)
    stop = threading.Event()
    attackers = [reconnecting_attackers(port, 40, stop) for _ in range(2)]
    time.sleep(1.0)
    times, bad = [], []
    for i in range(20):
        t0 = time.monotonic()
        p = connect(["127.0.0.1:%d" % proxy.port, "-i", ckey, "-q"], h_c,
                    b"session %d\n" % i)
        p.wait(10)
        times.append(time.monotonic() - t0)
        if p.rc != 0:
            bad.append("session %d exited %s: %r" % (i, p.rc, p.err()))
    stop.set()
    for t in attackers:
        t.join(5)
    times.sort()
    print("figure: churn: 20 sessions through 50 ms each way beside "
          "reconnecting attackers: median %.3f s, slowest %.3f s" % (
              times[10], times[-1]), flush=True)
    check("churn: attackers on 127.0.0.2 reconnecting as soon as dropped; "
          "the allowed peer behind 50 ms each way finishes 20 sessions of "
          "20", not bad, "; ".join(bad))
    timed("churn: the slowest session", times[-1], 1.0)
    lp.kill()


# 4. A cut session under -k.

def cut():
    h_l, h_c = new_home(), new_home()
    lp, port = listen(h_l, ["-k"])
    track(lp)
    if port is None:
        return check("cut: starts", False, lp.err())
    data = os.urandom(100000)
    c = connect(["127.0.0.1:%d" % port], h_c, subprocess.PIPE)
    c.p.stdin.write(data)
    c.p.stdin.flush()
    arrived = wait_for(lambda: len(lp.out()) == len(data), 10)
    c.p.send_signal(signal.SIGKILL)
    c.wait(5)
    told = wait_for(lambda: lines_with(lp, "Session with"), 10)
    line = (lines_with(lp, "Session with") or [""])[0]
    check("-k pipe mode: a cut session's line says cut, with the bytes "
          "that came", arrived and told and "100000 bytes in" in line and
          "cut" in line and lp.alive(), "line %r; stderr %r" % (
              line, lp.err()[-400:]))
    lp.kill()


# 5. -e CMD.

def exec_listener(h_l, h_c, cmd, extra=(), name=""):
    """allowed_listener running cmd for each session."""
    return allowed_listener(h_l, h_c, ["-e", cmd] + list(extra), name)


def exec_many():
    h_l, h_c = new_home(), new_home()
    lp, port, ckey, _ = exec_listener(h_l, h_c, "cat")
    if port is None:
        return check("-e cat: starts", False, lp.err())
    bad, lock = [], threading.Lock()

    def lane(k):
        for i in range(20):
            data = os.urandom(1000 + 997 * k + i)
            p = connect(["127.0.0.1:%d" % port, "-i", ckey, "-q"], h_c,
                        data)
            p.wait(30)
            if p.rc != 0 or p.out() != data:
                with lock:
                    bad.append("lane %d session %d: exit %s, %d of %d "
                               "bytes back: %r" % (k, i, p.rc, len(p.out()),
                                                   len(data), p.err()))
            p.outf.close()
            p.errf.close()
    t0 = time.monotonic()
    lanes = [threading.Thread(target=lane, args=(k,)) for k in range(16)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join(120)
    took = time.monotonic() - t0
    print("figure: -e cat: 320 sessions from 16 connectors at once in "
          "%.1f s (%.0f per s)" % (took, 320 / took), flush=True)
    check("-e cat: 16 connectors at once, 20 sessions each: every byte "
          "comes back, every connector exits 0", not bad,
          "; ".join(bad[:3]))
    lp.kill()


def exec_failures():
    h_l, h_c = new_home(), new_home()
    lp, port, ckey, _ = exec_listener(h_l, h_c, "cat >/dev/null; exit 3")
    if port is None:
        return check("-e exit 3: starts", False, lp.err())
    p = connect(["127.0.0.1:%d" % port, "-i", ckey], h_c, b"data\n")
    p.wait(10)
    errs = errors(p)
    check("-e 'cat >/dev/null; exit 3': the connector exits 5 with "
          "'command exited with status 3'", p.rc == 5 and len(errs) == 1 and
          errs[0] == PROG + "peer failed: command exited with status 3",
          "exit %s: %r" % (p.rc, p.err()))
    lp.kill()

    # A connector killed mid-stream: the command is signalled before its
    # stdin closes; it records how its input ended.
    rec = h_l.path("record")
    cmd = ("trap 'echo TERM >> %s; exit 0' TERM; cat > %s; "
           "echo EOF >> %s" % (rec, h_l.path("f"), rec))
    lp, port, ckey, _ = exec_listener(h_l, h_c, cmd)
    if port is None:
        return check("-e with a cut: starts", False, lp.err())
    c = connect(["127.0.0.1:%d" % port, "-i", ckey], h_c, subprocess.PIPE)
    c.p.stdin.write(os.urandom(100000))
    c.p.stdin.flush()
    arrived = wait_for(lambda: os.path.exists(h_l.path("f")) and
                       os.path.getsize(h_l.path("f")) == 100000, 10)
    c.p.send_signal(signal.SIGKILL)
    c.wait(5)
    wait_for(lambda: os.path.exists(rec) and open(rec).read().endswith(
        "\n"), 10)
    wait_for(lambda: lines_with(lp, "Session with"), 10)
    got = open(rec).read() if os.path.exists(rec) else ""
    check("-e: a connector killed mid-stream has the command signalled "
          "(SIGTERM), never given a clean end of its input", arrived and
          got == "TERM\n", "record %r, stderr %r" % (got, lp.err()[-300:]))
    lp.kill()


def exec_env():
    h_l, h_c = new_home(), new_home()
    # The connector claims a name with -n: only --allow's name counts.
    for verbose, name in ((False, ""), (True, ""), (False, "carol")):
        lp, port, ckey, cpub = exec_listener(
            h_l, h_c, "env | grep '^X25519CHAT_' | sort",
            ["-v"] if verbose else [], name)
        if port is None:
            return check("-e env: starts", False, lp.err())
        p = connect(["127.0.0.1:%d" % port, "-i", ckey, "-n", "mallory"],
                    h_c, b"")
        p.wait(10)
        wait_for(lambda: lines_with(lp, "Session with"), 5)
        lp.kill()
        client = [ln for ln in lp.err().splitlines()
                  if ln.startswith("Client 127.0.0.1:")]
        cport = client[0].split(":")[1].split()[0] if client else "?"
        code = [ln.split()[2] for ln in p.err().splitlines()
                if ln.startswith("Session code: ")]
        want = ["X25519CHAT_PEER_ADDR=127.0.0.1",
                "X25519CHAT_PEER_KEY=" + cpub]
        if name:
            want.append("X25519CHAT_PEER_NAME=" + name)
        want.append("X25519CHAT_PEER_PORT=" + cport)
        if verbose:
            want.append("X25519CHAT_SESSION_CODE=" + (code or ["?"])[0])
        got = p.out().decode().splitlines()
        check("-e %s, a connector saying -n mallory: the environment holds "
              "exactly the verified values (%s; %s)" % (
                  "-v" if verbose else "without -v", "with the session code"
                  if verbose else "no session code", "X25519CHAT_PEER_NAME="
                  "carol from --allow" if name else "no X25519CHAT_PEER_NAME "
                  "for a key without a name"),
              p.rc == 0 and got == want, "exit %s, got %r, expected %r" % (
                  p.rc, got, want))
        if name:
            line = (lines_with(lp, "Session with") or [""])[0]
            check("-e: the session's line names the peer as --allow does",
                  line.startswith("Session with carol at 127.0.0.1:"),
                  "line %r" % line)
    for args, what in ((["-e", "cat"], "-e without --allow, --peer or "
                        "--psk"), (["-e", "cat", "--classic"],
                                   "-e with --classic")):
        p = track(Proc(["-l", "127.0.0.1:0"] + args, h_l))
        p.wait(10)
        check("%s: exit 2, one line" % what, p.rc == 2 and
              len(errors(p)) == 1 and p.err().count("\n") == 1,
              "exit %s: %r" % (p.rc, p.err()))


def with_marker(marker):
    """The processes whose command line holds marker."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if marker.encode() in f.read() and int(d) != os.getpid():
                    found.append(int(d))
        except (OSError, ValueError):
            pass
    return found


def exec_sigterm():
    h_l, h_c = new_home(), new_home()
    rec = h_l.path("record")
    # A sleep no other process runs, to find what is left afterwards.
    marker = "100.%d" % (os.getpid() % 100000)
    lp, port, ckey, _ = exec_listener(
        h_l, h_c, "trap 'echo TERM >> %s; exit 0' TERM; cat; sleep %s" % (
            rec, marker))
    if port is None:
        return check("-e SIGTERM: starts", False, lp.err())
    c = connect(["127.0.0.1:%d" % port, "-i", ckey], h_c, subprocess.PIPE)
    running = wait_for(lambda: lines_with(lp, "Client 127.0.0.1:") and
                       children(lp.p.pid), 10)
    time.sleep(0.3)
    lp.p.send_signal(signal.SIGTERM)
    rc = lp.wait(15)
    c.kill()
    left = with_marker(marker)
    got = open(rec).read() if os.path.exists(rec) else ""
    check("-e: SIGTERM to the listener reaches the command's group, and "
          "the listener exits 143 once they are gone, no process left",
          running and rc == 143 and got == "TERM\n" and not left,
          "exit %s, record %r, left %r, stderr %r" % (rc, got, left,
                                                     lp.err()[-300:]))


def main():
    try:
        strays(True)
        strays(False)
        busy(False)
        busy(True)
        race()
        cut()
        lockout()
        churn()
        exec_env()
        exec_failures()
        exec_sigterm()
        exec_many()
    finally:
        for p in procs:
            p.kill()
        for h in homes:
            h.cleanup()
    finish()


if __name__ == "__main__":
    main()
