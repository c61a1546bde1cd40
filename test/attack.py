#!/usr/bin/python3
"""The attack suite: x25519chat facing a man in the middle and hostile
peers on loopback, with each fault tried at every position it can take.

The default protocol is x25519chat/2 (x25519chat(1), PROTOCOL): the hello
(frame 1, the connector's offer "2 | suites | mode"; frame 2, the
listener's choice or "0 | reason"), then the three Noise XX messages as
frames, then transport packets "u32 length | nonce | tag | ciphertext"
whose plaintext is a type byte (DATA, CLOSE, REKEY, ACK, ERROR, PING) and
a body.  The prologue holds both hello bodies, so a changed hello makes
message 2 fail.  This file needs nothing of test/noise.py: its own small
peer (section F) runs the hello and the handshake through dissononce.

A. The man in the middle (Mitm) sits between two real x25519chat
   processes, a listener and a connector, in pipe mode, each with its own
   configuration directory and a pipe as stdin.  It cuts each direction of
   the TCP stream into frames (the hello frames and handshake messages
   "u32 length || body", or the bare 32-byte keys of --classic; then
   transport packets) and applies one fault per case.  Each side writes
   three short chunks, each one only once the previous one has crossed
   the middle, so every chunk is one DATA packet (one line in classic) and
   the middle knows what every packet carries.
B. By position, in both suites (AESGCM, the default choice, and
   ChaChaPoly with --cipher chachapoly on both sides): one bit flipped at
   each byte of both hello frames, of every handshake message and of one
   packet of each kind (the listener's first DATA, a DATA each way, each
   CLOSE, each ACK, in AESGCM also with the listener closing first), and
   every bit of their last length byte; the connection cut after each
   byte of the hello and the handshake in each direction.  Classic: each
   byte of both keys and of a line each way, and the cuts.
C. The other faults, both directions where they apply: drop, duplicate,
   reorder, replay (before and after the end), reflect, truncate, a cut
   after data without CLOSE, garbage, bad lengths; the same for each ACK
   (in both orders of the two CLOSEs), for the PING a side sends after
   15 s of silence, and for the ERROR a side sends when its stdout is
   full; garbage, a wrong size, a slow or a stalled frame in place of
   each hello frame and handshake message; an offer or a choice
   rewritten, forged refusals; the low-order public keys of the x25519
   test vectors; a classic peer meeting a default one; PSKs and ciphers
   that do not match.
D. An active man in the middle with a key of its own, against --peer,
   --allow, known_peers and --psk; and without them, where only the
   session codes tell.
E. Hostile peers: every unknown packet type and every malformed body,
   each order violation (DATA after CLOSE, ACK before our CLOSE, a second
   ACK or CLOSE, a bad first packet from the listener), the peer's ERROR
   (busy, or shown safely), PING at any time, silent and trickling peers
   past -w, and a -k listener that then serves a good peer.

Each case asserts both sides' exit status as x25519chat(1) documents it;
the exact "x25519chat: " lines on stderr (one for a failure, two for a
side that sent ERROR and then got the peer's; none for success); that a
side prints its session code exactly when its handshake completed, and
that both codes agree when both did (a passive middle cannot change
them); no crash and no hang; and that stdout holds exactly the bytes of
the packets the side must accept, in the order they reached it, up to the
first it must refuse.  That last value comes from a model of the
protocols applied to what the middle really delivered (see model_out), so
it is exact even where timing decides how far a side got.

How the exit status becomes exact.  A side's stdin closes on a policy:
"close" once its chunks and the other side's are through (its CLOSE then
follows them, and the ACK it brings back cannot come between the other
side's chunks), "hold" until it exits (it never sends CLOSE), or once
named frames have crossed the middle.  In a clean run the connector
closes first and the listener only once its ACK of the connector's CLOSE
has crossed, so the order of every CLOSE and ACK on the wire is fixed
(see Case.tails): connector to listener, the chunks, CLOSE, ACK;
listener to connector, the empty DATA, the chunks, ACK, CLOSE.  The side
that receives a faulty packet holds its stdin, so it never sends CLOSE:
the writer of the fault then always sees the connection end before the
peer's CLOSE (status 4).  A passive middle holds no key, so what it
changes fails to authenticate (status 3, never answered); it cannot make
an order violation, which sends ERROR (status 3 there, 5 at the peer):
those are section E's, and the ERROR on the wire in section C comes from
a side whose own output fails.  A packet reflected back to its sender
travels in the other side's stream, so that side closes its stdin only
once the packet has gone through; whether it then fails on the nonce or
on the tag follows from the middle's log.  A length that asks for more
than will ever follow is followed by the end of that direction once its
writer's last frame is through, so that its reader meets the end of TCP
inside the packet instead of waiting for the keepalive.  A packet that
would arrive just as its reader ends is held until that reader has ended
(its end of TCP reached the middle), as a side that has ended discards
what still comes (x25519chat(1)); a copy sent right behind the last ACK
is not left to timing here, as the listener then exits 3 or 0 depending
on whether both arrive in one read.

Run from the top directory: /usr/bin/python3 test/attack.py
"""

import base64
import concurrent.futures
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, \
    ChaCha20Poly1305

from dissononce.cipher.aesgcm import AESGCMCipher
from dissononce.cipher.chachapoly import ChaChaPolyCipher
from dissononce.dh.private import PrivateKey
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.hash.sha256 import SHA256Hash
from dissononce.processing.handshakepatterns.interactive.XX import \
    XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState
from dissononce.processing.impl.handshakestate import HandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState
from dissononce.processing.modifiers.psk import PSKPatternModifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LISTENING, TOP, Home, Proc, check, finish, \
    listen  # noqa: E402

C2L, L2C = "c2l", "l2c"
SRC = {C2L: "C", L2C: "L"}          # who writes into a direction
DST = {C2L: "L", L2C: "C"}          # who reads it
REV = {C2L: L2C, L2C: C2L}
FROM = {"L": L2C, "C": C2L}
INTO = {"L": C2L, "C": L2C}
OTHER = {"L": "C", "C": "L"}
WHO = {"L": "listener", "C": "connector"}
ARROW = {C2L: "connector to listener", L2C: "listener to connector"}

NOISE, CLASSIC = "default", "classic"
AES, CHACHA = "aesgcm", "chachapoly"
CHOICE = {AES: 1, CHACHA: 2}        # frame 2's byte; also the offer bit
SUITE_OF = {1: AES, 2: CHACHA}
PROLOGUE = b"x25519chat/2"
DATA, CLOSE, REKEY, ACK, ERROR, PING = range(6)
TYPE_NAME = {DATA: "DATA", CLOSE: "CLOSE", REKEY: "REKEY", ACK: "ACK",
             ERROR: "ERROR", PING: "PING"}

# The frames before the transport, in each direction: the hello frame,
# then the Noise messages.
HS_FRAMES = {NOISE: {C2L: 3, L2C: 2}, CLASSIC: {C2L: 1, L2C: 1}}
HELLO1, HELLO2 = (C2L, 0), (L2C, 0)
MSG1, MSG2, MSG3 = (C2L, 1), (L2C, 1), (C2L, 2)
# Body sizes with 3-byte names, and the largest each may announce (a hello
# frame up to 255 bytes; names of up to 64 bytes; message 1 has no
# payload).
HS_BODY = {HELLO1: 3, HELLO2: 1, MSG1: 32, MSG2: 96 + 3, MSG3: 64 + 3}
HS_MAX = {HELLO1: 255, HELLO2: 255, MSG1: 32, MSG2: 96 + 64, MSG3: 64 + 64}
# The shortest message 2 and 3 that still hold every token and a tag for
# the payload; shorter ones are malformed, longer ones fail their tag.
HS_MIN = {MSG2: 32 + 48 + 16, MSG3: 48 + 16}
HS_LABEL = {HELLO1: "hello frame 1 (the offer)", HELLO2: "hello frame 2 "
            "(the choice)", MSG1: "message 1 (-> e)", MSG2: "message 2 (<- "
            "e, ee, s, es)", MSG3: "message 3 (-> s, se)"}
MINLEN = {NOISE: 29, CLASSIC: 28}   # a type byte, or an empty line
MAXLEN = 28 + 65536

NAME = {"L": "lis", "C": "con"}    # -n of each side: 3-byte names
NCHUNK = 3                          # chunks each side writes
WAIT = {"L": 6, "C": 3}             # -w: the connector gives up first
FAST_WAIT = {"L": 3, "C": 1}        # where the connector must time out
WORKERS = 8                         # cases run at once
CASE_LIMIT = 15                     # seconds before a case is a hang
PING_LIMIT = 45                     # the same for cases waiting for PING
BUDGET = 600                        # seconds before no case starts

LEN = "packet length out of bounds"
TAG = r"authentication failed \(bad tag\)"
NONCE = r"unexpected nonce"
# Error lines are matched on what names the failure; where a hint
# follows, the patterns say which.
R_HS = r"^handshake with \S+ failed: "
# The hello: a side whose peer hung up before or inside a hello frame.
R_GONE = {"C": R_HS + "the listener closed the connection without a "
          "word$", "L": R_HS + "the peer closed the connection without a "
          "word$"}
R_HELLO_BAD = R_HS + r"malformed hello \(not an x25519chat/2 peer\?\)$"
R_CHOICE = R_HS + "the listener chose a cipher we did not offer$"
# The Noise messages: a side whose peer hung up; the listener after
# sending message 2 adds a hint.
R_HS_CLOSED = R_HS + "the connection closed during the handshake$"
R_HS_CLOSED2 = R_HS + r"the connection closed during the handshake " \
    r"\(the connector refused our key\?\)$"
R_HS_MALFORMED = R_HS + "malformed handshake message$"
R_HS_TAG = R_HS + TAG + r" \(the connection was tampered with\)$"
R_TIMEOUT = R_HS + "timed out$"
R_LOW = R_HS + "peer sent a low-order public key$"
R_REFUSED = r"^the listener closed the connection after the handshake"
R_MIDDLE = r"^connection closed in the middle of a packet$"
R_PEER = r"^peer failed: "
CODE = re.compile(r"^Session code: (\S+) ", re.M)
# The end of TCP before the end of an x25519chat/2 session (status 4) is
# worded by what the side had accepted by then (the receiver's verdict on
# the end of the stream): without the peer's CLOSE the stream is
# incomplete; with it, what the peer sent is whole and only our own end
# is unconfirmed.  A case names CUT, and the judge puts in the wording
# that side must print, from the model of what it accepted (cut_line).
# The watcher's third wording, "the peer did not confirm the end of the
# session" (session_result()), needs a session that ends with no failure
# recorded and no cut, yet unconfirmed: in pipe mode, only our last ACK
# failing to go out after the watcher has begun to end the session.  No
# case here brings that about, so none expects it.
R_CUT_OPEN = r"^connection cut before the peer had finished: the stream " \
    r"is incomplete$"
R_CUT_WHOLE = r"^connection cut before the peer confirmed our end: what " \
    r"it sent is whole, but what we sent may not have reached its output$"


class _Cut:
    """CUT: the wording of a cut, as the side's model says."""

    def __repr__(self):
        return "CUT"


CUT = _Cut()

# The refusals: frame 2 = 0 | reason, in the connector's words and, for
# those a listener makes, in the listener's.
REFUSAL = {1: "the listener does not speak this version of the protocol",
           2: "the listener has no cipher in common with us",
           3: "the listener requires a pre-shared key (--psk)",
           4: "the listener has no pre-shared key (leave out --psk)",
           5: "the listener is busy",
           6: "the listener does not know the mode we asked for",
           7: "the listener requires a short code",
           8: "the listener has no short code",
           9: "this short code was already used"}
REFUSES = {1: "it speaks another version of the protocol",
           2: "it offers no cipher we may use",
           3: "it has no pre-shared key, and we require one",
           4: "it offered a pre-shared key, and we have none",
           6: "it asked for a mode we do not know"}


def R_PKT(t, what):
    return r"^packet %d from peer: %s" % (t, what)


def R_OWN(x, d, j):
    """The error of side x, which meets its own packet, frame j of
    direction d, reflected back into the other side's stream: a function
    of the middle's log, which says how many of the other side's packets
    (all intact and in order, in the cases that use this) reached x
    before it.  x expects that count as the next counter: if its own
    packet carries the same counter, the nonce passes and the tag
    fails."""
    def err(m):
        own = j - HS_FRAMES[NOISE][d]
        n = 0
        for origin, _, _ in m.delivered[x][HS_FRAMES[NOISE][INTO[x]]:]:
            if origin == (d, j):
                break
            n += 1
        return R_PKT(n, TAG if n == own else NONCE)
    return err


def R_VIOL(t, why):
    return r"^packet %d from the peer broke the protocol: %s$" % (
        t, re.escape(why))


def refusal(reason):
    """rc and err of both sides when the listener refuses the hello."""
    return ({"L": 3, "C": 1 if reason == 5 else 3},
            {"L": r"^refused \S+: %s$" % re.escape(REFUSES[reason]),
             "C": r"^\S+ refused the connection: %s$" % re.escape(
                 REFUSAL[reason])})


STARTED = set()                     # Procs not yet released
_started_lock = threading.Lock()


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


def tear_down(procs, mitm, homes):
    """End a case: its processes, its man in the middle, its homes."""
    for p in procs.values():
        release(p)
    if mitm is not None:
        mitm.close()
    for h in homes.values():
        h.cleanup()


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


# ------------------------------------------------ keys and the AEADs

def keypair(private=None):
    """A dissononce X25519 key pair, fresh or from 32 private bytes."""
    return X25519DH().generate_keypair(
        None if private is None else PrivateKey(private))


def b64(raw):
    return base64.b64encode(raw).decode()


_files = [0]
_files_lock = threading.Lock()


def secret_file(home, raw):
    """Write raw as a key file (base64 and a newline, mode 0600)."""
    with _files_lock:
        _files[0] += 1
        n = _files[0]
    path = home.path("key%d" % n)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (b64(raw) + "\n").encode())
    os.close(fd)
    return path


def nonce(suite, n):
    """The nonce of counter n: 4 zero bytes, then n as 64 bits, big-endian
    for AESGCM and little-endian for ChaChaPoly."""
    return bytes(4) + struct.pack(">Q" if suite == AES else "<Q", n)


