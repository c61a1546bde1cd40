#!/usr/bin/python3
"""The attack suite: x25519chat facing a man in the middle and hostile
peers on loopback, with each fault tried at every position it can take.

A. The man in the middle (Mitm) sits between two real x25519chat
   processes, a listener and a connector, in pipe mode, each with its own
   configuration directory and a pipe as stdin.  It cuts each direction of
   the TCP stream into frames (handshake messages "u32 length || message",
   or the bare 32-byte keys of --classic; then transport packets "u32
   length || nonce || tag || ciphertext") and applies one fault per case.
   Each side writes three short chunks, each one only once the previous
   one has crossed the middle, so every chunk is one DATA packet (one line
   in classic) and the middle knows what every packet carries.
B. By position: one bit flipped at each byte of every handshake message
   and of one packet of each kind (and every bit of their last length
   byte), and the connection cut after each byte of the handshake in each
   direction; both protocols.
C. The other faults, both protocols and both directions where they
   apply: drop, duplicate, reorder, replay, reflect, truncate, a cut
   after data without CLOSE, data after CLOSE, garbage, bad lengths;
   garbage, a wrong size, a slow or a stalled message in place of each
   handshake message; the low-order public keys of the x25519 test
   vectors; a classic peer meeting a default one.
D. An active man in the middle with a key of its own, against --peer,
   --allow, known_peers and --psk; and without them, where only the
   session codes tell.
E. Hostile peers: every unknown packet type, silent and trickling peers
   past -w, and a -k listener that then serves a good peer.

Each case asserts both sides' exit status as x25519chat(1) documents it,
exactly one "x25519chat: " line on stderr for a failure (none for
success), no crash and no hang, and that stdout holds exactly the bytes
of the packets the side must accept, in the order they reached it, up to
the first it must refuse.  That last value comes from a model of the two
protocols applied to what the middle really delivered (see model_out), so
it is exact even where timing decides how far a side got.

How the exit status becomes exact.  The side that receives the faulty
packet keeps its stdin open (policy "hold") until it exits, so it never
sends CLOSE: the sender of the faulty packet then always sees the
connection end before the peer's CLOSE (status 4), and never a CLOSE that
would make its own end clean.  The sending side closes its stdin once its
chunks are out ("close"), so its CLOSE and its end of TCP always come, and
a receiver waiting for the bytes of a lengthened packet always meets them.
A packet reflected back to its sender travels in the other side's stream,
so that side closes its stdin only once the packet has gone through (a
policy naming that frame), and its CLOSE cannot overtake it.  The middle
passes an end of TCP (or a reset) on as an end of TCP, so a classic side
sees a clean end between packets.  Where an outcome still depends on
timing, the comment at the case says why and the check allows each.

Run from the top directory: /usr/bin/python3 test/attack.py
"""

import concurrent.futures
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import noise  # noqa: E402  (the Noise peer: Handshake, Direction, Rig...)
from harness import TOP, Home, Proc, check, finish, listen  # noqa: E402

C2L, L2C = "c2l", "l2c"
SRC = {C2L: "C", L2C: "L"}          # who writes into a direction
DST = {C2L: "L", L2C: "C"}          # who reads it
REV = {C2L: L2C, L2C: C2L}
FROM = {"L": L2C, "C": C2L}
INTO = {"L": C2L, "C": L2C}
WHO = {"L": "listener", "C": "connector"}
ARROW = {C2L: "connector to listener", L2C: "listener to connector"}

NOISE, CLASSIC = "default", "classic"
HS_FRAMES = {NOISE: {C2L: 2, L2C: 1}, CLASSIC: {C2L: 1, L2C: 1}}
NAME = {"L": "lis", "C": "con"}
# Body sizes of the handshake messages with 3-byte names, and the largest
# each may announce (names of up to 64 bytes; message 1 has no payload).
HS_BODY = {(C2L, 0): 32, (L2C, 0): 96 + 3, (C2L, 1): 64 + 3}
HS_MAX = {(C2L, 0): 32, (L2C, 0): 96 + 64, (C2L, 1): 64 + 64}
HS_LABEL = {(C2L, 0): "message 1 (-> e)", (L2C, 0): "message 2 (<- e, ee, "
            "s, es)", (C2L, 1): "message 3 (-> s, se)"}
MINLEN = {NOISE: 29, CLASSIC: 28}   # a type byte, or an empty line
MAXLEN = 28 + 65536
CLOSE_MARK = object()               # the payload of a CLOSE packet

NCHUNK = 3                          # chunks each side writes
WAIT = {"L": 6, "C": 3}             # -w: the connector gives up first
WORKERS = 8                         # cases run at once
CASE_LIMIT = 15                     # seconds before a case is a hang
HOLD_LIMIT = 4                      # seconds a held stdin stays open
BUDGET = 180                        # seconds before no case starts

LEN = "packet length out of bounds"
TAG = r"authentication failed \(bad tag\)"
NONCE = r"unexpected nonce"
TYPE = r"malformed packet \(unknown type or body\)"
# Error lines are matched on what names the failure; the hints that
# follow (which option may be the cause) are free.
R_HS = r"^handshake with \S+ failed: "
R_HS_CLOSED = R_HS + "(the connection closed during the handshake|the " \
    "peer closed the connection without a word)"
R_HS_BAD = R_HS + "(malformed handshake message|authentication failed)"
R_HS_MALFORMED = R_HS + "malformed handshake message"
R_TIMEOUT = R_HS + "timed out"
R_LOW = R_HS + "peer sent a low-order public key"
R_REFUSED = r"^the listener closed the connection after the handshake"
R_CUT = r"^connection cut before the peer's CLOSE"
R_MIDDLE = r"^connection closed in the middle of a packet$"
R_OWN = r"^packet \d+ from peer: (%s|%s)" % (NONCE, TAG)


def R_PKT(t, what):
    return r"^packet %d from peer: %s" % (t, what)


STARTED = set()                     # Procs not yet released
_started_lock = threading.Lock()


def tear_down(procs, mitm, homes):
    """End a case: its processes, its man in the middle, its homes."""
    for p in procs.values():
        release(p)
    if mitm is not None:
        mitm.close()
    for h in homes.values():
        h.cleanup()


def track(proc):
    with _started_lock:
        STARTED.add(proc)
    return proc


def release(proc):
    """Kill proc if it still runs (only this pid), and free its files."""
    proc.kill()
    proc.outf.close()
    proc.errf.close()
    with _started_lock:
        STARTED.discard(proc)
    if proc in noise.STARTED:
        noise.STARTED.remove(proc)


def give(proc, data):
    """proc's stdin (a pipe) gets data, then its end."""
    try:
        proc.p.stdin.write(data)
        proc.p.stdin.close()
    except (OSError, ValueError):
        pass


def error_lines(err):
    return [ln[len("x25519chat: "):] for ln in err.splitlines()
            if ln.startswith("x25519chat: ")]


def short(data, limit=50):
    if len(data) <= limit:
        return repr(data)
    return "%d bytes %r..." % (len(data), data[:limit])


def low_order_points():
    """The public keys of the x25519 vectors that are low-order points
    (every shared secret with them is zero), each once."""
    path = os.path.join(TOP, "test", "vectors", "wycheproof_x25519.json")
    with open(path) as f:
        groups = json.load(f)["testGroups"]
    points = []
    for g in groups:
        for t in g["tests"]:
            if t["result"] == "acceptable" and {"LowOrderPublic",
                                                "ZeroSharedSecret"} <= \
                    set(t["flags"]):
                p = bytes.fromhex(t["public"])
                if p not in points:
                    points.append(p)
    return points


# ------------------------------------------------- what each frame carries

def first_t(proto, side):
    """Transport index of a side's first chunk: the listener's first
    packet in the default protocol is the empty DATA."""
    return 1 if proto == NOISE and side == "L" else 0


def chunk_frame(proto, side, k):
    """Index, in its direction, of the frame carrying chunk k of side."""
    return HS_FRAMES[proto][FROM[side]] + first_t(proto, side) + k


def payload(case, d, j):
    """What frame j of direction d carries after the handshake: the bytes
    the receiver must write out, CLOSE_MARK, or None (no such frame)."""
    side = SRC[d]
    proto = case.proto_of[side]
    t = j - HS_FRAMES[proto][d] - first_t(proto, side)
    chunks = case.chunks[side]
    if t == -1 and proto == NOISE and side == "L":
        return b""
    if 0 <= t < len(chunks):
        return chunks[t]
    if t == len(chunks) and proto == NOISE:
        return CLOSE_MARK
    return None


def frame_size(case, d, j):
    """The size of frame j of direction d, prefix included, or None."""
    proto = case.proto_of[SRC[d]]
    if j < HS_FRAMES[proto][d]:
        return 32 if proto == CLASSIC else 4 + HS_BODY[(d, j)]
    p = payload(case, d, j)
    if p is None:
        return None
    if p is CLOSE_MARK:
        return 4 + 28 + 1
    # A classic line travels without its newline; a DATA has a type byte.
    return 4 + 28 + len(p) + (-1 if proto == CLASSIC else 1)


def model_out(case, m, side):
    """What side must have written to stdout, given what the middle
    delivered to it: default, each next packet of the other side in
    order, up to CLOSE or the first packet out of place or altered;
    classic, every unaltered packet (one key serves both directions, so a
    packet reflected back is as good as any), up to the first altered
    one.  Nothing at all if its handshake did not get the frames it
    needs intact."""
    d_in = INTO[side]
    proto = case.proto_of[side]
    log = m.delivered[side]
    hs = HS_FRAMES[proto][d_in]
    if len(log) < hs or any(log[k][:2] != ((d_in, k), "intact")
                            for k in range(hs)):
        return b""
    out, nxt = [], 0
    for origin, kind, _ in log[hs:]:
        if kind != "intact":
            break
        d, j = origin
        p = payload(case, d, j)
        if p is None or j < HS_FRAMES[proto][d]:
            break
        if proto == NOISE:
            if d != d_in or j - HS_FRAMES[proto][d] != nxt or \
                    p is CLOSE_MARK:
                break
            nxt += 1
        out.append(p)
    return b"".join(out)


# ------------------------------------------------- A. the man in the middle

class Fault:
    """Forward every frame as it is, and pass on the end of each
    direction.  Faults override frame() (and eof() if they must)."""

    def frame(self, m, d, j, f):
        m.forward(d, j, f)

    def eof(self, m, d):
        m.fin(d)

    def raw(self, m, d, data):
        m.send(d, data, (d, None), "raw")


class At(Fault):
    """act(m, d, j, f) on frame j of direction d; the rest forwarded."""

    def __init__(self, d, j, act):
        self.d, self.j, self.act = d, j, act

    def frame(self, m, d, j, f):
        if (d, j) == (self.d, self.j):
            self.act(m, d, j, f)
        else:
            m.forward(d, j, f)


def flip(i, bit, kind="modified"):
    def act(m, d, j, f):
        g = bytearray(f)
        g[i] ^= 1 << bit
        m.send(d, bytes(g), (d, j), kind)
    return act


def drop(m, d, j, f):
    pass


def twice(m, d, j, f):
    m.forward(d, j, f)
    m.forward(d, j, f)


def reflect(m, d, j, f):
    """Back to its sender first, then on as usual."""
    m.send(REV[d], f, (d, j), "intact")
    m.forward(d, j, f)