def aead(suite, key):
    return AESGCM(key) if suite == AES else ChaCha20Poly1305(key)


def frame(body, length=None):
    return struct.pack(">I", len(body) if length is None else length) + body


def hello1(suites, mode=0):
    return bytes([2, suites, mode])


# ------------------------------------------------ cases with a middle

def first_t(proto, side):
    """Transport index of a side's first chunk: the listener's first
    packet in the default protocol is the empty DATA."""
    return 1 if proto == NOISE and side == "L" else 0


def chunk_frame(proto, side, k):
    """Index, in its direction, of the frame carrying chunk k of side."""
    return HS_FRAMES[proto][FROM[side]] + first_t(proto, side) + k


def payload(case, d, j):
    """What frame j of direction d carries after the handshake: the bytes
    of a DATA (or a classic line), "CLOSE", "ACK", "PING" or ("ERROR",
    reason) (see Case.tails), or None (no such frame)."""
    side = SRC[d]
    proto = case.proto_of[side]
    t = j - HS_FRAMES[proto][d] - first_t(proto, side)
    chunks = case.chunks[side]
    if t == -1 and proto == NOISE and side == "L":
        return b""
    if 0 <= t < len(chunks):
        return chunks[t]
    tail = case.tails[side]
    if proto == NOISE and 0 <= t - len(chunks) < len(tail):
        return tail[t - len(chunks)]
    return None


def frame_size(case, d, j):
    """The size of frame j of direction d, prefix included, or None."""
    proto = case.proto_of[SRC[d]]
    if j < HS_FRAMES[proto][d]:
        if proto == CLASSIC:
            return 32
        return 4 + case.hs_body.get((d, j), HS_BODY[(d, j)])
    p = payload(case, d, j)
    if p is None:
        return None
    if isinstance(p, tuple):
        return 4 + 28 + 1 + len(p[1])
    if isinstance(p, str):
        return 4 + 28 + 1
    # A classic line travels without its newline; a DATA has a type byte.
    return 4 + 28 + len(p) + (-1 if proto == CLASSIC else 1)


def model_walk(case, m, side):
    """What side must have written to stdout, given what the middle
    delivered to it: default, each next packet of the other side in
    order (DATA adds its bytes, ACK and PING nothing), up to CLOSE or the
    first packet out of place or altered; classic, every unaltered packet
    (one key serves both directions, so a packet reflected back is as
    good as any), up to the first altered one.  Nothing at all if its
    handshake did not get the frames it needs intact.  Returned with
    whether that walk ended on the peer's CLOSE, in its place and intact:
    then side accepted it (default only)."""
    d_in = INTO[side]
    proto = case.proto_of[side]
    log = m.delivered[side]
    hs = HS_FRAMES[proto][d_in]
    if len(log) < hs or any(log[k][:2] != ((d_in, k), "intact")
                            for k in range(hs)):
        return b"", False
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
                    isinstance(p, tuple):
                break
            if p == "CLOSE":
                return b"".join(out), True
            nxt += 1
            if isinstance(p, str):
                continue
        out.append(p)
    return b"".join(out), False


def model_out(case, m, side):
    """What side must have written to stdout (see model_walk)."""
    return model_walk(case, m, side)[0]


def cut_line(case, m, side):
    """The line of side, default, when it meets the end of TCP before the
    end of the session: whether it had accepted the peer's CLOSE by then,
    as the model says, decides the wording."""
    return R_CUT_WHOLE if model_walk(case, m, side)[1] else R_CUT_OPEN


# ------------------------------------------------- A. the man in the middle

class Fault:
    """Forward every frame as it is, and pass on the end of each
    direction.  Faults override frame() (and eof() if they must), and
    set applied once they have done what they are for: a case whose
    fault never came into play has failed."""

    applied = True

    def frame(self, m, d, j, f):
        m.forward(d, j, f)

    def eof(self, m, d):
        m.fin(d)

    def raw(self, m, d, data):
        m.send(d, data, (d, None), "raw")


class At(Fault):
    """act(m, d, j, f) on frame j of direction d; the rest forwarded.
    With end_after, direction d ends once its frame end_after has gone
    through (for a length that asks for more than will follow)."""

    def __init__(self, d, j, act, end_after=None):
        self.d, self.j, self.act, self.end_after = d, j, act, end_after
        self.applied = False

    def frame(self, m, d, j, f):
        if (d, j) == (self.d, self.j):
            self.applied = True
            self.act(m, d, j, f)
        else:
            m.forward(d, j, f)
        if d == self.d and j == self.end_after:
            m.fin(d)


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
        self.applied = False

    def frame(self, m, d, j, f):
        if (d, j) == (self.d, self.j):
            self.kept = f
            return
        m.forward(d, j, f)
        if (d, j) == (self.d, self.j + 1):
            self.applied = m.send(d, self.kept, (d, self.j), "intact")
            self.kept = None

    def eof(self, m, d):
        if d == self.d and self.kept is not None:
            self.applied = m.send(d, self.kept, (d, self.j), "intact")
        m.fin(d)


class Replay(Fault):
    """Frame j of direction d sent again right after frame `after`; with
    instead, in place of frame `after`."""

    def __init__(self, d, j, after, instead=False):
        self.d, self.j, self.after, self.kept = d, j, after, None
        self.instead = instead
        self.applied = False

    def frame(self, m, d, j, f):
        if not (self.instead and (d, j) == (self.d, self.after)):
            m.forward(d, j, f)
        if (d, j) == (self.d, self.j):
            self.kept = f
        if (d, j) == (self.d, self.after) and self.kept is not None:
            self.applied = m.send(d, self.kept, (d, self.j), "intact")


class Late(Fault):
    """Frame j of direction d forwarded as usual, and a copy of it sent
    into direction `into` only once direction `after` has ended, that is
    once the side writing it has ended and shut its half: the copy then
    reaches a side that has ended.  The end of `into` waits for it."""

    def __init__(self, d, j, into, after):
        self.d, self.j, self.into, self.after = d, j, into, after
        self.kept, self.sent, self.ended = None, False, set()
        self.applied = False

    def frame(self, m, d, j, f):
        m.forward(d, j, f)
        if (d, j) == (self.d, self.j):
            self.kept = f

    def eof(self, m, d):
        self.ended.add(d)
        if d == self.after and not self.sent:
            self.sent = True
            if self.kept is not None:
                self.applied = m.send(self.into, self.kept,
                                      (self.d, self.j), "intact")
            for e in sorted(self.ended):
                m.fin(e)
        elif d != self.into or self.sent:
            m.fin(d)


class CutAfter(Fault):
    """The TCP connection cut (both ways) once n bytes of direction d
    have gone through."""

    def __init__(self, d, n):
        self.d, self.n, self.sent = d, n, 0
        self.applied = False

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
        self.applied = True
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
            end = time.monotonic() + self.case.limit
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
        """Write data into direction d; log it as delivered, and return
        whether it was."""
        dst = DST[d]
        if self.is_cut or d in self.held or d in self.closed or \
                dst in self.dead:
            return False
        try:
            self.sock[dst].sendall(data)
        except OSError:
            self.dead.add(dst)
            return False
        self.delivered[dst].append((origin, kind, data))
        return True

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

    def wait_frame(self, d, j, timeout):
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


KEYS = {}                           # side -> identity file (default)
PUB = {}                            # side -> its public key in base64
ALLOW = []                          # an --allow file naming the connector
PSKS = {}                           # name -> PSK file

# The tails of a clean run (see the docstring): what each side sends
# after its chunks.
CLEAN = {"C": ("CLOSE", "ACK"), "L": ("ACK", "CLOSE")}
# The same with the listener closing first: then the listener's ACK is
# the last packet, and the connector waits for it.
MIRROR = {"L": ("CLOSE", "ACK"), "C": ("ACK", "CLOSE")}


class Case:
    """One fault between two x25519chat processes and what must follow.
    rc: side -> allowed exit statuses; err: side -> regex its one error
    line must match (when it fails), a list of regexes for its lines, a
    function of the middle that gives the regex (see R_OWN), or CUT;
    out: "model" (see model_out) or "none" (both stdouts empty); suite:
    the cipher both sides use (AES by default, with no --cipher: each
    offers both; CHACHA with --cipher chachapoly); tails: side -> what it
    sends after its chunks, in order (CLEAN by default); policy: side ->
    "close", "hold" or a list of (direction, frame) to wait for before
    its stdin closes (by default from its tail: "close" if it starts with
    CLOSE, its own ACK frame if with ACK, "hold" otherwise); silent: sides
    that write nothing; wait: side -> -w; args: side -> more options;
    hs_body: (direction, frame) -> body size where a hello frame differs
    (a refusal has 2 bytes); full: sides whose stdout is /dev/full (and
    whose stdout is then not checked)."""

    def __init__(self, name, proto, fault, rc, err, out="model",
                 policy=None, silent=(), wait=None, group=None, psk=None,
                 suite=AES, tails=None, args=None, limit=CASE_LIMIT,
                 hs_body=None, full=()):
        self.name, self.group = name, group
        pair = (proto, proto) if isinstance(proto, str) else proto
        self.proto_of = dict(zip("LC", pair))
        self.psk = psk or {}
        self.suite = suite
        self.args = args or {}
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
        self.limit = limit
        self.hs_body = dict(hs_body or {})
        self.full = full
        self.tails = {s: CLEAN[s] if self.proto_of[s] == NOISE else ()
                      for s in "LC"}
        self.tails.update(tails or {})
        self.policy = {s: self.default_policy(s) for s in "LC"}
        self.policy.update(policy or {})
        self.wait = dict(WAIT)
        self.wait.update(wait or {})
        self.chunks = {s: [] if s in silent else
                       [b"%s%d:%s\n" % (s.encode(), k,
                                        os.urandom(3).hex().encode())
                        for k in range(NCHUNK)] for s in "LC"}

    def default_policy(self, side):
        tail = self.tails[side]
        if self.proto_of[side] == CLASSIC or tail[:1] == ("CLOSE",):
            return "close"
        if tail[:1] == ("ACK",):
            return [(FROM[side], self.mark_frame(side, "ACK"))]
        return "hold"

    def mark_frame(self, side, mark, nth=0):
        """The frame index of side's nth CLOSE, ACK or PING."""
        at = [k for k, m in enumerate(self.tails[side]) if m == mark][nth]
        return chunk_frame(self.proto_of[side], side, NCHUNK - 1) + 1 + at

    def last_frame(self, side):
        return chunk_frame(self.proto_of[side], side, NCHUNK - 1) + \
            len(self.tails[side])

    def stray(self):
        """Whether the listener is to fail before its session: it then
        tells of it in one line (with -v) and listens on."""
        want = self.err.get("L")
        first = want[0] if isinstance(want, list) and want else want
        return isinstance(first, str) and 0 not in self.rc["L"] and (
            first.startswith(R_HS) or first.startswith("^refused "))

    def argv(self, side):
        w = ["-w", str(self.wait[side])]
        if side == "L" and self.stray():
            w.append("-v")
        if self.proto_of[side] == CLASSIC:
            return ["--classic"] + w
        if self.psk.get(side):
            w += ["--psk", PSKS[self.psk[side]]]
        if self.suite == CHACHA:
            w += ["--cipher", "chachapoly"]
        return ["-i", KEYS[side], "-n", NAME[side]] + w + \
            list(self.args.get(side, []))

    def run(self):
        homes = {"L": Home(), "C": Home()}
        procs, m, feeders = {}, None, []
        try:
            lp, port = start_listener(homes["L"], self.argv("L"),
                                      "L" in self.full)
            procs["L"] = track(lp)
            if port is None:
                return ["the listener did not start: %r" % lp.err()[-300:]]
            m = Mitm(self, port)
            m.start()
            procs["C"] = track(Proc(["-c", "127.0.0.1:%d" % m.port] +
                                    self.argv("C"), homes["C"],
                                    stdin=subprocess.PIPE,
                                    preexec=dev_full if "C" in self.full
                                    else None))
            deadline = time.monotonic() + self.limit
            for side in "LC":
                t = threading.Thread(target=self.feed,
                                     args=(m, procs[side], side),
                                     daemon=True)
                t.start()
                feeders.append(t)
            if self.stray():
                procs["C"].wait(max(0.1, deadline - time.monotonic()))
                settle_stray(procs["L"], self.err["L"], deadline)
            else:
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
                    m.wait_frame(d, chunk_frame(proto, side, k - 1),
                                 self.limit)
                stdin.write(chunk)
                stdin.flush()
            if chunks:
                m.wait_frame(d, chunk_frame(proto, side, len(chunks) - 1),
                             self.limit)
            policy = self.policy[side]
            other = OTHER[side]
            if policy == "close" and self.chunks[other]:
                # The other side acknowledges our CLOSE at once: only
                # after its own chunks, so that its ACK never comes
                # between them.
                m.wait_frame(FROM[other], chunk_frame(
                    self.proto_of[other], other, NCHUNK - 1), self.limit)
            if policy == "hold":
                end = time.monotonic() + self.limit
                while proc.alive() and time.monotonic() < end:
                    time.sleep(0.02)
            elif policy != "close":
                for dd, jj in policy:
                    m.wait_frame(dd, jj, self.limit)
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
        if not self.fault.applied:
            why.append("the fault never came into play")
        codes = {}
        for side in "LC":
            p, who = procs[side], WHO[side]
            rc, errs = p.rc, error_lines(p.err())
            if side == "L" and self.stray():
                why += stray_wrong(p, self.err["L"])
                continue
            if rc is None:
                why.append("%s hung (killed after %ds)" % (who, self.limit))
                continue
            if rc < 0:
                why.append("%s died of signal %d" % (who, -rc))
                continue
            if rc not in self.rc[side]:
                why.append("%s exit %d, expected %s" % (
                    who, rc, "/".join(map(str, sorted(self.rc[side])))))
            want = self.err.get(side)
            if callable(want):
                want = want(m)
            if want is CUT:
                want = cut_line(self, m, side)
            why += lines_wrong(who, rc, errs, want)
            want = model_out(self, m, side) if self.out == "model" and \
                side not in self.full else b""
            if p.out() != want:
                why.append("%s stdout %s, expected %s" % (
                    who, short(p.out()), short(want)))
            if self.proto_of[side] == NOISE:
                found = CODE.findall(p.err())
                had = session_reached(rc, errs)
                if len(found) != (1 if had else 0):
                    why.append("%s printed %d session codes, expected %d" %
                               (who, len(found), 1 if had else 0))
                if had and len(found) == 1:
                    codes[side] = found[0]
        if len(codes) == 2 and codes["L"] != codes["C"]:
            why.append("session codes differ through a passive middle: %s"
                       % codes)
        if why:
            why.append("stderr: listener %r, connector %r" % (
                procs["L"].err()[-400:], procs["C"].err()[-400:]))
        return why


STRAY = "listening on"


def stray_regex(want):
    return want[0] if isinstance(want, list) else want


def stray_told(p, want):
    """The lines (less any "x25519chat: ") in which a listener told of a
    stray connection, matching want."""
    rx = re.compile(stray_regex(want))
    lines = [ln[len("x25519chat: "):] if ln.startswith("x25519chat: ")
             else ln for ln in p.err().splitlines()]
    return [ln for ln in lines if rx.search(ln)]


def settle_stray(p, want, deadline):
    """A listener whose connection failed before its session: wait until
    it has told of it (one line matching want), then a moment more, in
    which it must not exit; its rc is then STRAY, and it is ended."""
    while p.alive() and time.monotonic() < deadline and not \
            stray_told(p, want):
        time.sleep(0.01)
    if p.wait(0.3) is None:
        p.rc = STRAY


def stray_wrong(p, want, refused=False):
    """What is wrong with a listener that was to treat our connection as a
    stray: one line about it (an error line for a refused key, which is
    always told; else a status line, shown with -v)."""
    why = []
    told = stray_told(p, want)
    if p.rc != STRAY:
        why.append("the listener exited %s instead of listening on" % p.rc)
    if len(told) != 1:
        why.append("the listener told of the stray in %d lines matching "
                   "/%s/, expected 1" % (len(told), stray_regex(want)))
    if error_lines(p.err()) != (told if refused else []):
        why.append("the listener printed error lines %r for a stray%s" % (
            error_lines(p.err()), "" if refused else
            " (told as status, with -v)"))
    if p.out():
        why.append("the listener wrote %s" % short(p.out()))
    if CODE.findall(p.err()):
        why.append("the listener showed a session code")
    return why


def dev_full():
    """In the child, before exec: stdout to /dev/full."""
    fd = os.open("/dev/full", os.O_WRONLY)
    os.dup2(fd, 1)
    os.close(fd)


def start_listener(home, args, full=False, timeout=5):
    """As harness.listen(), with a pipe as stdin and, with full, stdout
    to /dev/full."""
    if not full:
        return listen(home, args, stdin=subprocess.PIPE, timeout=timeout)
    p = Proc(["-l", "127.0.0.1:0"] + list(args), home, stdin=subprocess.PIPE,
             preexec=dev_full)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = LISTENING.search(p.err())
        if found:
            return p, int(found.group(2))
        if not p.alive():
            break
        time.sleep(0.02)
    return p, None


def lines_wrong(who, rc, errs, want):
    """What is wrong with a side's error lines: none on success; on
    failure one matching want (a regex), or as many as want lists, each
    matching its own."""
    if rc == 0:
        return ["%s exited 0 with error lines %r" % (who, errs)] \
            if errs else []
    pats = want if isinstance(want, list) else [want]
    if len(errs) != len(pats):
        return ["%s: %d error lines, expected %d: %r" % (
            who, len(errs), len(pats), errs)]
    return ["%s: error line %r does not match /%s/" % (who, e, p)
            for e, p in zip(errs, pats) if p and not re.search(p, e)]


def session_reached(rc, errs):
    """Whether a side that exited rc with the error lines errs finished
    its handshake: then, and only then, it prints its session code."""
    if rc == 0:
        return True
    if not errs:
        return False
    first = errs[0]
    return not (first.startswith("handshake with ") or
                first.startswith("refused ") or
                " refused the connection: " in first)


def y_detects(proto, d, y_rc, y_err, y_tail=()):
    """The reader y of direction d detects the fault and holds its stdin,
    so it never sends CLOSE; the writer x closes its own after its
    chunks.  x then sees the connection end before y's CLOSE (default:
    4), or a clean end between packets (classic: 0).  y_tail: what y may
    still send (an ACK of x's CLOSE, when the fault comes after it)."""
    x, y = SRC[d], DST[d]
    x_rc, x_err = (4, CUT) if proto == NOISE else (0, None)
    return dict(rc={y: y_rc, x: x_rc}, err={y: y_err, x: x_err},
                policy={y: "hold", x: "close"},
                tails={x: ("CLOSE",), y: y_tail})


def grow_outcome(proto, t, size, new, avail):
    """Exit and error of the reader of packet t whose length `size` the
    fault made `new`; avail bytes follow that packet in its direction
    before the middle ends that direction."""
    if new < MINLEN[proto] or new > MAXLEN:
        return 3, R_PKT(t, LEN)
    if new < size or new - size <= avail:
        return 3, R_PKT(t, TAG)       # the bytes read are not the packet
    # It waits for bytes that never come; the end of TCP arrives.
    return (4, CUT) if proto == NOISE else (3, R_MIDDLE)


def positions(size, salt):
    """(byte, bit) for every byte of a frame of size bytes, the bit
    varying along the frame."""
    return [(i, (i + salt) % 8) for i in range(size)]


def length_bits(salt, prefixed=True):
    """Every other bit of the last length byte (byte 3)."""
    return [(3, b) for b in range(8) if b != (3 + salt) % 8] \
        if prefixed else []


def offer(suite):
    """The suites byte each side's hello carries in a case of suite."""
    return 3 if suite == AES else CHOICE[CHACHA]


# --------------------------------------------- B. faults at every position

def hello_flip_expect(suite, d, i, bit):
    """rc, err, wait and hs_body of a case where one bit of hello frame 1
    (C2L) or 2 (L2C) is flipped.  Frame 1 is "2 | suites | mode", frame 2
    the choice; the listener checks the version, the mode, the length,
    the PSK and then the ciphers; a frame that grows waits for bytes no
    one sends, so the connector (with -w 1) gives up first."""
    if d == C2L:
        if i < 4:
            new = 3 ^ (1 << (8 * (3 - i) + bit))
            if new > 3 and new <= HS_MAX[HELLO1]:
                return {"C": 1, "L": 3}, {"C": R_TIMEOUT,
                                          "L": R_GONE["L"]}, FAST_WAIT, {}
            # Over 255, or a version byte with no suites and mode.
            return {"C": 3, "L": 3}, {"L": R_HELLO_BAD,
                                      "C": R_GONE["C"]}, None, {}
        if i == 4:
            reason = 1
        elif i == 6:
            reason = 4 if bit == 0 else 6      # mode 1 (PSK), or unknown
        else:
            suites = offer(suite) ^ (1 << bit)
            if suites & offer(suite) & 3:
                # A choice all the same, but not the prologue the
                # connector hashed: message 2 fails there.
                return {"C": 3, "L": 3}, {"C": R_HS_TAG,
                                          "L": R_HS_CLOSED2}, None, {}
            reason = 2
        rc, err = refusal(reason)
        return rc, err, None, {HELLO2: 2}
    if i < 4:
        new = 1 ^ (1 << (8 * (3 - i) + bit))
        if 1 < new <= HS_MAX[HELLO2]:
            return {"C": 1, "L": 3}, {"C": R_TIMEOUT,
                                      "L": R_HS_CLOSED}, FAST_WAIT, {}
    # Empty, over 255, or a byte that is neither choice (a single flip
    # never turns one choice into the other).
    return {"C": 3, "L": 3}, {"C": R_HELLO_BAD, "L": R_HS_CLOSED}, None, {}


def hs_flip_expect(d, j, i, bit):
    """rc, err and wait of a case where one bit of a Noise message is
    flipped (bytes 0-3: its length)."""
    key = (d, j)
    size = HS_BODY[key]
    new = size ^ (1 << (8 * (3 - i) + bit)) if i < 4 else size
    if key == MSG1:
        if i < 4:       # message 1 is exactly 32 bytes
            return {"L": 3, "C": 3}, {"L": R_HS_MALFORMED,
                                      "C": R_HS_CLOSED}, None
        # Any e is taken as it comes; message 2, built on it (and on the
        # hash of it), then fails at the connector.
        return {"L": 3, "C": 3}, {"C": R_HS_TAG, "L": R_HS_CLOSED2}, None
    if key == MSG2:
        if new > HS_MAX[key] or new < HS_MIN[key]:
            bad = R_HS_MALFORMED
        elif new > size:
            # The connector waits for bytes the listener will not send
            # before message 3: it times out (its -w is the shorter).
            return {"C": 1, "L": 3}, {"C": R_TIMEOUT,
                                      "L": R_HS_CLOSED2}, FAST_WAIT
        else:
            bad = R_HS_TAG
        return {"L": 3, "C": 3}, {"C": bad, "L": R_HS_CLOSED2}, None
    # Message 3: the listener fails; the connector has finished and sees
    # the connection close before the listener's first packet.  A longer
    # message 3 takes its missing bytes from the connector's first
    # packets: a bad tag all the same.
    bad = R_HS_MALFORMED if new > HS_MAX[key] or new < HS_MIN[key] else \
        R_HS_TAG
    return {"L": 3, "C": 3}, {"L": bad, "C": R_REFUSED}, None


def handshake_position_cases(suite):
    cases = []
    for key in (HELLO1, HELLO2, MSG1, MSG2, MSG3):
        d, j = key
        salt = j + (3 if d == L2C else 0) + (4 if suite == CHACHA else 0)
        pos = positions(4 + HS_BODY[key], salt) + length_bits(salt)
        group = "default, %s, %s, %s: one bit flipped at each of its %d " \
            "bytes and every bit of its last length byte (%d cases): " \
            "documented exits, no session, nothing shown" % (
                suite, HS_LABEL[key], ARROW[d], 4 + HS_BODY[key], len(pos))
        for i, bit in pos:
            if j == 0:
                rc, err, wait, hs_body = hello_flip_expect(suite, d, i, bit)
            else:
                (rc, err, wait), hs_body = hs_flip_expect(d, j, i, bit), {}
            cases.append(Case("byte %d bit %d" % (i, bit), NOISE,
                              At(d, j, flip(i, bit)), rc, err, out="none",
                              wait=wait, hs_body=hs_body, suite=suite,
                              group=group))
    return cases


def cut_cases(suite):
    """The connection cut after each byte of the hello and the
    handshake, in each direction."""
    cases = []
    for d in (C2L, L2C):
        sizes = [4 + HS_BODY[(d, j)] for j in range(HS_FRAMES[NOISE][d])]
        total = sum(sizes)
        group = "default, %s, the TCP connection cut after each of the %d " \
            "hello and handshake bytes from the %s, 0 to %d (%d cases): " \
            "documented exits, nothing shown" % (
                suite, total, WHO[SRC[d]], total - 1, total)
        for n in range(total):
            if n < sizes[0]:
                # In the hello: the connector waits for frame 2; the
                # listener for frame 1 (C2L) or, having sent frame 2, for
                # message 1 (L2C).
                err = {"C": R_GONE["C"], "L": R_GONE["L"] if d == C2L
                       else R_HS_CLOSED}
            elif n < sizes[0] + sizes[1]:
                # The connector waits for message 2; the listener for
                # message 1 (C2L: the cut came with it) or, having sent
                # message 2, for message 3 (L2C).
                err = {"C": R_HS_CLOSED, "L": R_HS_CLOSED if d == C2L
                       else R_HS_CLOSED2}
            else:
                # The connector has sent message 3: it finished and sees
                # the end before the listener's first packet.
                err = {"C": R_REFUSED, "L": R_HS_CLOSED2}
            cases.append(Case("after %d bytes" % n, NOISE, CutAfter(d, n),
                              {"L": 3, "C": 3}, err, out="none",
                              suite=suite, group=group))
    return cases


def transport_position_cases(suite):
    """One bit flipped at every byte of one packet of each kind; the
    ACKs also in the mirrored order (the listener closing first), in
    AESGCM."""
    cases = []
    kinds = [("L", "the first (empty) DATA", "first"),
             ("L", "a DATA", "data"), ("C", "a DATA", "data"),
             ("L", "the CLOSE", "close"), ("C", "the CLOSE", "close"),
             ("L", "the ACK (before its own CLOSE)", CLEAN),
             ("C", "the last ACK (after which it has ended)", CLEAN)]
    if suite == AES:
        kinds += [("C", "the ACK (before its own CLOSE, the listener "
                   "having closed first)", MIRROR),
                  ("L", "the last ACK (the listener having closed first)",
                   MIRROR)]
    for x, label, what in kinds:
        d = FROM[x]
        y = DST[d]
        if isinstance(what, dict):
            scene = {"tails": what}
            probe = Case("", NOISE, None, {}, {}, tails=what)
            j = probe.mark_frame(x, "ACK")
            # The last ACK is its writer's last packet: the writer has
            # ended and exits 0 whatever its reader makes of it.  An ACK
            # followed by its writer's CLOSE: its reader waits for the
            # rest of a grown packet no more than that.
            x_rc, x_err = (0, None) if what[x][-1] == "ACK" else (4, CUT)
        else:
            scene = y_detects(NOISE, d, 0, None)
            probe = Case("", NOISE, None, {}, {}, tails=scene["tails"])
            j = {"first": chunk_frame(NOISE, x, -1),
                 "data": chunk_frame(NOISE, x, 1),
                 "close": probe.mark_frame(x, "CLOSE")}[what]
            x_rc, x_err = 4, CUT
        t = j - HS_FRAMES[NOISE][d]
        last = probe.last_frame(x)
        size = frame_size(probe, d, j) - 4
        avail = sum(frame_size(probe, d, jj) for jj in range(j + 1,
                                                              last + 1))
        salt = j + (3 if d == L2C else 0) + (4 if suite == CHACHA else 0)
        pos = positions(4 + size, salt) + length_bits(salt)
        group = "default, %s, %s packet of the %s: one bit flipped at each " \
            "of its %d bytes and every bit of its last length byte (%d " \
            "cases): refused, only what came before shown" % (
                suite, label, WHO[x], 4 + size, len(pos))
        for i, bit in pos:
            end_after = None
            if i < 4:
                new = size ^ (1 << (8 * (3 - i) + bit))
                y_rc, y_err = grow_outcome(NOISE, t, size, new, avail)
                if size < new <= MAXLEN:
                    end_after = last
            elif i < 16:
                y_rc, y_err = 3, R_PKT(t, NONCE)
            else:
                y_rc, y_err = 3, R_PKT(t, TAG)
            kw = dict(scene)
            kw["rc"] = {y: y_rc, x: x_rc}
            kw["err"] = {y: y_err, x: x_err}
            cases.append(Case("byte %d bit %d" % (i, bit), NOISE,
                              At(d, j, flip(i, bit), end_after=end_after),
                              suite=suite, group=group, **kw))
    return cases