def truncate(m, d, j, f):
    m.send(d, f[:len(f) // 2], (d, j), "partial")
    m.fin(d)


def end_instead(m, d, j, f):
    m.fin(d)


def slowly(m, d, j, f):
    m.send_slowly(d, f, (d, j))


def stall(m, d, j, f):
    m.send(d, f[:len(f) // 2], (d, j), "partial")
    m.hold(d)


def replace(make, then="go"):
    """Send make(frame) instead; with then="hold", nothing more follows
    in that direction, not even its end."""
    def act(m, d, j, f):
        m.send(d, make(f), (d, j), "garbage")
        if then == "hold":
            m.hold(d)
    return act


class Reorder(Fault):
    """Frames j and j + 1 of direction d swapped."""

    def __init__(self, d, j):
        self.d, self.j, self.kept = d, j, None

    def frame(self, m, d, j, f):
        if (d, j) == (self.d, self.j):
            self.kept = f
            return
        m.forward(d, j, f)
        if (d, j) == (self.d, self.j + 1):
            m.forward(d, self.j, self.kept)
            self.kept = None

    def eof(self, m, d):
        if d == self.d and self.kept is not None:
            m.forward(d, self.j, self.kept)
        m.fin(d)


class Replay(Fault):
    """Frame j of direction d sent again right after frame `after`."""

    def __init__(self, d, j, after):
        self.d, self.j, self.after, self.kept = d, j, after, None

    def frame(self, m, d, j, f):
        m.forward(d, j, f)
        if (d, j) == (self.d, self.j):
            self.kept = f
        if (d, j) == (self.d, self.after) and self.kept is not None:
            m.forward(d, self.j, self.kept)


class CutAfter(Fault):
    """The TCP connection cut (both ways) once n bytes of direction d
    have gone through."""

    def __init__(self, d, n):
        self.d, self.n, self.sent = d, n, 0

    def frame(self, m, d, j, f):
        if d != self.d:
            m.forward(d, j, f)
            return
        left = self.n - self.sent
        if len(f) <= left:
            self.sent += len(f)
            m.forward(d, j, f)
            return
        if left:
            m.send(d, f[:left], (d, j), "partial")
        m.cut()


class Mitm:
    """A TCP relay on 127.0.0.1 for one connector and one listener, which
    cuts each direction into frames and hands each to the case's fault.
    delivered[side] lists what reached that side: ((direction, frame
    index), kind, bytes), kind being intact, modified, partial, garbage
    or raw."""

    def __init__(self, case, lport):
        self.case, self.lport = case, lport
        self.fault = case.fault
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(2)
        self.port = self.srv.getsockname()[1]
        self.cond = threading.Condition()
        self.handled = {C2L: 0, L2C: 0}
        self.ended = {C2L: False, L2C: False}
        self.done = False
        self.delivered = {"L": [], "C": []}
        self.buf = {C2L: bytearray(), L2C: bytearray()}
        self.seen = {C2L: 0, L2C: 0}
        self.held, self.closed, self.dead = set(), set(), set()
        self.is_cut = False
        self.sock = {}
        self.problem = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        try:
            self.srv.settimeout(0.1)
            end = time.monotonic() + CASE_LIMIT
            while True:
                try:
                    c, _ = self.srv.accept()
                    break
                except socket.timeout:
                    if self.stop or time.monotonic() > end:
                        return
            lsock = socket.create_connection(("127.0.0.1", self.lport),
                                             timeout=5)
            for s in (c, lsock):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(5)
            self.sock = {"C": c, "L": lsock}
            live = {C2L, L2C}
            poller = select.poll()
            fds = {}
            for d in live:
                fds[self.sock[SRC[d]].fileno()] = d
                poller.register(self.sock[SRC[d]], select.POLLIN)
            while live and not self.stop:
                for fd, _ in poller.poll(100):
                    d = fds[fd]
                    if d not in live:
                        continue
                    s = self.sock[SRC[d]]
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""      # a reset ends it like a FIN
                    if data:
                        self._input(d, data)
                    else:
                        live.discard(d)
                        poller.unregister(s)
                        self._end(d)
        except Exception as exc:    # reported as the case's failure
            self.problem = "the man in the middle failed: %s: %s" % (
                type(exc).__name__, exc)
        finally:
            self.srv.close()
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _input(self, d, data):
        if self.is_cut:
            return
        if self.case.framing is None:
            self.fault.raw(self, d, data)
            return
        buf = self.buf[d]
        buf += data
        while True:
            j = self.seen[d]
            if self.case.framing == CLASSIC and j == 0:
                need = 32
            elif len(buf) < 4:
                break
            else:
                need = 4 + struct.unpack(">I", bytes(buf[:4]))[0]
            if len(buf) < need:
                break
            f = bytes(buf[:need])
            del buf[:need]
            self.seen[d] = j + 1
            want = frame_size(self.case, d, j)
            if want != len(f) and self.problem is None:
                self.problem = ("the %s sent a %d-byte frame %d where %s "
                                "was expected" % (WHO[SRC[d]], len(f), j,
                                                  want))
            self.fault.frame(self, d, j, f)
            with self.cond:
                self.handled[d] = j + 1
                self.cond.notify_all()
            if self.is_cut:
                return

    def _end(self, d):
        rest = bytes(self.buf[d])
        self.buf[d].clear()
        if rest:
            self.send(d, rest, (d, self.seen[d]), "partial")
        self.fault.eof(self, d)
        with self.cond:
            self.ended[d] = True
            self.cond.notify_all()

    # What faults do with the stream.

    def send(self, d, data, origin, kind):
        """Write data into direction d; log it as delivered."""
        dst = DST[d]
        if self.is_cut or d in self.held or d in self.closed or \
                dst in self.dead:
            return
        try:
            self.sock[dst].sendall(data)
        except OSError:
            self.dead.add(dst)
            return
        self.delivered[dst].append((origin, kind, data))

    def forward(self, d, j, f):
        self.send(d, f, (d, j), "intact")

    def send_slowly(self, d, f, origin):
        """One byte at a time, so the reader gets it in short reads."""
        dst = DST[d]
        if self.is_cut or d in self.held or d in self.closed:
            return
        try:
            for k in range(len(f)):
                self.sock[dst].sendall(f[k:k + 1])
                time.sleep(0.003)
        except OSError:
            self.dead.add(dst)
            return
        self.delivered[dst].append((origin, "intact", f))

    def fin(self, d):
        """End direction d (a FIN to its reader); nothing more goes in."""
        if d in self.held or d in self.closed or self.is_cut:
            return
        self.closed.add(d)
        try:
            self.sock[DST[d]].shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def hold(self, d):
        """Nothing more in direction d, not even its end."""
        self.held.add(d)

    def cut(self):
        for d in (C2L, L2C):
            self.fin(d)
        with self.cond:
            self.is_cut = True
            self.cond.notify_all()

    # For the feeders.

    def wait_frame(self, d, j, timeout=CASE_LIMIT):
        """Until frame j of direction d has been handled, or direction d
        has ended, or the connection is gone."""
        end = time.monotonic() + timeout
        with self.cond:
            while not (self.handled[d] > j or self.ended[d] or
                       self.is_cut or self.done):
                left = end - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def close(self):
        self.stop = True
        self.thread.join(3)
        for s in self.sock.values():
            s.close()
        self.srv.close()


# ------------------------------------------------- cases with a middle

KEYS = {}                           # side -> identity file (default)
PUB = {}                            # side -> its public key in base64
ALLOW = []                          # an --allow file naming the connector
PSKS = {}                           # name -> PSK file


class Case:
    """One fault between two x25519chat processes and what must follow.
    rc: side -> allowed exit statuses; err: side -> regex its one error
    line must match (when it fails); out: "model" (see model_out) or
    "none" (both stdouts empty); policy: side -> "close", "hold" or
    (direction, frame): when its stdin closes (see the docstring above);
    silent: sides that write nothing; wait: side -> -w."""

    def __init__(self, name, proto, fault, rc, err, out="model",
                 policy=None, silent=(), wait=None, group=None, psk=None):
        self.name, self.group = name, group
        pair = (proto, proto) if isinstance(proto, str) else proto
        self.proto_of = dict(zip("LC", pair))
        self.psk = psk or {}
        # Mixed protocols, or a PSK (message 1 grows by a tag): a plain
        # relay, which follows no frames, and sides that write nothing.
        self.framing = pair[0] if pair[0] == pair[1] and not any(
            self.psk.values()) else None
        if self.framing is None:
            silent = "LC"
        self.fault = fault
        self.rc = {s: set(v) if isinstance(v, (set, tuple, list)) else {v}
                   for s, v in rc.items()}
        self.err = dict(err)
        self.out = out
        self.policy = {"L": "close", "C": "close"}
        self.policy.update(policy or {})
        self.wait = dict(WAIT)
        self.wait.update(wait or {})
        self.chunks = {s: [] if s in silent else
                       [b"%s%d:%s\n" % (s.encode(), k,
                                        os.urandom(3).hex().encode())
                        for k in range(NCHUNK)] for s in "LC"}

    def argv(self, side):
        w = ["-w", str(self.wait[side])]
        if self.proto_of[side] == CLASSIC:
            return ["--classic"] + w
        if self.psk.get(side):
            w += ["--psk", PSKS[self.psk[side]]]
        return ["-i", KEYS[side], "-n", NAME[side]] + w

    def run(self):
        homes = {"L": Home(), "C": Home()}
        procs, m, feeders = {}, None, []
        try:
            lp, port = listen(homes["L"], self.argv("L"),
                              stdin=subprocess.PIPE)
            procs["L"] = track(lp)
            if port is None:
                return ["the listener did not start: %r" % lp.err()[-300:]]
            m = Mitm(self, port)
            m.start()
            procs["C"] = track(Proc(["-c", "127.0.0.1:%d" % m.port] +
                                    self.argv("C"), homes["C"],
                                    stdin=subprocess.PIPE))
            deadline = time.monotonic() + CASE_LIMIT
            for side in "LC":
                t = threading.Thread(target=self.feed,
                                     args=(m, procs[side], side),
                                     daemon=True)
                t.start()
                feeders.append(t)
            for side in "LC":
                procs[side].wait(max(0.1, deadline - time.monotonic()))
            m.close()
            for t in feeders:
                t.join(2)
            return self.judge(m, procs)
        finally:
            tear_down(procs, m, homes)

    def feed(self, m, proc, side):
        """Write side's chunks, each once the previous one has crossed
        the middle; then close stdin as the policy says."""
        stdin = proc.p.stdin
        d = FROM[side]
        proto = self.proto_of[side]
        chunks = self.chunks[side]
        try:
            for k, chunk in enumerate(chunks):
                if k:
                    m.wait_frame(d, chunk_frame(proto, side, k - 1))
                stdin.write(chunk)
                stdin.flush()
            if chunks:
                m.wait_frame(d, chunk_frame(proto, side, len(chunks) - 1))
            policy = self.policy[side]
            if policy == "hold":
                end = time.monotonic() + HOLD_LIMIT
                while proc.alive() and time.monotonic() < end:
                    time.sleep(0.02)
            elif policy != "close":
                m.wait_frame(*policy)
        except (OSError, ValueError):
            pass                        # it has exited: nothing to feed
        finally:
            try:
                stdin.close()
            except (OSError, ValueError):
                pass

    def judge(self, m, procs):
        why = []
        if m.problem:
            why.append(m.problem)
        for side in "LC":
            p, who = procs[side], WHO[side]
            rc, errs = p.rc, error_lines(p.err())
            if rc is None:
                why.append("%s hung (killed after %ds)" % (who, CASE_LIMIT))
                continue
            if rc < 0:
                why.append("%s died of signal %d" % (who, -rc))
                continue
            if rc not in self.rc[side]:
                why.append("%s exit %d, expected %s" % (
                    who, rc, "/".join(map(str, sorted(self.rc[side])))))
            if rc == 0 and errs:
                why.append("%s exited 0 with error lines %r" % (who, errs))
            if rc != 0 and len(errs) != 1:
                why.append("%s: %d error lines, expected 1: %r" % (
                    who, len(errs), errs))
            elif rc != 0 and self.err.get(side) and \
                    not re.search(self.err[side], errs[0]):
                why.append("%s: error line %r does not match /%s/" % (
                    who, errs[0], self.err[side]))
            want = model_out(self, m, side) if self.out == "model" else b""
            if p.out() != want:
                why.append("%s stdout %s, expected %s" % (
                    who, short(p.out()), short(want)))
        if why:
            why.append("stderr: listener %r, connector %r" % (
                procs["L"].err()[-300:], procs["C"].err()[-300:]))
        return why


def y_detects(proto, d, y_rc, y_err):
    """The reader of direction d detects the fault and keeps its stdin
    open; the writer then sees the connection end before the reader's
    CLOSE (default: 4), or a clean end between packets (classic: 0)."""
    x, y = SRC[d], DST[d]
    x_rc, x_err = (4, R_CUT) if proto == NOISE else (0, None)
    return dict(rc={y: y_rc, x: x_rc}, err={y: y_err, x: x_err},
                policy={y: "hold"})


def grow_outcome(proto, t, size, new, avail):
    """Exit and error of the reader of packet t whose length `size` the
    fault made `new`; avail bytes follow that packet in its direction."""
    if new < MINLEN[proto] or new > MAXLEN:
        return 3, R_PKT(t, LEN)
    if new < size or new - size <= avail:
        return 3, R_PKT(t, TAG)       # the bytes read are not the packet
    # It waits for bytes that never come; the writer's end arrives.
    return (4, R_CUT) if proto == NOISE else (3, R_MIDDLE)


def positions(size, salt):
    """(byte, bit) for every byte of a frame of size bytes, the bit
    varying along the frame."""
    return [(i, (i + salt) % 8) for i in range(size)]


def length_bits(salt, prefixed=True):
    """Every other bit of the last length byte (byte 3)."""
    return [(3, b) for b in range(8) if b != (3 + salt) % 8] \
        if prefixed else []


# --------------------------------------------- B. faults at every position

def hs_flip_expect(d, j, i, bit):
    """A default handshake message with one bit flipped."""
    size = HS_BODY[(d, j)]
    msg = {(C2L, 0): 1, (L2C, 0): 2, (C2L, 1): 3}[(d, j)]
    if msg == 3:        # the listener fails; the connector has finished
        rc, err = {"L": 3, "C": 3}, {"L": R_HS_BAD, "C": R_REFUSED}
    elif msg == 2:
        rc, err = {"L": 3, "C": 3}, {"C": R_HS_BAD, "L": R_HS_CLOSED}
    else:               # a changed e goes unseen until message 2 fails
        rc, err = {"L": 3, "C": 3}, {"C": R_HS_BAD, "L": R_HS_CLOSED}
    if i < 4:
        new = size ^ (1 << (8 * (3 - i) + bit))
        if new > HS_MAX[(d, j)]:
            rc[DST[d]], err = 3, {DST[d]: R_HS_MALFORMED,
                                  SRC[d]: R_HS_CLOSED if msg < 3 else
                                  R_REFUSED}
        elif msg == 1:
            err = {"L": R_HS_MALFORMED, "C": R_HS_CLOSED}
        elif msg == 2 and new > size:
            # The connector waits for bytes the listener will not send
            # before message 3: it times out (its -w is the shorter).
            rc, err = {"C": 1, "L": 3}, {"C": R_TIMEOUT, "L": R_HS_CLOSED}
        # A longer message 3 takes its missing bytes from the
        # connector's first packets: a bad tag all the same.
    return rc, err


def position_cases():
    cases = []
    # Default handshake: both sides fail in the handshake; nothing shown.
    for (d, j) in ((C2L, 0), (L2C, 0), (C2L, 1)):
        salt = j + (3 if d == L2C else 0)
        pos = positions(4 + HS_BODY[(d, j)], salt) + length_bits(salt)
        group = "default, %s, %s: one bit flipped at each of its %d bytes " \
            "and every bit of its last length byte (%d cases): documented " \
            "exits, nothing shown" % (HS_LABEL[(d, j)], ARROW[d],
                                      4 + HS_BODY[(d, j)], len(pos))
        for i, bit in pos:
            rc, err = hs_flip_expect(d, j, i, bit)
            cases.append(Case("byte %d bit %d" % (i, bit), NOISE,
                              At(d, j, flip(i, bit)), rc, err, out="none",
                              group=group))
    # Classic keys: no authentication, so each side computes its own key;
    # the reader of the altered key, silent, fails on the first packet
    # and the other sees a clean end.  X25519 ignores the top bit of a
    # public key (RFC 7748), so flipping that bit changes nothing.
    for d in (C2L, L2C):
        salt = 0 if d == C2L else 3
        pos = positions(32, salt)
        group = "classic, the %s's key, %s: one bit flipped at each of " \
            "its 32 bytes (%d cases): the first packet refused, or (top " \
            "bit) nothing changed" % (WHO[SRC[d]], ARROW[d], len(pos))
        for i, bit in pos:
            if i == 31 and bit == 7:
                # The same key to X25519: the model takes it as intact.
                cases.append(Case("byte 31 bit 7 (ignored by X25519)",
                                  CLASSIC, At(d, 0, flip(i, bit, "intact")),
                                  {"L": 0, "C": 0}, {}, group=group))
                continue
            y, x = DST[d], SRC[d]
            cases.append(Case("byte %d bit %d" % (i, bit), CLASSIC,
                              At(d, 0, flip(i, bit)), {y: 3, x: 0},
                              {y: R_PKT(0, TAG)}, out="none",
                              policy={y: "hold"}, silent=(y,),
                              group=group))
    # Transport: one packet of each kind.
    kinds = [(NOISE, "L", "the first (empty) DATA", -1),
             (NOISE, "L", "a DATA", 1), (NOISE, "C", "a DATA", 1),
             (NOISE, "L", "the CLOSE", NCHUNK),
             (NOISE, "C", "the CLOSE", NCHUNK),
             (CLASSIC, "L", "a line", 1), (CLASSIC, "C", "a line", 1)]
    for proto, x, label, k in kinds:
        d = FROM[x]
        j = chunk_frame(proto, x, k)
        t = first_t(proto, x) + k
        probe = Case("", proto, None, {}, {})
        size = frame_size(probe, d, j) - 4
        avail = sum(frame_size(probe, d, jj)
                    for jj in range(j + 1, chunk_frame(proto, x, NCHUNK) +
                                    (1 if proto == NOISE else 0)))
        salt = j + (3 if d == L2C else 0)
        pos = positions(4 + size, salt) + length_bits(salt)
        group = "%s, %s packet of the %s: one bit flipped at each of its " \
            "%d bytes and every bit of its last length byte (%d cases): " \
            "refused, only what came before shown" % (
                proto, label, WHO[x], 4 + size, len(pos))
        for i, bit in pos:
            if i < 4:
                new = size ^ (1 << (8 * (3 - i) + bit))
                y_rc, y_err = grow_outcome(proto, t, size, new, avail)
            elif i < 16 and proto == NOISE:
                y_rc, y_err = 3, R_PKT(t, NONCE)
            else:
                y_rc, y_err = 3, R_PKT(t, TAG)
            cases.append(Case("byte %d bit %d" % (i, bit), proto,
                              At(d, j, flip(i, bit)), group=group,
                              **y_detects(proto, d, y_rc, y_err)))
    # The connection cut after every byte of the handshake.
    for proto in (NOISE, CLASSIC):
        for d in (C2L, L2C):
            if proto == NOISE:
                sizes = [4 + HS_BODY[(d, j)] for j in range(HS_FRAMES[
                    NOISE][d])]
            else:
                sizes = [32]
            total = sum(sizes)
            group = "%s, the TCP connection cut after each of the %d " \
                "handshake bytes from the %s, 0 to %d (%d cases): " \
                "documented exits, nothing shown" % (
                    proto, total, WHO[SRC[d]], total - 1, total)
            for n in range(total):
                if proto == CLASSIC and d == C2L:
                    # The connector has finished its exchange: for it
                    # this is a clean end between packets.
                    rc, err = {"L": 3, "C": 0}, {"L": R_HS_CLOSED}
                elif d == C2L and n >= sizes[0]:
                    rc, err = {"L": 3, "C": 3}, {"L": R_HS_CLOSED,
                                                 "C": R_REFUSED}
                else:
                    rc, err = {"L": 3, "C": 3}, {"L": R_HS_CLOSED,
                                                 "C": R_HS_CLOSED}
                cases.append(Case("after %d bytes" % n, proto,
                                  CutAfter(d, n), rc, err, out="none",
                                  group=group))
    return cases


# ---------------------------------------------------- C. the other faults

def garbage(n):
    """n random bytes whose first is not zero, so that as a length
    prefix they are out of bounds."""
    return bytes([1 + os.urandom(1)[0] % 255]) + os.urandom(n - 1)


def transport_cases():
    cases = []
    for proto in (NOISE, CLASSIC):
        for x in "LC":
            d = FROM[x]
            y = DST[d]
            k1 = chunk_frame(proto, x, 1)       # the middle DATA (line)
            t1 = first_t(proto, x) + 1          # its transport index
            tend = first_t(proto, x) + NCHUNK   # that of the CLOSE
            pre = "%s, %s: " % (proto, ARROW[d])

            def add(what, fault, y_rc, y_err, why):
                """The reader y detects it; see y_detects()."""
                x_rc = 4 if proto == NOISE else 0
                cases.append(Case(
                    pre + "%s -> the %s exits %d (%s), the %s %d" % (
                        what, WHO[y], y_rc, why, WHO[x], x_rc), proto,
                    fault, **y_detects(proto, d, y_rc, y_err)))

            def unnoticed(what, fault, policy=None):
                cases.append(Case(pre + what + " goes unnoticed, as "
                                  "documented: both exit 0, the lines "
                                  "shown as they came", proto, fault,
                                  {"L": 0, "C": 0}, {}, policy=policy))

            if proto == NOISE:
                add("a DATA packet dropped", At(d, k1, drop), 3,
                    R_PKT(t1, NONCE), "nonce")
                add("a DATA packet duplicated", At(d, k1, twice), 3,
                    R_PKT(t1 + 1, NONCE), "nonce, after the first copy")
                add("two DATA packets swapped", Reorder(d, k1), 3,
                    R_PKT(t1, NONCE), "nonce")
                add("the first DATA replayed after the last",
                    Replay(d, k1 - 1, k1 + 1), 3, R_PKT(tend, NONCE),
                    "nonce, where CLOSE was due")
                cases.append(Case(
                    pre + "a DATA replayed after the CLOSE is never read "
                    "nor shown: both exit 0", proto,
                    Replay(d, k1 - 1, k1 + 2), {"L": 0, "C": 0}, {}))
                # A reflected packet travels in the other side's stream,
                # so that side ends its stream (CLOSE) only once the
                # packet is in.  Whether the nonce matches what its writer
                # expects next from the other side depends on how many
                # packets that side has sent by then: "nonce" or "tag".
                cases.append(Case(
                    pre + "a DATA reflected back -> the %s exits 3 (nonce "
                    "or tag), the %s 4" % (WHO[x], WHO[y]), proto,
                    At(d, k1, reflect), {x: 3, y: 4}, {x: R_OWN, y: R_CUT},
                    policy={x: "hold", y: (d, k1)}))
                cases.append(Case(
                    pre + "the CLOSE reflected back -> the %s exits 3 "
                    "(nonce or tag), the %s (which got the CLOSE) 0" % (
                        WHO[x], WHO[y]), proto, At(d, k1 + 2, reflect),
                    {x: 3, y: 0}, {x: R_OWN}, policy={y: (d, k1 + 2)}))
                add("a DATA packet cut in half, then the end of TCP",
                    At(d, k1, truncate), 4, R_CUT, "cut")
                add("the CLOSE cut in half, then the end of TCP",
                    At(d, k1 + 2, truncate), 4, R_CUT, "cut")
                add("the end of TCP after all the data, without CLOSE",
                    At(d, k1 + 2, end_instead), 4, R_CUT,
                    "cut, all the data shown")
                add("random bytes in place of a DATA packet",
                    At(d, k1, replace(lambda f: garbage(len(f)))), 3,
                    R_PKT(t1, LEN), "length")
                add("a forged DATA packet, right length, random nonce",
                    At(d, k1, replace(
                        lambda f: f[:4] + os.urandom(len(f) - 4))), 3,
                    R_PKT(t1, NONCE), "nonce")
                add("a forged DATA packet with the expected nonce",
                    At(d, k1, replace(
                        lambda f, t=t1: f[:4] + noise.nonce(t) +
                        os.urandom(len(f) - 16))), 3, R_PKT(t1, TAG),
                    "tag")
                if x == "L":
                    add("the listener's first (empty) DATA dropped",
                        At(d, k1 - 2, drop), 3, R_PKT(0, NONCE), "nonce")
                    cases.append(Case(
                        pre + "the listener's first DATA reflected back "
                        "-> the listener exits 3 (nonce or tag), the "
                        "connector 4", proto, At(d, k1 - 2, reflect),
                        {"L": 3, "C": 4}, {"L": R_OWN, "C": R_CUT},
                        policy={"L": "hold", "C": (d, k1 - 2)}))
                    # x25519chat(1): "a connector whose connection ends
                    # before that packet was refused" (3).  Cut inside
                    # it, the connection ends after it began: taken as a
                    # cut after the handshake (4), like any packet.
                    add("the listener's first DATA cut in half, then the "
                        "end of TCP", At(d, k1 - 2, truncate), 4, R_CUT,
                        "cut")
            else:
                unnoticed("a line dropped", At(d, k1, drop))
                unnoticed("a line duplicated", At(d, k1, twice))
                unnoticed("two lines swapped", Reorder(d, k1))
                unnoticed("the first line replayed after the last",
                          Replay(d, k1 - 1, k1 + 1))
                unnoticed("a line reflected back to the %s (one key for "
                          "both directions)" % WHO[x], At(d, k1, reflect),
                          policy={y: (d, k1)})
                add("a packet cut in half, then the end of TCP",
                    At(d, k1, truncate), 3, R_MIDDLE, "cut in a packet")
                add("random bytes in place of a packet",
                    At(d, k1, replace(lambda f: garbage(len(f)))), 3,
                    R_PKT(t1, LEN), "length")
                add("a forged packet, right length, random contents",
                    At(d, k1, replace(
                        lambda f: f[:4] + os.urandom(len(f) - 4))), 3,
                    R_PKT(t1, TAG), "tag")
            # A bare length prefix in place of a packet.  Out of bounds,
            # nothing more follows (not even the end of TCP), so a reader
            # that waited for the body would hang.  In bounds, the packets
            # that follow are read as its body, then the end of TCP.
            for value in (0, 28, MAXLEN, MAXLEN + 1, 0xffffffff):
                valid = MINLEN[proto] <= value <= MAXLEN
                fault = At(d, k1, replace(
                    lambda f, v=value: struct.pack(">I", v),
                    "go" if valid else "hold"))
                if not valid:
                    y_rc, y_err, why = 3, R_PKT(t1, LEN), "length"
                elif value == MAXLEN:
                    # Far more than will ever come.
                    y_rc, y_err = grow_outcome(proto, t1, 0, value, 0)
                    why = "cut in a packet, at the end of TCP"
                else:
                    y_rc, y_err, why = 3, R_PKT(t1, TAG), "tag"
                add("length %s alone in place of a packet" % (
                    "0x%x" % value if value > MAXLEN + 1 else value),
                    fault, y_rc, y_err, why)
    # Two real sides whose PSKs differ, through a plain relay.
    for what, psk_l, psk_c, rc, err in (
            ("different --psk on each side", "a", "b", {"L": 3, "C": 3},
             {"L": R_HS + "authentication failed", "C": R_REFUSED}),
            ("--psk on the listener only", "a", None, {"L": 3, "C": 3},
             {"L": R_HS_MALFORMED, "C": R_HS_CLOSED}),
            ("--psk on the connector only", None, "a", {"L": 3, "C": 3},
             {"L": R_HS_MALFORMED, "C": R_HS_CLOSED})):
        cases.append(Case("default, %s -> both exit 3, nothing shown" %
                          what, NOISE, Fault(), rc, err, out="none",
                          psk={"L": psk_l, "C": psk_c}))
    return cases


def handshake_cases():
    cases = []
    hs = [(C2L, 0), (L2C, 0), (C2L, 1)]
    for d, j in hs:
        msg = hs.index((d, j)) + 1
        pre = "default, %s: " % HS_LABEL[(d, j)]

        def fails(first, first_err):
            """first detects it; the other sees the connection close (in
            the handshake; or, for the connector once it has sent message
            3, right after it, which it takes as a refusal)."""
            second = "L" if first == "C" else "C"
            second_err = R_REFUSED if msg == 3 and second == "C" else \
                R_HS_CLOSED
            return dict(rc={first: 3, second: 3},
                        err={first: first_err, second: second_err},
                        out="none")

        reader = DST[d]
        # A random e in message 1 is taken as it comes; message 2, built
        # on it, then fails at the connector.
        cases.append(Case(pre + "random bytes in place of its body -> "
                          "both 3", NOISE, At(d, j, replace(
                              lambda f: f[:4] + os.urandom(len(f) - 4))),
                          **fails("C" if msg == 1 else reader, R_HS_BAD)))
        cases.append(Case(pre + "random bytes in place of the whole "
                          "message (length too) -> both 3, 'malformed'",
                          NOISE, At(d, j, replace(
                              lambda f: garbage(len(f)))),
                          **fails(reader, R_HS_MALFORMED)))
        # Message 1 has no room for a byte more or less; the others fail
        # to authenticate their payload.
        bad_size = R_HS_MALFORMED if msg == 1 else R_HS_BAD
        cases.append(Case(pre + "one byte longer -> both 3", NOISE,
                          At(d, j, replace(
                              lambda f: struct.pack(">I", len(f) - 3) +
                              f[4:] + os.urandom(1))),
                          **fails(reader, bad_size)))
        cases.append(Case(pre + "one byte shorter -> both 3", NOISE,
                          At(d, j, replace(
                              lambda f: struct.pack(">I", len(f) - 5) +
                              f[4:-1])), **fails(reader, bad_size)))
        cases.append(Case(pre + "sent one byte at a time (short reads) -> "
                          "both exit 0, all data through", NOISE,
                          At(d, j, slowly), {"L": 0, "C": 0}, {}))
        # Half of it, then silence: its reader gives up after its -w (the
        # shorter); the other then sees the connection close.
        spec = fails(reader, R_TIMEOUT)
        spec["rc"][reader] = 1
        cases.append(Case(pre + "half of it, then silence -> the %s exits "
                          "1 (timed out) after -w 1, the %s 3" % (
                              WHO[reader], WHO[SRC[d]]), NOISE,
                          At(d, j, stall), wait={reader: 1, SRC[d]: 3},
                          **spec))
    # Reflected back to its writer, who reads it in place of the next.
    cases.append(Case("default, message 1 reflected back to the connector "
                      "-> both 3", NOISE, At(C2L, 0, reflect),
                      {"L": 3, "C": 3}, {"C": R_HS_MALFORMED,
                                         "L": R_HS_CLOSED}, out="none"))
    cases.append(Case("default, message 2 reflected back to the listener "
                      "-> both 3", NOISE, At(L2C, 0, reflect),
                      {"L": 3, "C": 3}, {"L": R_HS_BAD, "C": R_REFUSED},
                      out="none"))
    cases.append(Case("default, message 3 reflected back to the connector "
                      "-> it exits 3 (nonce) on it as packet 0, the "
                      "listener 4", NOISE, At(C2L, 1, reflect),
                      {"L": 4, "C": 3}, {"C": R_PKT(0, NONCE), "L": R_CUT},
                      policy={"C": "hold"}))

    # Classic: keys are bare 32 bytes.
    for d in (C2L, L2C):
        x, y = SRC[d], DST[d]
        pre = "classic, the %s's key: " % WHO[x]
        cases.append(Case(pre + "random bytes in its place -> the %s 3 "
                          "(tag) on the first packet, the %s 0" % (
                              WHO[y], WHO[x]), CLASSIC,
                          At(d, 0, replace(lambda f: os.urandom(32))),
                          {y: 3, x: 0}, {y: R_PKT(0, TAG)}, out="none",
                          policy={y: "hold"}, silent=(y,)))
        cases.append(Case(pre + "one byte longer -> the %s 3 (length of "
                          "packet 0), the %s 0" % (WHO[y], WHO[x]),
                          CLASSIC, At(d, 0, replace(
                              lambda f: f + os.urandom(1))),
                          {y: 3, x: 0}, {y: R_PKT(0, LEN)},
                          policy={y: "hold"}))
        if d == L2C:
            cases.append(Case(pre + "one byte shorter -> the connector "
                              "exits 1 (timed out), the listener 3",
                              CLASSIC, At(d, 0, replace(lambda f: f[:31])),
                              {"C": 1, "L": 3}, {"C": R_TIMEOUT,
                                                 "L": R_HS_CLOSED},
                              out="none", wait={"C": 1, "L": 3}))
        else:
            # The listener takes a byte of the first packet as the last
            # of the key, then reads a length of about 9500 bytes.
            cases.append(Case(pre + "one byte shorter -> the listener 3 "
                              "(cut inside a packet), the connector 0",
                              CLASSIC, At(d, 0, replace(lambda f: f[:31])),
                              {"L": 3, "C": 0}, {"L": R_MIDDLE},
                              out="none", policy={"L": "hold"},
                              silent=("L",)))
        cases.append(Case(pre + "sent one byte at a time (short reads) -> "
                          "both exit 0, all lines through", CLASSIC,
                          At(d, 0, slowly), {"L": 0, "C": 0}, {}))
        if d == L2C:
            cases.append(Case(pre + "half of it, then silence -> the "
                              "connector 1 (timed out), the listener 3",
                              CLASSIC, At(d, 0, stall), {"C": 1, "L": 3},
                              {"C": R_TIMEOUT, "L": R_HS_CLOSED},
                              out="none", wait={"C": 1, "L": 3}))
        else:
            cases.append(Case(pre + "half of it, then silence -> the "
                              "listener 1 (timed out), the connector 0",
                              CLASSIC, At(d, 0, stall), {"L": 1, "C": 0},
                              {"L": R_TIMEOUT}, out="none",
                              wait={"L": 1, "C": 3}))
        # Its own key back: the writer reads it as the peer's key (the
        # listener) or as the first packet (the connector).  Either way
        # four random key bytes end up read as a length: out of bounds,
        # except once in about 65000 runs, when what follows is read as
        # the packet (a bad tag, or the end of TCP inside it).
        cases.append(Case(pre + "reflected back to it -> it exits 3, the "
                          "%s 0" % WHO[y], CLASSIC, At(d, 0, reflect),
                          {x: 3, y: 0},
                          {x: r"^packet 0 from peer: (%s|%s)|%s" % (
                              LEN, TAG, R_MIDDLE[1:])},
                          out="none", policy={x: "hold"}, silent=(x,)))

    # Low-order public keys in place of the ephemeral keys.
    points = low_order_points()
    if len(points) < 10:
        check("the x25519 vectors list the low-order points", False,
              "found only %d" % len(points))
    n = len(points)
    for p in points:
        name = p.hex()[:16] + "..."
        sub = replace(lambda f, p=p: f[:4] + p + f[36:])
        cases.append(Case(name, NOISE, At(C2L, 0, sub), {"L": 3, "C": 3},
                          {"L": R_LOW, "C": R_HS_CLOSED}, out="none",
                          group="default, each of the %d low-order points "
                          "of the x25519 vectors as e in message 1 -> the "
                          "listener 3 'low-order', the connector 3" % n))
        cases.append(Case(name, NOISE, At(L2C, 0, sub), {"L": 3, "C": 3},
                          {"C": R_LOW, "L": R_HS_CLOSED}, out="none",
                          group="default, each of the %d low-order points "
                          "as e in message 2 -> the connector 3 "
                          "'low-order', the listener 3" % n))
        sub = replace(lambda f, p=p: p)
        cases.append(Case(name, CLASSIC, At(L2C, 0, sub), {"L": 3, "C": 3},
                          {"C": R_LOW, "L": R_HS_CLOSED}, out="none",
                          group="classic, each of the %d low-order points "
                          "as the listener's key -> the connector 3 "
                          "'low-order' before sending its own, the "
                          "listener 3" % n))
        cases.append(Case(name, CLASSIC, At(C2L, 0, sub), {"L": 3, "C": 0},
                          {"L": R_LOW}, out="none",
                          group="classic, each of the %d low-order points "
                          "as the connector's key -> the listener 3 "
                          "'low-order', the connector 0 (a clean end for "
                          "it)" % n))

    # One side classic, the other default, through a plain relay.
    cases.append(Case("a default listener meets a classic connector: both "
                      "wait for the other to speak first -> the listener "
                      "exits 1 (timed out) after -w 1, the connector 3",
                      (NOISE, CLASSIC), Fault(), {"L": 1, "C": 3},
                      {"L": R_TIMEOUT, "C": R_HS_CLOSED}, out="none",
                      silent="LC", wait={"L": 1, "C": 3}))
    # The classic listener takes the connector's message 1 for a key and
    # the rest of it (4 random bytes of e) for a length: out of bounds but
    # once in about 65000 runs, as in the reflected classic key above.
    cases.append(Case("a classic listener meets a default connector: the "
                      "connector reads its key as a length -> 3 "
                      "'malformed', the listener 3 on its first packet",
                      (CLASSIC, NOISE), Fault(), {"L": 3, "C": 3},
                      {"C": R_HS_MALFORMED, "L": r"^packet 0 from peer: "
                       "%s|%s" % (LEN, R_MIDDLE[1:])}, out="none",
                      silent="LC"))
    return cases


# ------------------------------------------- D. a middle with its own key

class ActiveMitm:
    """Runs the handshake with each side under its own static key (as a
    listener towards the connector, as a connector towards the
    listener), then relays every packet, reading them all.  Whatever
    fails, it hangs up on both."""

    def __init__(self, lport, psk=None):
        self.lport, self.psk = lport, psk
        self.key = noise.keypair()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(CASE_LIMIT)
        self.port = self.srv.getsockname()[1]
        self.socks = []
        self.got_msg3 = False
        self.seen = {"L": b"", "C": b""}    # plaintext read from each
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            c, _ = self.srv.accept()
            lsock = socket.create_connection(("127.0.0.1", self.lport),
                                             timeout=5)
            self.socks = [c, lsock]
            for s in self.socks:
                s.settimeout(CASE_LIMIT)
            to_c = noise.Link(c, initiator=False)
            to_l = noise.Link(lsock, initiator=True)
            hs_c = noise.Handshake(False, self.key, psk=self.psk)
            hs_l = noise.Handshake(True, self.key, psk=self.psk)
            to_l.send_frame(hs_l.write())
            hs_c.read(to_c.recv_frame())
            hs_l.read(to_l.recv_frame())
            to_c.send_frame(hs_c.write(b"lis"))
            hs_c.read(to_c.recv_frame())
            self.got_msg3 = True
            to_l.send_frame(hs_l.write(b"con"))
            c1c, c2c = hs_c.keys
            c1l, c2l = hs_l.keys
            t = threading.Thread(target=self._relay, daemon=True, args=(
                to_l, noise.Direction(c2l), c, noise.Direction(c2c), "L"))
            t.start()
            self._relay(to_c, noise.Direction(c1c), lsock,
                        noise.Direction(c1l), "C")
            t.join(CASE_LIMIT)
        except Exception as exc:    # refused, cut: hang up on both
            self.error = "%s: %s" % (type(exc).__name__, exc)
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _relay(self, src, rx, dst, tx, side):
        """Open each packet from src, note its data, seal it again for
        dst; at the end of src, end dst.  On any failure, hang up."""
        try:
            while True:
                try:
                    head = src.recv_exact(4)
                except noise.Closed as c:
                    if c.got:
                        raise
                    dst.shutdown(socket.SHUT_WR)
                    return
                body = src.recv_exact(struct.unpack(">I", head)[0])
                plain = rx.open(head + body)
                if plain[:1] == b"\x00":
                    self.seen[side] += plain[1:]
                dst.sendall(tx.seal(plain))
        except Exception as exc:    # a side gone or a bad packet
            self.error = self.error or "%s: %s" % (type(exc).__name__, exc)
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        for s in self.socks:
            s.close()
        self.srv.close()
        self.thread.join(3)


def active_case(what, largs=(), cargs=(), psk=False, known=False,
                want=None):
    """want: (listener rc, its error regex, connector rc, its error
    regex); None for the unpinned case, which must go through."""
    def run():
        homes = {"L": Home(), "C": Home()}
        procs, mitm = {}, None
        data = {s: b"%s says %s\n" % (s.encode(), os.urandom(8).hex()
                                      .encode()) for s in "LC"}
        try:
            extra = {"L": list(largs), "C": list(cargs)}
            if psk:
                raw = os.urandom(32)
                for s in "LC":
                    extra[s] += ["--psk", noise.secret_file(homes[s], raw)]
            lp, port = listen(homes["L"], ["-i", KEYS["L"], "-w", "5"] +
                              extra["L"], stdin=subprocess.PIPE)
            procs["L"] = track(lp)
            give(lp, data["L"])
            if port is None:
                return ["the listener did not start: %r" % lp.err()]
            mitm = ActiveMitm(port, psk=os.urandom(32) if psk else None)
            kp = homes["C"].path("known_peers")
            if known:
                with open(kp, "w") as f:
                    f.write("127.0.0.1:%d %s\n" % (mitm.port, PUB["L"]))
            procs["C"] = track(Proc(["-c", "127.0.0.1:%d" % mitm.port, "-i",
                                     KEYS["C"], "-w", "5", "--known-peers",
                                     kp] + extra["C"], homes["C"],
                                    stdin=subprocess.PIPE))
            give(procs["C"], data["C"])
            for s in "LC":
                procs[s].wait(CASE_LIMIT)
            mitm.close()
            why = []
            rcs = (procs["L"].rc, procs["C"].rc)
            if want is None:
                codes = [noise.CODE.search(procs[s].err()) for s in "LC"]
                codes = [c and c.group(1) for c in codes]
                text = open(kp).read() if os.path.exists(kp) else ""
                if rcs != (0, 0) or procs["L"].out() != data["C"] or \
                        procs["C"].out() != data["L"]:
                    why.append("exits %s, stdouts %s / %s" % (
                        rcs, short(procs["L"].out()),
                        short(procs["C"].out())))
                if mitm.seen != {"L": data["L"], "C": data["C"]}:
                    why.append("the middle read %r" % mitm.seen)
                if None in codes or codes[0] == codes[1]:
                    why.append("session codes %s" % codes)
                if noise.b64(mitm.key.public.data) not in text:
                    why.append("known_peers holds %r" % text)
            else:
                for s, rc, rx in (("L",) + want[:2], ("C",) + want[2:]):
                    p = procs[s]
                    errs = error_lines(p.err())
                    if p.rc != rc or len(errs) != 1 or \
                            not re.search(rx, errs[0]) or p.out():
                        why.append("%s: exit %s (expected %d), errors %r "
                                   "(expected one matching /%s/), stdout "
                                   "%s" % (WHO[s], p.rc, rc, errs, rx,
                                           short(p.out())))
                if "--peer" in cargs or known:
                    if mitm.got_msg3:
                        why.append("the connector sent message 3 to a "
                                   "refused key")
                # A refused session proves nothing: known_peers must not
                # learn the middle's key from it.
                text = open(kp).read() if os.path.exists(kp) else ""
                if not known and noise.b64(mitm.key.public.data) in text:
                    why.append("known_peers recorded the middle's key: %r"
                               % text)
            if why:
                why.append("stderr: listener %r, connector %r" % (
                    procs["L"].err()[-300:], procs["C"].err()[-300:]))
            return why
        finally:
            tear_down(procs, mitm, homes)
    return Task("active man in the middle with its own key: " + what, run)


def active_tasks():
    return [
        active_case("no pinning: both complete and exit 0 (the connector "
                    "records its key on first contact), it reads "
                    "everything, and the two session codes differ"),
        active_case("connector --peer (the listener's key) -> connector 3 "
                    "'--peer' before sending message 3, listener 3",
                    cargs=["--peer", PUB["L"]],
                    want=(3, R_HS_CLOSED, 3, r"--peer")),
        active_case("connector with the listener's key in known_peers -> "
                    "connector 3 'CHANGED' before sending message 3, "
                    "listener 3", known=True,
                    want=(3, R_HS_CLOSED, 3, r"CHANGED")),
        active_case("listener --peer (the connector's key) -> listener 3 "
                    "'--peer', connector 3 'refused'",
                    largs=["--peer", PUB["C"]],
                    want=(3, r"--peer", 3, R_REFUSED)),
        active_case("listener --allow (the connector's key) -> listener 3 "
                    "'--allow', connector 3 'refused'",
                    largs=["--allow", ALLOW[0]],
                    want=(3, r"not in the --allow list", 3, R_REFUSED)),
        active_case("both sides with one --psk, the middle without it -> "
                    "listener 3, connector 3 'refused'", psk=True,
                    want=(3, R_HS_CLOSED, 3, R_REFUSED)),
    ]


# ----------------------------------------------------- E. hostile peers

class Task:
    """A check that is not a Case: run() returns the list of what went
    wrong."""

    def __init__(self, name, run, group=None):
        self.name, self.run, self.group = name, run, group


def type_task(role, kind):
    """After a DATA, a packet of type kind (CLOSE and REKEY with a body),
    then a valid DATA: refused at the bad one, exit 3, only the first
    DATA shown."""
    def run():
        before = b"before type 0x%02x\n" % kind
        rig = noise.Rig(role, stdin=b"from x25519chat\n")
        try:
            rig.link.handshake(rig.peer_handshake())
            rig.link.send(noise.DATA, before)
            rig.link.send(kind, b"x" if kind in (1, 2) or kind % 2 else b"")
            rig.link.send(noise.DATA, b"after: must never be shown\n")
            rc = rig.end(CASE_LIMIT)
            why = noise.ended(rig, rc, 3, before)
            errs = error_lines(rig.err())
            if errs and not re.search(R_PKT(1, TYPE), errs[0]):
                why += "; error line %r" % errs[0]
            return ["type 0x%02x: %s" % (kind, why)] if why else []
        finally:
            rig.cleanup()
            if rig.proc is not None:
                release(rig.proc)
    return run


def type_tasks():
    tasks = []
    for role in ("listener", "connector"):
        kinds = [1, 2] + list(range(3, 256))
        group = "default, x25519chat as %s: each of the %d unknown packet " \
            "types 0x03-0xff, and CLOSE and REKEY with a body (%d cases) " \
            "-> exit 3 'malformed packet', only the data before shown" % (
                role, 253, len(kinds))
        for kind in kinds:
            tasks.append(Task("type 0x%02x" % kind, type_task(role, kind),
                              group=group))
    return tasks


def hs_bytes(proto, initiator):
    """What a peer trickles: a valid first message of its role
    (default), or a key (classic).  For the listener role the connector's
    message 1 is needed first: returns a function of it."""
    if proto == CLASSIC:
        return lambda first=None: noise.keypair().public.data
    if initiator:
        return lambda first=None: struct.pack(">I", 32) + \
            noise.Handshake(True, noise.keypair()).write()

    def msg2(first):
        hs = noise.Handshake(False, noise.keypair())
        hs.read(first)
        m = hs.write()
        return struct.pack(">I", len(m)) + m
    return msg2


def trickle(sock, data, proc, period=0.25):
    """data one byte every period seconds, while x25519chat lives."""
    for i in range(len(data)):
        if proc is not None and not proc.alive():
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return
        time.sleep(period)


def read_frame(sock):
    head = b""
    while len(head) < 4:
        got = sock.recv(4 - len(head))
        if not got:
            raise EOFError("closed")
        head += got
    body = b""
    n = struct.unpack(">I", head)[0]
    while len(body) < n:
        got = sock.recv(n - len(body))
        if not got:
            raise EOFError("closed")
        body += got
    return body


def slow_task(proto, role, trickling):
    """x25519chat in role with -w 1 facing a peer that sends nothing, or
    trickles a valid handshake one byte every 0.25 s (so that only a
    deadline on the whole handshake, not on each read, can end it)."""
    how = "trickles one byte every 0.25 s" if trickling else \
        "sends nothing"
    name = "%s, x25519chat as %s, -w 1, a peer that connects and %s -> " \
        "dropped after about 1 s: exit 1 'timed out', nothing shown" % (
            proto, role, how)

    def run():
        home = Home()
        proc, sock, srv = None, None, None
        args = ["-w", "1"] + (["--classic"] if proto == CLASSIC else
                              ["-i", KEYS["L" if role == "listener" else
                                          "C"]])
        try:
            if role == "listener":
                proc, port = listen(home, args, stdin=subprocess.PIPE)
                track(proc)
                give(proc, b"must never be sent\n")
                if port is None:
                    return ["the listener did not start: %r" % proc.err()]
                sock = socket.create_connection(("127.0.0.1", port),
                                                timeout=5)
            else:
                srv = noise.open_server()
                proc = track(Proc(["-c", "127.0.0.1:%d" %
                                   srv.getsockname()[1]] + args, home,
                                  stdin=subprocess.PIPE))
                give(proc, b"must never be sent\n")
                sock = srv.accept()[0]
            started = time.monotonic()
            sock.settimeout(5)
            if trickling:
                make = hs_bytes(proto, role == "listener")
                first = None
                if proto == NOISE and role == "connector":
                    first = read_frame(sock)
                trickle(sock, make(first), proc)
            rc = proc.wait(CASE_LIMIT)
            elapsed = time.monotonic() - started
            why = []
            errs = error_lines(proc.err())
            if rc != 1 or len(errs) != 1 or not re.search(R_TIMEOUT,
                                                          errs[0]):
                why.append("exit %s, errors %r" % (rc, errs))
            if not 0.8 <= elapsed <= 5:
                why.append("took %.2f s" % elapsed)
            if proc.out():
                why.append("stdout %s" % short(proc.out()))
            return why
        finally:
            for s in (sock, srv):
                if s is not None:
                    s.close()
            if proc is not None:
                release(proc)
            home.cleanup()
    return Task(name, run)


def keep_task(proto):
    """-k -w 1: a silent peer and a trickling one are each dropped after
    about a second; then a real x25519chat connector is served."""
    name = "%s, -k -w 1 listener: a silent peer and a trickling one " \
        "each dropped after about 1 s ('timed out'), then a good " \
        "connector served normally, and it goes on listening" % proto

    def run():
        home_l, home_c = Home(), Home()
        lp, cp = None, None
        ldata = b"from the listener %s\n" % os.urandom(6).hex().encode()
        cdata = b"from the connector %s\n" % os.urandom(6).hex().encode()
        extra = ["--classic"] if proto == CLASSIC else ["-i", KEYS["L"]]
        try:
            lp, port = listen(home_l, ["-k", "-w", "1"] + extra,
                              stdin=subprocess.PIPE)
            track(lp)
            give(lp, ldata)
            if port is None:
                return ["the listener did not start: %r" % lp.err()]
            why = []
            for trickling in (False, True):
                sock = socket.create_connection(("127.0.0.1", port),
                                                timeout=5)
                started = time.monotonic()
                try:
                    if trickling:
                        t = threading.Thread(target=trickle, daemon=True,
                                             args=(sock, hs_bytes(
                                                 proto, True)(), None))
                        t.start()
                    sock.settimeout(6)
                    got = b""
                    while True:
                        try:
                            chunk = sock.recv(4096)
                        except OSError:
                            break
                        if not chunk:
                            break
                        got += chunk
                    elapsed = time.monotonic() - started
                finally:
                    sock.close()
                want = 32 if proto == CLASSIC else 0
                if not 0.8 <= elapsed <= 5 or len(got) != want:
                    why.append("%s peer: dropped after %.2f s, got %d "
                               "bytes" % ("trickling" if trickling else
                                          "silent", elapsed, len(got)))
            args = ["-c", "127.0.0.1:%d" % port, "-w", "5"] + (
                ["--classic"] if proto == CLASSIC else ["-i", KEYS["C"]])
            cp = track(Proc(args, home_c, stdin=subprocess.PIPE))
            give(cp, cdata)
            cp.wait(CASE_LIMIT)
            end = time.monotonic() + 5
            while lp.out() != cdata and time.monotonic() < end:
                time.sleep(0.02)
            if cp.rc != 0 or cp.out() != ldata or error_lines(cp.err()):
                why.append("good connector: exit %s, stdout %s, stderr %r"
                           % (cp.rc, short(cp.out()), cp.err()[-300:]))
            if lp.out() != cdata:
                why.append("listener stdout %s" % short(lp.out()))
            time.sleep(0.2)
            if not lp.alive():
                why.append("the listener exited (%s)" % lp.p.poll())
            errs = error_lines(lp.err())
            if len(errs) != 2 or not all(re.search(R_TIMEOUT, e)
                                         for e in errs):
                why.append("listener error lines %r" % errs)
            return why
        finally:
            for p in (lp, cp):
                if p is not None:
                    release(p)
            home_l.cleanup()
            home_c.cleanup()
    return Task(name, run)


def hostile_tasks():
    tasks = []
    for proto in (NOISE, CLASSIC):
        for role in ("listener", "connector"):
            for trickling in (False, True):
                tasks.append(slow_task(proto, role, trickling))
        tasks.append(keep_task(proto))
    return tasks


# ---------------------------------------------------------------- main

def run_all(tasks):
    """Run every task, WORKERS at a time; return their results in order.
    A task that raises has failed; past BUDGET seconds none starts."""
    t0 = time.monotonic()

    def one(task):
        if time.monotonic() - t0 > BUDGET:
            return ["not run: the time budget of %d s was spent" % BUDGET]
        try:
            return task.run()
        except Exception as exc:    # the case itself broke: a failure
            return ["%s: %s" % (type(exc).__name__, exc)]

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(one, tasks))


def report(tasks, results):
    """One line per task, or per group of tasks (naming its count)."""
    groups, order = {}, []
    for task, why in zip(tasks, results):
        key = task.group or task.name
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((task, why))
    for key in order:
        members = groups[key]
        bad = [(t, w) for t, w in members if w]
        if len(members) == 1 and members[0][0].group is None:
            check(key, not bad, "; ".join(bad[0][1]) if bad else "")
            continue
        detail = " | ".join("%s: %s" % (t.name, "; ".join(w))
                            for t, w in bad[:3])
        check(key, not bad, "%d of %d failed: %s" % (
            len(bad), len(members), detail))


def make_keys(home):
    """The identities, PSKs and --allow file every case shares."""
    for side in "LC":
        kp = noise.keypair()
        KEYS[side] = noise.secret_file(home, kp.private.data)
        PUB[side] = noise.b64(kp.public.data)
    for name in "ab":
        PSKS[name] = noise.secret_file(home, os.urandom(32))
    ALLOW.append(home.path("allow"))
    with open(ALLOW[0], "w") as f:
        f.write("# the connector only\n%s\n" % PUB["C"])


def main():
    started = time.monotonic()
    keys = Home()
    try:
        make_keys(keys)
        by_position = position_cases()
        tasks = by_position + transport_cases() + handshake_cases() + \
            active_tasks() + hostile_tasks() + type_tasks()
        results = run_all(tasks)
        report(tasks, results)
        print("attack cases run: %d (%d by position); %.0f s" % (
            len(tasks), len(by_position), time.monotonic() - started))
    finally:
        for p in list(STARTED):
            release(p)
        keys.cleanup()
    finish()


if __name__ == "__main__":
    main()