def classic_position_cases():
    cases = []
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
    # A line each way.
    for x in "LC":
        d = FROM[x]
        j = chunk_frame(CLASSIC, x, 1)
        t = 1
        probe = Case("", CLASSIC, None, {}, {})
        size = frame_size(probe, d, j) - 4
        avail = sum(frame_size(probe, d, jj)
                    for jj in range(j + 1, chunk_frame(CLASSIC, x, NCHUNK)))
        salt = j + (3 if d == L2C else 0)
        pos = positions(4 + size, salt) + length_bits(salt)
        group = "classic, a line of the %s: one bit flipped at each of its " \
            "%d bytes and every bit of its last length byte (%d cases): " \
            "refused, only what came before shown" % (WHO[x], 4 + size,
                                                      len(pos))
        for i, bit in pos:
            if i < 4:
                new = size ^ (1 << (8 * (3 - i) + bit))
                y_rc, y_err = grow_outcome(CLASSIC, t, size, new, avail)
            else:
                y_rc, y_err = 3, R_PKT(t, TAG)
            cases.append(Case("byte %d bit %d" % (i, bit), CLASSIC,
                              At(d, j, flip(i, bit)), group=group,
                              **y_detects(CLASSIC, d, y_rc, y_err)))
    # The connection cut after each byte of a key.
    for d in (C2L, L2C):
        group = "classic, the TCP connection cut after each of the 32 key " \
            "bytes from the %s, 0 to 31 (32 cases): documented exits, " \
            "nothing shown" % WHO[SRC[d]]
        for n in range(32):
            if d == C2L:
                # The connector has finished its exchange: for it this
                # is a clean end between packets.
                rc, err = {"L": 3, "C": 0}, {"L": R_HS_CLOSED}
            else:
                rc, err = {"L": 3, "C": 3}, {"L": R_HS_CLOSED,
                                             "C": R_HS_CLOSED}
            cases.append(Case("after %d bytes" % n, CLASSIC, CutAfter(d, n),
                              rc, err, out="none", group=group))
    return cases


def position_cases():
    cases = []
    for suite in (AES, CHACHA):
        cases += handshake_position_cases(suite) + \
            transport_position_cases(suite) + cut_cases(suite)
    return cases + classic_position_cases()


# ---------------------------------------------------- C. the other faults

def garbage(n):
    """n random bytes whose first is not zero, so that as a length
    prefix they are out of bounds."""
    return bytes([1 + os.urandom(1)[0] % 255]) + os.urandom(n - 1)


def transport_cases(suite):
    """Faults on DATA and CLOSE packets of the default protocol."""
    cases = []
    for x in "LC":
        d = FROM[x]
        y = DST[d]
        k1 = chunk_frame(NOISE, x, 1)       # the middle DATA
        t1 = first_t(NOISE, x) + 1          # its transport index
        tend = first_t(NOISE, x) + NCHUNK   # that of x's CLOSE, here next
        pre = "default, %s, %s: " % (suite, ARROW[d])

        def add(what, fault, y_rc, y_err, why, y_tail=()):
            """The reader y detects it; see y_detects()."""
            cases.append(Case(
                pre + "%s -> the %s exits %d (%s), the %s 4" % (
                    what, WHO[y], y_rc, why, WHO[x]), NOISE, fault,
                suite=suite, **y_detects(NOISE, d, y_rc, y_err, y_tail)))

        def clean(what, fault):
            cases.append(Case(pre + what + " -> both exit 0, everything "
                              "shown", NOISE, fault, {"L": 0, "C": 0}, {},
                              suite=suite))

        add("a DATA packet dropped", At(d, k1, drop), 3,
            R_PKT(t1, NONCE), "nonce")
        add("a DATA packet duplicated", At(d, k1, twice), 3,
            R_PKT(t1 + 1, NONCE), "nonce, after the first copy")
        add("two DATA packets swapped", Reorder(d, k1), 3,
            R_PKT(t1, NONCE), "nonce")
        add("the first DATA replayed after the last",
            Replay(d, k1 - 1, k1 + 1), 3, R_PKT(tend, NONCE),
            "nonce, where CLOSE was due")
        # After the CLOSE, a side still reads (the ACK of its own CLOSE
        # is to come): the replay is refused, whether or not the ACK of
        # that CLOSE went out first.
        add("the first DATA replayed right after the CLOSE",
            Replay(d, k1 - 1, k1 + 2), 3, R_PKT(tend + 1, NONCE),
            "nonce, after the CLOSE", y_tail=("ACK",))
        # Once the reader has ended (its end of TCP reached the middle),
        # what still comes is read and discarded.
        clean("the first DATA replayed once the %s has ended" % WHO[y],
              Late(d, k1 - 1, d, REV[d]))
        # A reflected packet travels in the other side's stream, so that
        # side ends its stream (CLOSE) only once the packet is in.
        # Whether the nonce matches what its writer expects next from the
        # other side depends on how many packets that side has sent by
        # then: "nonce" or "tag", as the middle's log tells (R_OWN).
        cases.append(Case(
            pre + "a DATA reflected back -> the %s exits 3 (nonce or "
            "tag, as the log says), the %s 4" % (WHO[x], WHO[y]), NOISE,
            At(d, k1, reflect), {x: 3, y: 4},
            {x: R_OWN(x, d, k1), y: CUT}, suite=suite,
            policy={x: "hold", y: [(d, k1)]},
            tails={x: (), y: ("CLOSE",)}))
        # x's CLOSE back to x, and on to y, which acknowledges it and
        # ends its own stream; x has failed and acknowledges nothing.
        cases.append(Case(
            pre + "the CLOSE reflected back -> the %s exits 3 (nonce or "
            "tag, as the log says), the %s (its ACK never acknowledged) 4"
            % (WHO[x], WHO[y]), NOISE,
            At(d, chunk_frame(NOISE, x, NCHUNK), reflect), {x: 3, y: 4},
            {x: R_OWN(x, d, chunk_frame(NOISE, x, NCHUNK)), y: CUT},
            suite=suite,
            tails={x: ("CLOSE",), y: ("ACK", "CLOSE")}))
        add("a DATA packet cut in half, then the end of TCP",
            At(d, k1, truncate), 4, CUT, "cut")
        add("the CLOSE cut in half, then the end of TCP",
            At(d, k1 + 2, truncate), 4, CUT, "cut")
        add("the end of TCP after all the data, without CLOSE",
            At(d, k1 + 2, end_instead), 4, CUT, "cut, all the data shown")
        add("random bytes in place of a DATA packet",
            At(d, k1, replace(lambda f: garbage(len(f)))), 3,
            R_PKT(t1, LEN), "length")
        add("a forged DATA packet, right length, random nonce",
            At(d, k1, replace(lambda f: f[:4] + os.urandom(len(f) - 4))), 3,
            R_PKT(t1, NONCE), "nonce")
        add("a forged DATA packet with the expected nonce",
            At(d, k1, replace(lambda f, t=t1: f[:4] + nonce(suite, t) +
                              os.urandom(len(f) - 16))), 3, R_PKT(t1, TAG),
            "tag")
        if x == "L":
            add("the listener's first (empty) DATA dropped",
                At(d, k1 - 2, drop), 3, R_PKT(0, NONCE), "nonce")
            cases.append(Case(
                pre + "the listener's first DATA reflected back -> the "
                "listener exits 3 (nonce or tag, as the log says), the "
                "connector 4", NOISE, At(d, k1 - 2, reflect),
                {"L": 3, "C": 4}, {"L": R_OWN("L", d, k1 - 2), "C": CUT},
                suite=suite,
                policy={"L": "hold", "C": [(d, k1 - 2)]},
                tails={"L": (), "C": ("CLOSE",)}))
            # x25519chat(1): a connector whose connection ends before
            # that packet was refused (3).  Cut inside it, the connection
            # ends after it began: taken as a cut after the handshake (4).
            add("the listener's first DATA cut in half, then the end of "
                "TCP", At(d, k1 - 2, truncate), 4, CUT, "cut")
        # A bare length prefix in place of a packet.  Out of bounds,
        # nothing more follows (not even the end of TCP), so a reader that
        # waited for the body would hang.  In bounds, the packets that
        # follow are read as its body, then the end of that direction.
        scene = Case("", NOISE, None, {}, {},
                     tails=y_detects(NOISE, d, 0, None)["tails"])
        for value in (0, 28, 29, MAXLEN, MAXLEN + 1, 0xffffffff):
            valid = MINLEN[NOISE] <= value <= MAXLEN
            fault = At(d, k1, replace(lambda f, v=value: struct.pack(">I", v),
                                      "go" if valid else "hold"),
                       end_after=scene.last_frame(x) if valid else None)
            if not valid:
                y_rc, y_err, why = 3, R_PKT(t1, LEN), "length"
            elif value == MAXLEN:
                # Far more than will ever come.
                y_rc, y_err = grow_outcome(NOISE, t1, 0, value, 0)
                why = "cut in a packet, at the end of TCP"
            else:
                # The next packet read from its length on: its length
                # prefix, not zeros, where the nonce begins.
                y_rc, y_err, why = 3, R_PKT(t1, NONCE), "nonce"
            add("length %s alone in place of a packet" % (
                "0x%x" % value if value > MAXLEN + 1 else value),
                fault, y_rc, y_err, why)
    return cases


def ack_cases(suite):
    """Faults on the ACKs.  In a clean run the listener's ACK comes
    before its own CLOSE, and the connector's ACK is the last packet of
    the session, after which the connector has ended."""
    cases = []
    probe = Case("", NOISE, None, {}, {})
    ack_l, close_l = probe.mark_frame("L", "ACK"), probe.mark_frame("L",
                                                                   "CLOSE")
    ack_c = probe.mark_frame("C", "ACK")
    t_ack_l = ack_l - HS_FRAMES[NOISE][L2C]
    pre = "default, %s, " % suite

    def add(what, fault, rc, err, **kw):
        cases.append(Case(pre + what, NOISE, fault, rc, err, suite=suite,
                          **kw))

    add("the listener's ACK dropped -> the connector exits 3 (nonce, on "
        "the CLOSE that follows), the listener 4", At(L2C, ack_l, drop),
        {"C": 3, "L": 4}, {"C": R_PKT(t_ack_l, NONCE), "L": CUT})
    add("the connector's last ACK dropped -> the listener, whose CLOSE is "
        "never acknowledged, exits 4 (never 0), the connector 0",
        At(C2L, ack_c, drop), {"L": 4, "C": 0}, {"L": CUT})
    add("the end of TCP in place of the connector's last ACK -> the "
        "listener exits 4 (never 0), the connector 0",
        At(C2L, ack_c, end_instead), {"L": 4, "C": 0}, {"L": CUT})
    add("the listener's ACK duplicated -> the connector exits 3 (nonce, "
        "on the copy), the listener 4", At(L2C, ack_l, twice),
        {"C": 3, "L": 4}, {"C": R_PKT(t_ack_l + 1, NONCE), "L": CUT})
    add("the listener's ACK replayed in place of its CLOSE -> the "
        "connector exits 3 (nonce), the listener 4",
        Replay(L2C, ack_l, close_l, instead=True), {"C": 3, "L": 4},
        {"C": R_PKT(t_ack_l + 1, NONCE), "L": CUT})
    add("the listener's ACK again once the connector has ended -> "
        "discarded, both exit 0", Late(L2C, ack_l, L2C, C2L),
        {"L": 0, "C": 0}, {})
    add("the connector's last ACK again once the listener has ended -> "
        "discarded, both exit 0", Late(C2L, ack_c, C2L, L2C),
        {"L": 0, "C": 0}, {})
    # The listener holds its stdin: no CLOSE of its own can follow its
    # ACK, so the connector never ends cleanly.  The listener expects the
    # connector's packet 4 (its ACK, to come), and its own ACK is its
    # packet 4 too: the nonce matches, the tag cannot.
    add("the listener's ACK reflected back -> the listener exits 3 (tag), "
        "the connector 4", At(L2C, ack_l, reflect), {"L": 3, "C": 4},
        {"L": R_PKT(t_ack_l, TAG), "C": CUT},
        policy={"L": "hold"}, tails={"L": ("ACK",), "C": ("CLOSE",)})
    add("the connector's last ACK reflected back once it has ended -> "
        "discarded, both exit 0", Late(C2L, ack_c, L2C, C2L),
        {"L": 0, "C": 0}, {})
    add("the listener's ACK cut in half, then the end of TCP -> both exit "
        "4", At(L2C, ack_l, truncate), {"L": 4, "C": 4},
        {"L": CUT, "C": CUT})
    add("the connector's last ACK cut in half, then the end of TCP -> the "
        "listener exits 4, the connector 0", At(C2L, ack_c, truncate),
        {"L": 4, "C": 0}, {"L": CUT})
    add("the end of TCP in place of the listener's CLOSE -> both exit 4",
        At(L2C, close_l, end_instead), {"L": 4, "C": 4},
        {"L": CUT, "C": CUT})

    # The listener closing first: the connector now waits for the last
    # ACK.
    mirror = Case("", NOISE, None, {}, {}, tails=MIRROR)
    ack_l, ack_c = mirror.mark_frame("L", "ACK"), mirror.mark_frame("C",
                                                                    "ACK")
    pre = "default, %s, the listener closing first: " % suite
    add("both exit 0, everything shown", Fault(), {"L": 0, "C": 0}, {},
        tails=MIRROR)
    add("the listener's last ACK dropped -> the connector, whose CLOSE is "
        "never acknowledged, exits 4 (never 0), the listener 0",
        At(L2C, ack_l, drop), {"C": 4, "L": 0}, {"C": CUT}, tails=MIRROR)
    add("the end of TCP in place of the listener's last ACK -> the "
        "connector exits 4 (never 0), the listener 0",
        At(L2C, ack_l, end_instead), {"C": 4, "L": 0}, {"C": CUT},
        tails=MIRROR)
    add("the connector's ACK dropped -> the listener exits 3 (nonce, on the "
        "CLOSE that follows), the connector 4", At(C2L, ack_c, drop),
        {"L": 3, "C": 4}, {"L": R_PKT(ack_c - HS_FRAMES[NOISE][C2L], NONCE),
                           "C": CUT}, tails=MIRROR)
    add("the listener's last ACK again once the connector has ended -> "
        "discarded, both exit 0", Late(L2C, ack_l, L2C, C2L),
        {"L": 0, "C": 0}, {}, tails=MIRROR)
    return cases


def ping_cases():
    """Faults on the PING each side sends after 15 s of silence.  Both
    sides stay silent after their chunks until both PINGs have crossed
    the middle; then the connector closes, and the listener once its ACK
    has crossed.  These cases take some 16 s each, and run together."""
    cases = []
    tails = {"C": ("PING", "CLOSE", "ACK"), "L": ("PING", "ACK", "CLOSE")}
    probe = Case("", NOISE, None, {}, {}, tails=tails)
    ping = {s: probe.mark_frame(s, "PING") for s in "LC"}
    both = [(FROM[s], ping[s]) for s in "CL"]
    base = dict(tails=tails, limit=PING_LIMIT,
                policy={"C": both, "L": [(L2C, probe.mark_frame("L",
                                                                "ACK"))]})
    for x in "LC":
        d = FROM[x]
        y = OTHER[x]
        j = ping[x]
        t = j - HS_FRAMES[NOISE][d]
        nxt = probe.mark_frame(x, "CLOSE" if x == "C" else "ACK")
        pre = "default, the %s's PING (after 15 s of silence), %s: " % (
            WHO[x], ARROW[d])
        group = pre + "one bit flipped in its length (+2, -1), nonce, " \
            "tag and type byte (5 cases) -> the %s exits 3, the %s 4" % (
                WHO[y], WHO[x])
        # +2: the next packet of x (its CLOSE, or its ACK of y's CLOSE,
        # which y sends once both PINGs are through) lends the missing
        # bytes: a bad tag.  29 - 1 is below the shortest packet.
        for (i, bit), what in (((3, 1), TAG), ((3, 0), LEN),
                               ((8, 5), NONCE), ((20, 2), TAG),
                               ((32, 0), TAG)):
            cases.append(Case("byte %d bit %d" % (i, bit), NOISE,
                              At(d, j, flip(i, bit)), {y: 3, x: 4},
                              {y: R_PKT(t, what), x: CUT}, group=group,
                              **base))

        def add(what, fault, rc, err, **kw):
            spec = dict(base)
            spec.update(kw)
            cases.append(Case(pre + what, NOISE, fault, rc, err, **spec))

        add("dropped -> the %s exits 3 (nonce, on the next packet), the "
            "%s 4" % (WHO[y], WHO[x]), At(d, j, drop), {y: 3, x: 4},
            {y: R_PKT(t, NONCE), x: CUT})
        add("duplicated -> the %s exits 3 (nonce, on the copy), the %s 4"
            % (WHO[y], WHO[x]), At(d, j, twice), {y: 3, x: 4},
            {y: R_PKT(t + 1, NONCE), x: CUT})
        # After the connector's CLOSE the listener holds its stdin, so
        # that it cannot end its own stream before it fails; after the
        # listener's ACK its CLOSE is held back by its policy anyway.
        policy = dict(base["policy"])
        if x == "C":
            policy["L"] = "hold"
        add("replayed after the %s's next packet -> the %s exits 3 (nonce), "
            "the %s 4" % (WHO[x], WHO[y], WHO[x]), Replay(d, j, nxt),
            {y: 3, x: 4}, {y: R_PKT(t + 2, NONCE), x: CUT},
            policy=policy)
        # Back to x in y's stream: nonce or tag, as for DATA.  Neither
        # side sends CLOSE.
        add("reflected back -> the %s exits 3 (nonce or tag, as the log "
            "says), the %s 4" % (WHO[x], WHO[y]), At(d, j, reflect),
            {x: 3, y: 4}, {x: R_OWN(x, d, j), y: CUT},
            policy={"C": "hold", "L": "hold"},
            tails={"C": ("PING",), "L": ("PING",)})
    return cases


def error_cases():
    """The ERROR a real side sends when its own output fails: the
    listener's stdout is /dev/full, and it writes nothing of its own, so
    its ERROR is its packet 1, right after the empty DATA, once the
    connector's first DATA has reached it.  What the middle does to that
    ERROR decides how the connector ends; the listener has failed (1)
    whatever comes back, its own ERROR included."""
    cases = []
    reason = b"write to stdout: No space left on device"
    err_l = "^%s$" % re.escape(reason.decode())
    j = chunk_frame(NOISE, "L", -1) + 1
    base = dict(silent=("L",), full=("L",), tails={"L": (("ERROR", reason),),
                                                   "C": ("CLOSE",)})
    pre = "default, the listener's stdout full, its ERROR (its packet 1) "

    def add(what, fault, c_rc, c_err):
        cases.append(Case(pre + what, NOISE, fault, {"L": 1, "C": c_rc},
                          {"L": err_l, "C": c_err}, **base))

    add("passed on -> the listener exits 1, the connector 5 'peer failed: "
        "write to stdout...'", Fault(), 5, R_PEER + err_l[1:])
    add("dropped -> the connector exits 4 (cut), the listener 1",
        At(L2C, j, drop), 4, CUT)
    add("with a bit of its tag flipped -> the connector exits 3 (tag, not "
        "answered), the listener 1", At(L2C, j, flip(20, 3)), 3,
        R_PKT(1, TAG))
    add("with a bit of its nonce flipped -> the connector exits 3 (nonce), "
        "the listener 1", At(L2C, j, flip(12, 0)), 3, R_PKT(1, NONCE))
    # After the peer's ERROR only another ERROR is heard: the copy, with a
    # stale nonce, is dropped unread.
    add("duplicated -> the connector exits 5, one line, the listener 1",
        At(L2C, j, twice), 5, R_PEER + err_l[1:])
    # Back to its sender, which has failed and reads on only for an ERROR
    # of the peer's: its own does not open.
    add("reflected back -> the listener exits 1, one line, the connector 5",
        At(L2C, j, reflect), 5, R_PEER + err_l[1:])
    add("cut in half, then the end of TCP -> the connector exits 4, the "
        "listener 1", At(L2C, j, truncate), 4, CUT)
    return cases


def hello_cases(suite):
    """Garbage, wrong sizes, forged values, slow and stalled frames in
    place of the hello frames."""
    cases = []
    pre = "default, %s, " % suite
    s = offer(suite)
    other = AES if suite == CHACHA else CHACHA

    def add(what, fault, rc, err, **kw):
        kw.setdefault("out", "none")
        cases.append(Case(pre + what, NOISE, fault, rc, err, suite=suite,
                          **kw))

    def refused(what, body, reason, length=None):
        rc, err = refusal(reason)
        add("hello frame 1 %s -> refused: %s" % (what, REFUSAL[reason]),
            At(C2L, 0, replace(lambda f: frame(body, length))), rc, err,
            hs_body={HELLO2: 2})

    refused("with version 1", bytes([1, s, 0]), 1)
    refused("with version 3", bytes([3, s, 0]), 1)
    # A later version may say more: told plainly, before its length.
    refused("with version 3 and 10 bytes", bytes([3, s, 0]) + bytes(7), 1)
    refused("with version 0xff", bytes([0xff, s, 0]), 1)
    refused("with mode 1 (a PSK the listener lacks)", bytes([2, s, 1]), 4)
    refused("with mode 2 (short codes, not spoken yet)", bytes([2, s, 2]),
            6)
    refused("with mode 2 and 5 bytes", bytes([2, s, 2, 0, 0]), 6)
    refused("with mode 0xff", bytes([2, s, 0xff]), 6)
    refused("offering no suite", bytes([2, 0, 0]), 2)
    # The PSK is judged before the ciphers.
    refused("offering no suite, with mode 1", bytes([2, 0, 1]), 4)
    refused("offering only unknown suites (0xfc)", bytes([2, 0xfc, 0]), 2)
    # Item of the prologue: any change of the offer that still leaves a
    # choice makes message 2 fail at the connector.  No session, no code.
    for what, value in (("stripped of AESGCM (the middle forcing "
                         "ChaChaPoly)", s & ~1),
                        ("stripped of ChaChaPoly", s & ~2),
                        ("with AESGCM added", s | 1),
                        ("with unknown bits added (0xf0)", s | 0xf0)):
        if value == s or value & s & 3 == 0:
            continue
        add("hello frame 1 %s -> both exit 3 (message 2 fails at the "
            "connector), no session code" % what,
            At(C2L, 0, replace(lambda f, v=value: frame(bytes([2, v, 0])))),
            {"L": 3, "C": 3}, {"C": R_HS_TAG, "L": R_HS_CLOSED2})
    for what, body in (("one byte longer", bytes([2, s, 0, 0])),
                       ("one byte shorter", bytes([2, s])),
                       ("of the version alone", bytes([2])),
                       ("empty", b""),
                       ("of 255 bytes", bytes([2, s, 0]) + bytes(252))):
        add("hello frame 1 %s -> the listener exits 3 'malformed hello' "
            "without answering, the connector 3" % what,
            At(C2L, 0, replace(lambda f, b=body: frame(b))),
            {"L": 3, "C": 3}, {"L": R_HELLO_BAD, "C": R_GONE["C"]})
    add("hello frame 1 announcing 256 bytes -> refused before reading: "
        "the listener exits 3 'malformed hello', the connector 3",
        At(C2L, 0, replace(lambda f: frame(bytes(256)), "hold")),
        {"L": 3, "C": 3}, {"L": R_HELLO_BAD, "C": R_GONE["C"]})
    add("random bytes in place of hello frame 1 (length too) -> the "
        "listener exits 3 'malformed hello', the connector 3",
        At(C2L, 0, replace(lambda f: garbage(len(f)), "hold")),
        {"L": 3, "C": 3}, {"L": R_HELLO_BAD, "C": R_GONE["C"]})
    add("hello frame 1 sent one byte at a time -> both exit 0",
        At(C2L, 0, slowly), {"L": 0, "C": 0}, {}, out="model")
    add("hello frame 1, half of it, then silence -> the listener exits 1 "
        "(timed out) after -w 1, the connector 3", At(C2L, 0, stall),
        {"L": 1, "C": 3}, {"L": R_TIMEOUT, "C": R_GONE["C"]},
        wait={"L": 1, "C": 3})
    # The connector reads its own offer as the choice: 3 bytes.
    add("hello frame 1 reflected back to the connector -> it exits 3 "
        "'malformed hello', the listener 3", At(C2L, 0, reflect),
        {"L": 3, "C": 3}, {"C": R_HELLO_BAD, "L": R_HS_CLOSED})

    # Frame 2.
    for reason in range(1, 10):
        # The listener sent its choice, and waits for message 1.
        rc = {"C": 1 if reason == 5 else 3, "L": 3}
        err = {"C": r"^\S+ refused the connection: %s$" % re.escape(
            REFUSAL[reason]), "L": R_HS_CLOSED}
        add("a refusal (0, %d) forged in place of the choice -> the "
            "connector exits %d '%s', the listener 3" % (
                reason, rc["C"], REFUSAL[reason]),
            At(L2C, 0, replace(lambda f, r=reason: frame(bytes([0, r])))),
            rc, err)
    for what, body in (("a refusal with reason 0", bytes([0, 0])),
                       ("a refusal with reason 10", bytes([0, 10])),
                       ("a refusal with reason 0xff", bytes([0, 0xff])),
                       ("a refusal without its reason", bytes([0])),
                       ("a refusal of 3 bytes", bytes([0, 1, 0])),
                       ("the choice 3", bytes([3])),
                       ("the choice 0xff", bytes([0xff])),
                       ("the choice and one byte more",
                        bytes([CHOICE[suite], 0])),
                       ("an empty frame", b""),
                       ("255 bytes", bytes([CHOICE[suite]]) + bytes(254))):
        add("%s in place of the choice -> the connector exits 3 "
            "'malformed hello', the listener 3" % what,
            At(L2C, 0, replace(lambda f, b=body: frame(b))),
            {"L": 3, "C": 3}, {"C": R_HELLO_BAD, "L": R_HS_CLOSED})
    add("a choice frame announcing 256 bytes -> the connector exits 3 "
        "'malformed hello', the listener 3",
        At(L2C, 0, replace(lambda f: frame(bytes(256)))),
        {"L": 3, "C": 3}, {"C": R_HELLO_BAD, "L": R_HS_CLOSED})
    add("random bytes in place of the choice (length too) -> the "
        "connector exits 3 'malformed hello', the listener 3",
        At(L2C, 0, replace(lambda f: garbage(len(f)))),
        {"L": 3, "C": 3}, {"C": R_HELLO_BAD, "L": R_HS_CLOSED})
    # The choice rewritten to the other suite.
    rewrite = At(L2C, 0, replace(lambda f: frame(bytes([CHOICE[other]]))))
    if s & CHOICE[other]:
        add("the choice rewritten to %s, which the connector offered -> "
            "both exit 3 (message 2 fails at the connector), no session "
            "code" % other, rewrite, {"L": 3, "C": 3},
            {"C": R_HS_TAG, "L": R_HS_CLOSED2})
    add("the choice rewritten to %s, which the connector did not offer "
        "(--cipher %s on it) -> it exits 3, the listener 3" % (
            other, suite), At(L2C, 0, replace(lambda f: frame(bytes(
                [CHOICE[other]])))), {"L": 3, "C": 3},
        {"C": R_CHOICE, "L": R_HS_CLOSED},
        args={"C": ["--cipher", suite]} if suite == AES else None)
    add("the choice sent one byte at a time -> both exit 0",
        At(L2C, 0, slowly), {"L": 0, "C": 0}, {}, out="model")
    add("the choice, half of it, then silence -> the connector exits 1 "
        "(timed out) after -w 1, the listener 3", At(L2C, 0, stall),
        {"C": 1, "L": 3}, {"C": R_TIMEOUT, "L": R_HS_CLOSED},
        wait=FAST_WAIT)
    # The listener reads its own choice as message 1: 1 byte.
    add("the choice reflected back to the listener -> it exits 3 "
        "'malformed handshake message', the connector 3",
        At(L2C, 0, reflect), {"L": 3, "C": 3},
        {"L": R_HS_MALFORMED, "C": R_HS_CLOSED})
    return cases


def handshake_cases(suite):
    """Garbage, wrong sizes, slow and stalled Noise messages, and
    messages reflected."""
    cases = []
    for key in (MSG1, MSG2, MSG3):
        d, j = key
        pre = "default, %s, %s: " % (suite, HS_LABEL[key])
        reader, writer = DST[d], SRC[d]
        # Who sees the connection close when the reader fails: the
        # connector waiting for message 2, the listener after message 2
        # (with its hint), or the connector once it has sent message 3
        # (which takes it as a refusal).
        closed = {MSG1: R_HS_CLOSED, MSG2: R_HS_CLOSED2,
                  MSG3: R_REFUSED}[key]

        def fails(first, first_err):
            second = OTHER[first]
            return dict(rc={first: 3, second: 3},
                        err={first: first_err, second: R_HS_CLOSED2
                             if key == MSG1 else closed}, out="none")

        def add(what, fault, spec, **kw):
            spec.update(kw)
            cases.append(Case(pre + what, NOISE, fault, suite=suite,
                              **spec))

        # A random e in message 1 is taken as it comes; message 2, built
        # on it, then fails at the connector.
        add("random bytes in place of its body -> both 3",
            At(d, j, replace(lambda f: f[:4] + os.urandom(len(f) - 4))),
            fails("C", R_HS_TAG) if key == MSG1 else
            fails(reader, R_HS_TAG))
        spec = fails(reader, R_HS_MALFORMED)
        if key == MSG1:
            spec["err"]["C"] = R_HS_CLOSED
        add("random bytes in place of the whole message (length too) -> "
            "both 3, 'malformed'", At(d, j, replace(
                lambda f: garbage(len(f)))), spec)
        # Message 1 has no room for a byte more or less; the others fail
        # to authenticate their payload.
        for what, make in (("one byte longer",
                            lambda f: frame(f[4:] + os.urandom(1))),
                           ("one byte shorter", lambda f: frame(f[4:-1]))):
            if key == MSG1:
                spec = fails(reader, R_HS_MALFORMED)
                spec["err"]["C"] = R_HS_CLOSED
            else:
                spec = fails(reader, R_HS_TAG)
            add(what + " -> both 3", At(d, j, replace(make)), spec)
        add("sent one byte at a time (short reads) -> both exit 0, all "
            "data through", At(d, j, slowly),
            dict(rc={"L": 0, "C": 0}, err={}))
        # Half of it, then silence: its reader gives up after its -w (1);
        # the other then sees the connection close.
        spec = fails(reader, R_TIMEOUT)
        spec["rc"][reader] = 1
        if key == MSG1:
            spec["err"]["C"] = R_HS_CLOSED
        add("half of it, then silence -> the %s exits 1 (timed out) after "
            "-w 1, the %s 3" % (WHO[reader], WHO[writer]), At(d, j, stall),
            spec, wait={reader: 1, writer: 3})
    # Reflected back to its writer, who reads it in place of the next.
    pre = "default, %s, " % suite
    cases.append(Case(pre + "message 1 reflected back to the connector "
                      "-> both 3", NOISE, At(C2L, 1, reflect),
                      {"L": 3, "C": 3}, {"C": R_HS_MALFORMED,
                                         "L": R_HS_CLOSED2}, out="none",
                      suite=suite))
    cases.append(Case(pre + "message 2 reflected back to the listener "
                      "-> both 3", NOISE, At(L2C, 1, reflect),
                      {"L": 3, "C": 3}, {"L": R_HS_TAG, "C": R_REFUSED},
                      out="none", suite=suite))
    cases.append(Case(pre + "message 3 reflected back to the connector "
                      "-> it exits 3 (nonce) on it as packet 0, the "
                      "listener 4", NOISE, At(C2L, 2, reflect),
                      {"L": 4, "C": 3}, {"C": R_PKT(0, NONCE), "L": CUT},
                      policy={"C": "hold"}, tails={"C": ()}, suite=suite))
    return cases


def low_order_cases():
    cases = []
    points = low_order_points()
    if len(points) < 10:
        check("the x25519 vectors list the low-order points", False,
              "found only %d" % len(points))
    n = len(points)
    for p in points:
        name = p.hex()[:16] + "..."
        sub = replace(lambda f, p=p: f[:4] + p + f[36:])
        cases.append(Case(name, NOISE, At(C2L, 1, sub), {"L": 3, "C": 3},
                          {"L": R_LOW, "C": R_HS_CLOSED}, out="none",
                          group="default, each of the %d low-order points "
                          "of the x25519 vectors as e in message 1 -> the "
                          "listener 3 'low-order', the connector 3" % n))
        cases.append(Case(name, NOISE, At(L2C, 1, sub), {"L": 3, "C": 3},
                          {"C": R_LOW, "L": R_HS_CLOSED2}, out="none",
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
    return cases


def classic_cases():
    cases = []
    for x in "LC":
        d = FROM[x]
        y = DST[d]
        k1 = chunk_frame(CLASSIC, x, 1)     # the middle line
        t1 = 1
        pre = "classic, %s: " % ARROW[d]

        def add(what, fault, y_rc, y_err, why):
            cases.append(Case(
                pre + "%s -> the %s exits %d (%s), the %s 0" % (
                    what, WHO[y], y_rc, why, WHO[x]), CLASSIC, fault,
                **y_detects(CLASSIC, d, y_rc, y_err)))

        def unnoticed(what, fault, policy=None):
            cases.append(Case(pre + what + " goes unnoticed, as "
                              "documented: both exit 0, the lines "
                              "shown as they came", CLASSIC, fault,
                              {"L": 0, "C": 0}, {}, policy=policy))

        unnoticed("a line dropped", At(d, k1, drop))
        unnoticed("a line duplicated", At(d, k1, twice))
        unnoticed("two lines swapped", Reorder(d, k1))
        unnoticed("the first line replayed after the last",
                  Replay(d, k1 - 1, k1 + 1))
        unnoticed("a line reflected back to the %s (one key for both "
                  "directions)" % WHO[x], At(d, k1, reflect),
                  policy={y: [(d, k1)]})
        add("a packet cut in half, then the end of TCP",
            At(d, k1, truncate), 3, R_MIDDLE, "cut in a packet")
        add("random bytes in place of a packet",
            At(d, k1, replace(lambda f: garbage(len(f)))), 3,
            R_PKT(t1, LEN), "length")
        add("a forged packet, right length, random contents",
            At(d, k1, replace(lambda f: f[:4] + os.urandom(len(f) - 4))), 3,
            R_PKT(t1, TAG), "tag")
        for value in (0, 27, 28, MAXLEN, MAXLEN + 1, 0xffffffff):
            valid = MINLEN[CLASSIC] <= value <= MAXLEN
            fault = At(d, k1, replace(lambda f, v=value: struct.pack(">I", v),
                                      "go" if valid else "hold"))
            if not valid:
                y_rc, y_err, why = 3, R_PKT(t1, LEN), "length"
            elif value == MAXLEN:
                y_rc, y_err = grow_outcome(CLASSIC, t1, 0, value, 0)
                why = "cut in a packet, at the end of TCP"
            else:
                y_rc, y_err, why = 3, R_PKT(t1, TAG), "tag"
            add("length %s alone in place of a packet" % (
                "0x%x" % value if value > MAXLEN + 1 else value),
                fault, y_rc, y_err, why)
    # Classic keys are bare 32 bytes.
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
                              out="none", wait=FAST_WAIT))
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
                              out="none", wait=FAST_WAIT))
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
    return cases


def relay_cases():
    """Two real sides through a plain relay (or the framing middle) whose
    options do not agree: PSKs, ciphers, protocols."""
    cases = []
    psk_cases = [("different --psk on each side", "a", "b",
                  {"L": 3, "C": 3},
                  {"L": R_HS + TAG + r" \(a different --psk on each side, "
                   r"or tampering\)$", "C": R_REFUSED})]
    psk_cases.append(("--psk on the listener only", "a", None) +
                     refusal(3))
    psk_cases.append(("--psk on the connector only", None, "a") +
                     refusal(4))
    for what, psk_l, psk_c, rc, err in psk_cases:
        cases.append(Case("default, %s -> both exit 3, nothing shown" %
                          what, NOISE, Fault(), rc, err, out="none",
                          psk={"L": psk_l, "C": psk_c}))
    rc, err = refusal(2)
    cases.append(Case("default, --cipher chachapoly on the connector, "
                      "--cipher aesgcm on the listener -> refused: no "
                      "common cipher, both exit 3", NOISE, Fault(), rc, err,
                      out="none", hs_body={HELLO2: 2},
                      args={"C": ["--cipher", "chachapoly"],
                            "L": ["--cipher", "aesgcm"]}))
    for who, name in (("C", "aesgcm"), ("C", "chachapoly"),
                      ("L", "chachapoly")):
        cases.append(Case("default, --cipher %s on the %s only -> that "
                          "cipher, both exit 0, everything shown" % (
                              name, WHO[who]), NOISE, Fault(),
                          {"L": 0, "C": 0}, {}, args={who: ["--cipher",
                                                            name]}))
    # One side classic, the other default, through a plain relay.
    cases.append(Case("a default listener meets a classic connector: both "
                      "wait for the other to speak first -> the listener "
                      "exits 1 (timed out) after -w 1, the connector 3",
                      (NOISE, CLASSIC), Fault(), {"L": 1, "C": 3},
                      {"L": R_TIMEOUT, "C": R_HS_CLOSED}, out="none",
                      silent="LC", wait={"L": 1, "C": 3}))
    # The default connector reads the classic listener's key as frame 2:
    # its first 4 bytes as a length, over 255 but once in 2^24 runs.  The
    # classic listener, which got 7 bytes of the 32 it reads, sees the
    # connection close.
    cases.append(Case("a classic listener meets a default connector: the "
                      "connector reads its key as the choice -> 3 "
                      "'malformed hello', the listener 3", (CLASSIC, NOISE),
                      Fault(), {"L": 3, "C": 3},
                      {"C": R_HELLO_BAD, "L": R_HS_CLOSED}, out="none",
                      silent="LC"))
    return cases


# ------------------------------------------------ F. our own peer

class ProtocolError(Exception):
    """Our peer saw x25519chat break the protocol."""


class Closed(Exception):
    """The connection ended; got counts the bytes of the cut read."""

    def __init__(self, got):
        super().__init__("connection closed after %d bytes of a read" % got)
        self.got = got


class Handshake:
    """One side of the Noise handshake of x25519chat/2 (XX, or XXpsk3
    with psk), run by dissononce, in suite, with the prologue of the
    hello that came before."""

    def __init__(self, initiator, static, suite, prologue, psk=None):
        cipher = AESGCMCipher() if suite == AES else ChaChaPolyCipher()
        self.state = HandshakeState(
            SymmetricState(CipherState(cipher), SHA256Hash()), X25519DH())
        pattern = XXHandshakePattern()
        if psk is not None:
            pattern = PSKPatternModifier(3).modify(pattern)
        self.state.initialize(pattern, initiator, prologue, s=static,
                              psks=None if psk is None else [psk])
        self.keys = None        # (c1 key, c2 key) once done

    def write(self, payload=b""):
        buf = bytearray()
        self._done(self.state.write_message(payload, buf))
        return bytes(buf)

    def read(self, message):
        buf = bytearray()
        self._done(self.state.read_message(message, buf))
        return bytes(buf)

    def _done(self, split):
        if split is not None:
            # dissononce has no accessor for a CipherState's key.
            self.keys = tuple(c._key for c in split)


class Direction:
    """One direction of transport in suite: a key and the counter of the
    next packet."""

    def __init__(self, suite, key):
        self.suite, self.key, self.n = suite, key, 0

    def forge(self, plaintext, n):
        sealed = aead(self.suite, self.key).encrypt(nonce(self.suite, n),
                                                    plaintext, b"")
        body, tag = sealed[:-16], sealed[-16:]
        return struct.pack(">I", 28 + len(body)) + nonce(self.suite, n) + \
            tag + body

    def seal(self, plaintext):
        pkt = self.forge(plaintext, self.n)
        self.n += 1
        return pkt

    def open(self, pkt):
        """The plaintext of one whole packet, or ProtocolError."""
        length = struct.unpack(">I", pkt[:4])[0]
        if length != len(pkt) - 4 or not 28 < length <= MAXLEN:
            raise ProtocolError("packet length %d" % length)
        if pkt[4:16] != nonce(self.suite, self.n):
            raise ProtocolError("nonce %s where counter %d was due" %
                                (pkt[4:16].hex(), self.n))
        try:
            plain = aead(self.suite, self.key).decrypt(
                pkt[4:16], pkt[32:] + pkt[16:32], b"")
        except InvalidTag:
            raise ProtocolError("bad tag on packet %d" % self.n)
        self.n += 1
        return plain

    def rekey(self):
        """Noise Rekey(); the counter goes on under the new key."""
        self.key = aead(self.suite, self.key).encrypt(
            nonce(self.suite, 2**64 - 1), bytes(32), b"")[:32]


class Peer:
    """Our end of one TCP connection to x25519chat: the hello, the
    handshake, then packets."""

    def __init__(self, sock, initiator, suite=AES, psk=None, static=None):
        self.sock, self.initiator, self.suite = sock, initiator, suite
        self.psk = psk
        self.static = static or keypair()
        self.f1 = self.f2 = None
        self.tx = self.rx = None

    # Plain bytes.

    def recv_exact(self, n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                r = self.sock.recv_into(view[got:], n - got)
            except ConnectionResetError:
                r = 0
            if r == 0:
                raise Closed(got)
            got += r
        return bytes(buf)

    def send_raw(self, data):
        """Send bytes; False if x25519chat has already hung up."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def send_frame(self, body, length=None):
        return self.send_raw(frame(body, length))

    def recv_frame(self, limit=65535):
        length = struct.unpack(">I", self.recv_exact(4))[0]
        if length > limit:
            raise ProtocolError("a frame of %d bytes" % length)
        return self.recv_exact(length)

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drain(self, timeout=8):
        """Read until EOF; return (bytes read, whether EOF came in time)."""
        got, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                return got, True        # reset: ended all the same
            if not chunk:
                return got, True
            got += chunk
        return got, False

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # The hello and the handshake.

    def hello(self):
        """Offer our suite (the connector) or choose it (the listener)."""
        if self.initiator:
            self.f1 = hello1(CHOICE[self.suite], 1 if self.psk else 0)
            self.send_frame(self.f1)
            self.f2 = self.recv_frame(255)
            if self.f2 != bytes([CHOICE[self.suite]]):
                raise ProtocolError("frame 2 is %r" % self.f2)
        else:
            self.f1 = self.recv_frame(255)
            self.f2 = bytes([CHOICE[self.suite]])
            self.send_frame(self.f2)

    def new_handshake(self):
        return Handshake(self.initiator, self.static, self.suite,
                         PROLOGUE + self.f1 + self.f2, self.psk)

    def handshake(self, name=b""):
        """The hello and all three messages; key the link; return the
        peer's name."""
        self.hello()
        hs = self.new_handshake()
        if self.initiator:
            self.send_frame(hs.write())
            theirs = hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
        else:
            hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
            theirs = hs.read(self.recv_frame())
        self.start(hs.keys)
        return theirs

    def start(self, keys):
        c1, c2 = (Direction(self.suite, k) for k in keys)
        self.tx, self.rx = (c1, c2) if self.initiator else (c2, c1)

    # Transport.

    def send(self, kind, body=b""):
        return self.send_raw(self.tx.seal(bytes([kind]) + body))

    def recv_packet(self):
        """x25519chat's next packet: (n, type, body); Closed at its end."""
        head = self.recv_exact(4)
        length = struct.unpack(">I", head)[0]
        if not 28 < length <= MAXLEN:
            raise ProtocolError("packet length %d" % length)
        n = self.rx.n
        plain = self.rx.open(head + self.recv_exact(length))
        if plain[0] == REKEY:
            self.rx.rekey()
        return n, plain[0], plain[1:]

    def collect(self, until, timeout=8):
        """x25519chat's packets until one of type until (None: none) or
        its end: the list of (n, type, body), and whether its end
        came."""
        got = []
        self.sock.settimeout(timeout)
        try:
            while True:
                p = self.recv_packet()
                got.append(p)
                if p[1] == until:
                    return got, False
        except Closed:
            return got, True
        except (OSError, ProtocolError) as exc:
            got.append((None, None, str(exc).encode()))
            return got, False


# ------------------------------------------- D. a middle with its own key

class ActiveMitm:
    """Runs the hello and the handshake with each side under its own
    static key (as a listener towards the connector, as a connector
    towards the listener), then relays every packet, reading them all.
    Whatever fails, it hangs up on both."""

    def __init__(self, lport, psk=None):
        self.lport, self.psk = lport, psk
        self.key = keypair()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(CASE_LIMIT)
        self.port = self.srv.getsockname()[1]
        self.socks = []
        self.got_msg3 = False
        self.seen = {"L": b"", "C": b""}    # DATA read from each
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
            to_c = Peer(c, False, psk=self.psk, static=self.key)
            to_l = Peer(lsock, True, psk=self.psk, static=self.key)
            to_c.f1 = to_c.recv_frame(255)
            to_l.hello()
            to_c.f2 = bytes([CHOICE[AES]])
            to_c.send_frame(to_c.f2)
            hs_c, hs_l = to_c.new_handshake(), to_l.new_handshake()
            to_l.send_frame(hs_l.write())
            hs_c.read(to_c.recv_frame())
            hs_l.read(to_l.recv_frame())
            to_c.send_frame(hs_c.write(b"lis"))
            hs_c.read(to_c.recv_frame())
            self.got_msg3 = True
            to_l.send_frame(hs_l.write(b"con"))
            to_c.start(hs_c.keys)
            to_l.start(hs_l.keys)
            t = threading.Thread(target=self._relay, daemon=True,
                                 args=(to_l, to_c, "L"))
            t.start()
            self._relay(to_c, to_l, "C")
            t.join(CASE_LIMIT)
        except Exception as exc:    # refused, cut: hang up on both
            self.error = "%s: %s" % (type(exc).__name__, exc)
            self.hang_up()

    def _relay(self, src, dst, side):
        """Open each packet from src, note its data, seal it again for
        dst; at the end of src, end dst.  On any failure, hang up."""
        try:
            while True:
                try:
                    head = src.recv_exact(4)
                except Closed as c:
                    if c.got:
                        raise
                    dst.shutdown_write()
                    return
                body = src.recv_exact(struct.unpack(">I", head)[0])
                plain = src.rx.open(head + body)
                if plain[:1] == bytes([DATA]):
                    self.seen[side] += plain[1:]
                dst.send_raw(dst.tx.seal(plain))
                if plain[:1] == bytes([REKEY]):
                    src.rx.rekey()
                    dst.tx.rekey()
        except Exception as exc:    # a side gone or a bad packet
            self.error = self.error or "%s: %s" % (type(exc).__name__, exc)
            self.hang_up()

    def hang_up(self):
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


class Task:
    """A check that is not a Case: run() returns the list of what went
    wrong."""

    def __init__(self, name, run, group=None, limit=CASE_LIMIT):
        self.name, self.run, self.group, self.limit = name, run, group, limit


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
                    extra[s] += ["--psk", secret_file(homes[s], raw)]
            lp, port = listen(homes["L"], ["-i", KEYS["L"], "-w", "5"] +
                              extra["L"] + ([] if want is None else ["-v"]),
                              stdin=subprocess.PIPE)
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
            if want is None:
                for s in "LC":
                    procs[s].wait(CASE_LIMIT)
            else:
                # The listener refuses before its session: it listens on.
                procs["C"].wait(CASE_LIMIT)
                settle_stray(procs["L"], want[1],
                             time.monotonic() + CASE_LIMIT)
            mitm.close()
            why = []
            rcs = (procs["L"].rc, procs["C"].rc)
            text = open(kp).read() if os.path.exists(kp) else ""
            if want is None:
                codes = [CODE.findall(procs[s].err()) for s in "LC"]
                if rcs != (0, 0) or procs["L"].out() != data["C"] or \
                        procs["C"].out() != data["L"]:
                    why.append("exits %s, stdouts %s / %s" % (
                        rcs, short(procs["L"].out()),
                        short(procs["C"].out())))
                for s in "LC":
                    if error_lines(procs[s].err()):
                        why.append("%s: error lines %r" % (
                            WHO[s], error_lines(procs[s].err())))
                if mitm.seen != {"L": data["L"], "C": data["C"]}:
                    why.append("the middle read %r" % mitm.seen)
                if [len(c) for c in codes] != [1, 1] or \
                        codes[0] == codes[1]:
                    why.append("session codes %s" % codes)
                if b64(mitm.key.public.data) not in text:
                    why.append("known_peers holds %r" % text)
            else:
                why += ["listener: " + w for w in stray_wrong(
                    procs["L"], want[1], refused=want[1] in (
                        "--peer", "not in the --allow list"))]
                for s, rc, rx in (("C",) + want[2:],):
                    p = procs[s]
                    errs = error_lines(p.err())
                    if p.rc != rc or len(errs) != 1 or \
                            not re.search(rx, errs[0]) or p.out():
                        why.append("%s: exit %s (expected %d), errors %r "
                                   "(expected one matching /%s/), stdout "
                                   "%s" % (WHO[s], p.rc, rc, errs, rx,
                                           short(p.out())))
                    if CODE.search(p.err()) and not (s == "C" and
                                                     rx == R_REFUSED):
                        why.append("%s printed a session code for a "
                                   "refused handshake" % WHO[s])
                if "--peer" in cargs or known:
                    if mitm.got_msg3:
                        why.append("the connector sent message 3 to a "
                                   "refused key")
                # A refused session proves nothing: known_peers must not
                # learn the middle's key from it.
                if not known and b64(mitm.key.public.data) in text:
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
                    want=(3, R_HS_CLOSED2, 3, r"--peer")),
        active_case("connector with the listener's key in known_peers -> "
                    "connector 3 'CHANGED' before sending message 3, "
                    "listener 3", known=True,
                    want=(3, R_HS_CLOSED2, 3, r"CHANGED")),
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
                    want=(3, R_HS_CLOSED2, 3, R_REFUSED)),
    ]


# ----------------------------------------------------- E. hostile peers

def open_server():
    """A listening socket for our peer, on a free loopback port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(CASE_LIMIT)
    return srv


class Rig:
    """x25519chat as "listener" or "connector" with its own identity,
    and our Peer on the other end.  stdin: bytes (a file), or "pipe" (held
    open until cleanup)."""

    def __init__(self, role, stdin=b"", args=(), suite=AES, wait=5):
        self.role = role
        self.home = Home()
        self.proc, self.srv, self.peer, self.stdin = None, None, None, None
        argv = ["-i", KEYS["L" if role == "listener" else "C"], "-w",
                str(wait)]
        if role == "connector":
            argv += ["--known-peers", self.home.path("known_peers")]
        if suite == CHACHA:
            argv += ["--cipher", "chachapoly"]
        argv += list(args)
        if stdin == "pipe":
            self.stdin = subprocess.PIPE
        else:
            self.stdin = tempfile.TemporaryFile()
            self.stdin.write(stdin)
            self.stdin.seek(0)
        try:
            if role == "listener":
                self.proc, port = listen(self.home, argv, stdin=self.stdin)
                track(self.proc)
                if port is None:
                    raise RuntimeError("listener did not start: %r" %
                                       self.proc.err())
                sock = socket.create_connection(("127.0.0.1", port),
                                                timeout=CASE_LIMIT)
            else:
                self.srv = open_server()
                self.proc = track(Proc(["-c", "127.0.0.1:%d" %
                                        self.srv.getsockname()[1]] + argv,
                                       self.home, stdin=self.stdin))
                sock = self.srv.accept()[0]
            sock.settimeout(CASE_LIMIT)
        except Exception:
            self.cleanup()
            raise
        self.peer = Peer(sock, initiator=(role == "listener"), suite=suite)

    def end(self, timeout=CASE_LIMIT):
        """x25519chat's exit status, or None if it had to be killed."""
        return self.proc.wait(timeout)

    def known(self):
        path = self.home.path("known_peers")
        return open(path).read() if os.path.exists(path) else ""

    def cleanup(self):
        if self.peer is not None:
            self.peer.close()
        if self.proc is not None:
            release(self.proc)
        if hasattr(self.stdin, "close"):
            self.stdin.close()
        if self.srv is not None:
            self.srv.close()
        self.home.cleanup()


def hostile(role, script, want_rc, want_lines, want_out, stdin="pipe",
            suite=AES):
    """Run script(rig, base) against x25519chat in role, where base is
    the index of our first packet after the listener's empty DATA (1 when
    our peer is the listener, which sends that first); then check
    x25519chat's exit, its error lines (a list of regexes), its stdout,
    and whatever script returned as wrong."""
    def run():
        rig = Rig(role, stdin=stdin, suite=suite)
        try:
            rig.peer.handshake(b"evil")
            base = 1 if role == "connector" else 0
            if base:
                rig.peer.send(DATA)
            why = list(script(rig, base) or [])
            rig.peer.shutdown_write()
            rig.peer.drain(5)
            rc = rig.end()
            errs = error_lines(rig.proc.err())
            if rc != want_rc:
                why.append("exit %s, expected %s" % (rc, want_rc))
            if rc is not None:
                why += lines_wrong("x25519chat", rc, errs, want_lines)
            if rig.proc.out() != want_out:
                why.append("stdout %s, expected %s" % (
                    short(rig.proc.out()), short(want_out)))
            if why:
                why.append("stderr %r" % rig.proc.err()[-400:])
            return why
        finally:
            rig.cleanup()
    return run


def told(rig, t, why):
    """Read what x25519chat sends until its end of TCP, which must come
    right after one ERROR saying that our packet t broke the protocol by
    why, while x25519chat still lives (it reads on, for what we may still
    send, until our own end).  Return what is wrong."""
    got, end = rig.peer.collect(None)
    alive = rig.proc.alive()
    want = ("your packet %d broke the protocol: %s" % (t, why)).encode()
    if not got or got[-1][1:] != (ERROR, want) or \
            [p for p in got if p[1] == ERROR] != got[-1:]:
        return ["x25519chat sent %r, not one ERROR %r last" % (got, want)]
    if not end:
        return ["x25519chat did not shut its sending half after its ERROR"]
    if not alive:
        return ["x25519chat exited at once after its ERROR, without "
                "waiting for our end"]
    return []


BEFORE = b"shown before the fault\n"
AFTER = b"after the fault: must never be shown\n"


def bad_packet(kind, body, why, then=()):
    """A script: DATA, the bad packet, a DATA that must never be shown;
    x25519chat must answer with an ERROR naming the bad one."""
    def script(rig, base):
        p = rig.peer
        p.send(DATA, BEFORE)
        for k, b in then:
            p.send(k, b)
        p.send(kind, body)
        p.send(DATA, AFTER)
        return told(rig, base + 1 + len(then), why)
    return script


def type_tasks():
    tasks = []
    for role in ("listener", "connector"):
        kinds = [(k, b"", "unknown packet type") for k in range(6, 256)] + \
            [(k, b"x", "a body on a packet that takes none")
             for k in (CLOSE, REKEY, ACK, PING)] + \
            [(ERROR, b, "ERROR with an empty or too long reason")
             for b in (b"", b"r" * 201)]
        group = "default, x25519chat as %s: each of the 250 unknown packet " \
            "types 0x06-0xff, CLOSE, REKEY, ACK and PING with a body, an " \
            "empty ERROR and one of 201 bytes (%d cases) -> exit 3 'broke " \
            "the protocol', an ERROR that says why, only the data before " \
            "shown" % (role, len(kinds))
        for kind, body, why in kinds:
            t = 2 if role == "connector" else 1
            tasks.append(Task("type 0x%02x, %d body bytes" % (kind, len(body)),
                              hostile(role, bad_packet(kind, body, why), 3,
                                      [R_VIOL(t, why)], BEFORE),
                              group=group))
    return tasks


def order_tasks():
    """The order of CLOSE, ACK and DATA, and the peer's ERROR."""
    tasks = []
    ours = b"from x25519chat\n"
    for role in ("listener", "connector"):
        t0 = 1 if role == "connector" else 0
        pre = "default, x25519chat as %s: " % role

        def add(what, script, rc, lines, out=BEFORE, stdin="pipe"):
            tasks.append(Task(pre + what, hostile(role, script, rc, lines,
                                                  out, stdin=stdin)))

        why = "DATA after CLOSE"
        add("DATA after our CLOSE -> exit 3 '%s', an ERROR that says so, "
            "nothing after the CLOSE shown" % why,
            bad_packet(DATA, AFTER, why, then=[(CLOSE, b"")]), 3,
            [R_VIOL(t0 + 2, why)])
        why = "a second CLOSE"
        add("a second CLOSE -> exit 3 '%s', an ERROR that says so" % why,
            bad_packet(CLOSE, b"", why, then=[(CLOSE, b"")]), 3,
            [R_VIOL(t0 + 2, why)])
        # Its stdin stays open: it has sent no CLOSE.
        why = "ACK before our CLOSE"
        add("an ACK before it sent CLOSE -> exit 3 '%s', an ERROR that "
            "says so" % why, bad_packet(ACK, b"", why), 3,
            [R_VIOL(t0 + 1, why)])

        def second_ack(rig, base):
            p = rig.peer
            p.send(DATA, BEFORE)
            got, _ = p.collect(CLOSE)
            if not got or got[-1][1] != CLOSE:
                return ["x25519chat sent %r, no CLOSE" % got]
            p.send(ACK)
            p.send(ACK)
            return told(rig, base + 2, "a second ACK")
        add("a second ACK of its CLOSE -> exit 3 'a second ACK', an ERROR "
            "that says so", second_ack, 3, [R_VIOL(t0 + 2, "a second ACK")],
            stdin=ours)

        def peer_error(reason):
            def script(rig, base):
                p = rig.peer
                p.send(DATA, BEFORE)
                p.send(ERROR, reason)
                got, end = p.collect(None)
                if not end or any(k == ERROR for _, k, _ in got):
                    return ["after our ERROR x25519chat sent %r%s" % (
                        got, "" if end else " and did not end")]
                return []
            return script
        add("our ERROR -> exit 5 'peer failed: ...', no ERROR back, the "
            "data before shown", peer_error(b"disk full"), 5,
            [R_PEER + "disk full$"])
        add("our ERROR of 200 bytes (the longest) -> exit 5",
            peer_error(b"e" * 200), 5, [R_PEER + "e{200}$"])
        # Escapes, a bell, a right-to-left override: shown escaped.
        add("our ERROR full of terminal escapes -> exit 5, the reason "
            "shown escaped", peer_error(b"\x1b[2Jgone\x07 \xe2\x80\xae"), 5,
            [R_PEER + re.escape("\\x1b[2Jgone\\x07 \\u202e") + "$"])

        def both_fail(rig, base):
            p = rig.peer
            p.send(DATA, BEFORE)
            p.send(0x77)
            why = told(rig, base + 1, "unknown packet type")
            p.send(ERROR, b"you first")
            return why
        add("an unknown type, then our own ERROR after its ERROR -> exit 3, "
            "two lines: its failure, then ours", both_fail, 3,
            [R_VIOL(t0 + 1, "unknown packet type"), R_PEER + "you first$"])

        def pings(rig, base):
            """PING and REKEY anywhere, then a clean end."""
            p = rig.peer
            p.send(PING)
            p.send(DATA, BEFORE[:10])
            p.send(REKEY)
            p.tx.rekey()
            p.send(PING)
            p.send(DATA, BEFORE[10:])
            p.send(CLOSE)
            p.send(PING)
            data, acked, closed = b"", False, False
            p.sock.settimeout(8)
            try:
                while not (acked and closed):
                    _, kind, body = p.recv_packet()
                    if kind == DATA:
                        data += body
                    elif kind == CLOSE:
                        closed = True
                        p.send(ACK)
                    elif kind == ACK:
                        acked = True
                    elif kind != PING:
                        return ["x25519chat sent type %d (%r)" % (kind,
                                                                  body)]
            except (Closed, OSError, ProtocolError) as exc:
                return ["%s: %s; it sent %r" % (type(exc).__name__, exc,
                                                data)]
            return [] if data == ours else ["x25519chat sent %r" % data]
        for suite in (AES, CHACHA):
            tasks.append(Task(pre + "%s, PING before, between and after our "
                              "DATA and CLOSE, and a REKEY -> taken, both "
                              "directions end cleanly, exit 0" % suite,
                              hostile(role, pings, 0, [], BEFORE,
                                      stdin=ours, suite=suite)))

    # The listener's first packet says whether it accepted us.
    pre = "default, x25519chat as connector: "
    why = "the listener's first packet is neither an empty DATA nor an ERROR"
    for kind, body in ((DATA, b"x"), (CLOSE, b""), (ACK, b""), (PING, b""),
                       (REKEY, b"")):

        def first(rig, base, kind=kind, body=body):
            p = rig.peer
            p.send(kind, body)
            p.send(DATA, AFTER)
            wrong = told(rig, 0, why)
            if b64(rig.peer.static.public.data) in rig.known():
                wrong.append("known_peers recorded a listener that broke "
                             "the protocol: %r" % rig.known())
            return wrong
        tasks.append(Task(pre + "a listener whose first packet is a %s%s "
                          "-> exit 3, an ERROR that says so, nothing "
                          "shown, nothing recorded" % (
                              TYPE_NAME[kind], " with a body" if body else
                              ""), raw_first(first, 3, [R_VIOL(0, why)],
                                              b"")))

    def error_first(reason):
        def script(rig, base):
            p = rig.peer
            p.send(ERROR, reason)
            got, end = p.collect(None)
            wrong = [] if end and not any(k == ERROR for _, k, _ in got) \
                else ["x25519chat sent %r%s" % (got, "" if end else
                                                " and did not end")]
            if b64(rig.peer.static.public.data) in rig.known():
                wrong.append("known_peers recorded it: %r" % rig.known())
            return wrong
        return script
    tasks.append(Task(pre + "a listener whose first packet is ERROR 'busy' "
                      "-> exit 1 'the listener is busy', one line",
                      raw_first(error_first(b"busy"), 1,
                                ["^the listener is busy$"], b"")))
    tasks.append(Task(pre + "a listener whose first packet is another "
                      "ERROR -> exit 5 'peer failed: ...'",
                      raw_first(error_first(b"go away"), 5,
                                [R_PEER + "go away$"], b"")))
    return tasks


def raw_first(script, want_rc, want_lines, want_out):
    """As hostile(), with x25519chat as connector and our peer sending
    the first packet itself."""
    def run():
        rig = Rig("connector", stdin="pipe")
        try:
            rig.peer.handshake(b"evil")
            why = list(script(rig, 0) or [])
            rig.peer.shutdown_write()
            rig.peer.drain(5)
            rc = rig.end()
            if rc != want_rc:
                why.append("exit %s, expected %s" % (rc, want_rc))
            if rc is not None:
                why += lines_wrong("x25519chat", rc,
                                   error_lines(rig.proc.err()), want_lines)
            if rig.proc.out() != want_out:
                why.append("stdout %s" % short(rig.proc.out()))
            if why:
                why.append("stderr %r" % rig.proc.err()[-400:])
            return why
        finally:
            rig.cleanup()
    return run


def trickle(sock, data, proc, period=0.25):
    """data one byte every period seconds, while x25519chat lives; True
    if all of it went."""
    for i in range(len(data)):
        if proc is not None and not proc.alive():
            return False
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return False
        time.sleep(period)
    return True


def trickle_handshake(proto, role, sock, proc):
    """A valid hello and handshake (default) or a key (classic), one
    byte every 0.25 s, for x25519chat in role, as long as it lives."""
    if proto == CLASSIC:
        trickle(sock, keypair().public.data, proc)
        return
    peer = Peer(sock, initiator=(role == "listener"))
    try:
        if peer.initiator:
            peer.f1 = hello1(CHOICE[AES])
            if not trickle(sock, frame(peer.f1), proc):
                return
            peer.f2 = peer.recv_frame(255)
            trickle(sock, frame(peer.new_handshake().write()), proc)
        else:
            peer.f1 = peer.recv_frame(255)
            peer.f2 = bytes([CHOICE[AES]])
            if not trickle(sock, frame(peer.f2), proc):
                return
            hs = peer.new_handshake()
            hs.read(peer.recv_frame())
            trickle(sock, frame(hs.write()), proc)
    except (Closed, OSError, ProtocolError):
        pass


def slow_task(proto, role, trickling):
    """x25519chat in role with -w 1 facing a peer that sends nothing, or
    trickles a valid hello and handshake one byte every 0.25 s (so that
    only a deadline on the whole handshake, not on each read, can end
    it)."""
    how = "trickles a valid handshake one byte every 0.25 s" if trickling \
        else "sends nothing"
    name = "%s, x25519chat as %s, -w 1, a peer that connects and %s -> " \
        "dropped after about 1 s: %s, nothing shown" % (
            proto, role, how, "one line 'timed out' (with -v), and it "
            "listens on" if role == "listener" else "exit 1 'timed out'")

    def run():
        home = Home()
        proc, sock, srv = None, None, None
        args = ["-w", "1"] + (["--classic"] if proto == CLASSIC else
                              ["-i", KEYS["L" if role == "listener" else
                                          "C"]])
        try:
            if role == "listener":
                proc, port = listen(home, args + ["-v"],
                                    stdin=subprocess.PIPE)
                track(proc)
                give(proc, b"must never be sent\n")
                if port is None:
                    return ["the listener did not start: %r" % proc.err()]
                sock = socket.create_connection(("127.0.0.1", port),
                                                timeout=5)
            else:
                srv = open_server()
                proc = track(Proc(["-c", "127.0.0.1:%d" %
                                   srv.getsockname()[1]] + args, home,
                                  stdin=subprocess.PIPE))
                give(proc, b"must never be sent\n")
                sock = srv.accept()[0]
            started = time.monotonic()
            sock.settimeout(5)
            if trickling:
                trickle_handshake(proto, role, sock, proc)
            why = []
            if role == "listener":
                # A stray: its line, then the listener listens on.
                end = time.monotonic() + CASE_LIMIT
                while not stray_told(proc, R_TIMEOUT) and proc.alive() and \
                        time.monotonic() < end:
                    time.sleep(0.01)
                elapsed = time.monotonic() - started
                settle_stray(proc, R_TIMEOUT, end)
                why += stray_wrong(proc, R_TIMEOUT)
            else:
                rc = proc.wait(CASE_LIMIT)
                elapsed = time.monotonic() - started
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
        "each dropped after about 1 s ('timed out', with -v), then a good " \
        "connector served normally, and it goes on listening" % proto

    def run():
        home_l, home_c = Home(), Home()
        lp, cp = None, None
        ldata = b"from the listener %s\n" % os.urandom(6).hex().encode()
        cdata = b"from the connector %s\n" % os.urandom(6).hex().encode()
        extra = ["--classic"] if proto == CLASSIC else ["-i", KEYS["L"]]
        try:
            lp, port = listen(home_l, ["-k", "-w", "1", "-v"] + extra,
                              stdin=subprocess.PIPE)
            track(lp)
            give(lp, ldata)
            if port is None:
                return ["the listener did not start: %r" % lp.err()]
            why = []
            # What a trickling connector sends: a key, or the offer and
            # message 1 (it gives up inside the offer).
            trickled = keypair().public.data if proto == CLASSIC else \
                frame(hello1(3)) + frame(os.urandom(32))
            for trickling in (False, True):
                sock = socket.create_connection(("127.0.0.1", port),
                                                timeout=5)
                started = time.monotonic()
                try:
                    if trickling:
                        t = threading.Thread(target=trickle, daemon=True,
                                             args=(sock, trickled, None))
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
            if errs or len(stray_told(lp, R_TIMEOUT)) != 2:
                why.append("listener: error lines %r, lines 'timed out' "
                           "%r, expected no error and two such lines (-v)"
                           % (errs, stray_told(lp, R_TIMEOUT)))
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
    return tasks + order_tasks() + type_tasks()


# ---------------------------------------------------------------- main

def run_all(tasks):
    """Run every task, WORKERS at a time, the slow ones (which mostly
    wait) all at once beside them; return their results in order.  A
    task that raises has failed; past BUDGET seconds none starts."""
    t0 = time.monotonic()

    def one(task):
        if time.monotonic() - t0 > BUDGET:
            return ["not run: the time budget of %d s was spent" % BUDGET]
        try:
            return task.run()
        except Exception as exc:    # the case itself broke: a failure
            return ["%s: %s" % (type(exc).__name__, exc)]

    slow = [k for k, t in enumerate(tasks) if t.limit > CASE_LIMIT]
    fast = [k for k, t in enumerate(tasks) if t.limit <= CASE_LIMIT]
    results = [None] * len(tasks)
    with concurrent.futures.ThreadPoolExecutor(max(1, len(slow))) as sp, \
            concurrent.futures.ThreadPoolExecutor(WORKERS) as fp:
        futures = {k: sp.submit(one, tasks[k]) for k in slow}
        futures.update({k: fp.submit(one, tasks[k]) for k in fast})
        for k, f in futures.items():
            results[k] = f.result()
    return results


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
        kp = keypair()
        KEYS[side] = secret_file(home, kp.private.data)
        PUB[side] = b64(kp.public.data)
    for name in "ab":
        PSKS[name] = secret_file(home, os.urandom(32))
    ALLOW.append(home.path("allow"))
    with open(ALLOW[0], "w") as f:
        f.write("# the connector only\n%s\n" % PUB["C"])


def main():
    started = time.monotonic()
    keys = Home()
    try:
        make_keys(keys)
        by_position = position_cases()
        tasks = list(ping_cases()) + by_position
        for suite in (AES, CHACHA):
            tasks += transport_cases(suite) + ack_cases(suite) + \
                hello_cases(suite) + handshake_cases(suite)
        tasks += error_cases() + low_order_cases() + classic_cases() + \
            relay_cases() + active_tasks() + hostile_tasks()
        only = os.environ.get("ATTACK_ONLY")
        if only:                    # for debugging: a subset by name
            tasks = [t for t in tasks if re.search(only, "%s %s" % (
                t.group or "", t.name))]
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
