"""Tests of x25519chat --classic against an independent peer.

The peer below implements the original X25519-TCP-Chat protocol with the
`cryptography` package only: the listener sends its raw 32-byte X25519
public key first, the connector answers with its own, both derive one
AES-256-GCM key with HKDF-SHA256 (no salt, info "handshake data"), and
every line travels as "u32 length | 12-byte nonce | 16-byte tag |
ciphertext".

What the suite covers:
  * interop in both roles and both directions: empty, UTF-8 and binary
    lines, a line of exactly 65536 bytes, a 70000-byte line (split), the
    shared secret shown on stderr with -v and only then, fresh keys and
    nonces per session;
  * x25519chat talking to itself with several megabytes each way at once;
  * hostile peers: out-of-bounds lengths, truncated and reset packets,
    bit flips in tag, ciphertext and nonce, a foreign key, low-order and
    zero public keys, handshakes cut after 0..31 bytes, silent and
    trickling peers past -w, and a -k listener that survives them;
  * connecting to a closed port and to a name that does not resolve.

Every fault must end x25519chat with the documented exit status and one
"x25519chat: " line on stderr, and stdout must hold exactly the lines
that were authenticated before the fault.
"""

import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, TOP, Home, Proc, check, finish, listen  # noqa: E402

from cryptography.exceptions import InvalidTag  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: E402
    X25519PrivateKey, X25519PublicKey)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    Encoding, PublicFormat)

KEYLEN = 32
NONCELEN = 12
TAGLEN = 16
OVERHEAD = NONCELEN + TAGLEN          # the length prefix counts these
MAXPLAIN = 65536                      # largest plaintext of one packet
IO_TIMEOUT = 10                       # seconds for any socket operation
RUN_TIMEOUT = 10                      # seconds for one x25519chat run

home = Home()
SECRET_LINE = re.compile(r"^Shared secret \(hex\) -> ([0-9a-f]{64})$", re.M)


class PeerError(Exception):
    """The other end broke the protocol (as our peer sees it)."""


# ---------------------------------------------------------------------------
# The independent classic peer.
# ---------------------------------------------------------------------------

class ClassicPeer:
    """One end of a classic session over a connected TCP socket."""

    def __init__(self, sock):
        self.sock = sock
        sock.settimeout(IO_TIMEOUT)
        self._priv = X25519PrivateKey.generate()
        self.public = self._priv.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        self.their_public = None
        self.secret = None
        self.key = None
        self._aead = None
        self.nonces_seen = []

    @classmethod
    def connect(cls, port):
        return cls(socket.create_connection(("127.0.0.1", port),
                                            timeout=IO_TIMEOUT))

    # -- raw bytes ---------------------------------------------------------

    def read_exact(self, n):
        """n bytes, or fewer if the stream ended first."""
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def read_rest(self):
        """Everything until the other end closes."""
        buf = bytearray()
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return bytes(buf)
            buf += chunk

    def send_raw(self, data):
        self.sock.sendall(data)

    def half_close(self):
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self):
        """Close with an RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()

    # -- key exchange ------------------------------------------------------

    def derive(self, their_public):
        self.their_public = their_public
        peer_key = X25519PublicKey.from_public_bytes(their_public)
        self.secret = self._priv.exchange(peer_key)
        self.key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                        info=b"handshake data").derive(self.secret)
        self._aead = AESGCM(self.key)

    def handshake(self, listener):
        """The listener sends its key first; the connector answers."""
        if listener:
            self.send_raw(self.public)
        theirs = self.read_exact(KEYLEN)
        if len(theirs) != KEYLEN:
            raise PeerError("handshake cut after %d bytes" % len(theirs))
        if not listener:
            self.send_raw(self.public)
        self.derive(theirs)

    # -- packets -----------------------------------------------------------

    def seal(self, plain, nonce=None):
        """One packet: length | nonce | tag | ciphertext."""
        nonce = os.urandom(NONCELEN) if nonce is None else nonce
        sealed = self._aead.encrypt(nonce, plain, None)
        ct, tag = sealed[:-TAGLEN], sealed[-TAGLEN:]
        return struct.pack(">I", OVERHEAD + len(ct)) + nonce + tag + ct

    def send_line(self, plain):
        self.send_raw(self.seal(plain))

    def recv_packet(self):
        """The next plaintext, or None at a clean end between packets."""
        prefix = self.read_exact(4)
        if not prefix:
            return None
        if len(prefix) < 4:
            raise PeerError("stream ended inside a length prefix")
        (length,) = struct.unpack(">I", prefix)
        if not OVERHEAD <= length <= OVERHEAD + MAXPLAIN:
            raise PeerError("length %d out of bounds" % length)
        body = self.read_exact(length)
        if len(body) != length:
            raise PeerError("stream ended inside a packet")
        nonce, tag, ct = body[:NONCELEN], body[NONCELEN:OVERHEAD], \
            body[OVERHEAD:]
        self.nonces_seen.append(nonce)
        try:
            return self._aead.decrypt(nonce, ct + tag, None)
        except InvalidTag:
            raise PeerError("bad tag") from None

    def recv_all(self):
        """Every plaintext until the other end half-closes."""
        got = []
        while True:
            plain = self.recv_packet()
            if plain is None:
                return got
            got.append(plain)


def exchange(peer, lines):
    """Send lines (then half-close) while receiving until EOF; return the
    plaintexts received, or raise what either direction raised."""
    errors = []

    def sender():
        try:
            for line in lines:
                peer.send_line(line)
            peer.half_close()
        except Exception as e:  # reported by the caller
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        got = peer.recv_all()
    finally:
        t.join(IO_TIMEOUT)
    if errors:
        raise errors[0]
    if t.is_alive():
        raise PeerError("sending did not finish")
    return got


# ---------------------------------------------------------------------------
# Running x25519chat next to the peer.
# ---------------------------------------------------------------------------

class Background:
    """Run fn(*args) in a thread; keep its result or exception."""

    def __init__(self, fn, *args):
        self.result = None
        self.error = None
        self._t = threading.Thread(target=self._run, args=(fn,) + args,
                                   daemon=True)
        self._t.start()

    def _run(self, fn, *args):
        try:
            self.result = fn(*args)
        except Exception as e:
            self.error = e

    def join(self, timeout=IO_TIMEOUT):
        self._t.join(timeout)
        if self._t.is_alive():
            self.error = self.error or PeerError("peer thread hung")
        return self


class PeerServer:
    """A listening socket on 127.0.0.1 whose first connection is handed
    to fn(sock) in a thread."""

    def __init__(self, fn):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(IO_TIMEOUT)
        self.port = self.srv.getsockname()[1]
        self.task = Background(self._serve, fn)

    def _serve(self, fn):
        try:
            conn, _ = self.srv.accept()
        finally:
            self.srv.close()
        return fn(conn)


def stdin_file(data, name):
    """An open file holding data, for x25519chat's stdin."""
    path = home.path(name)
    with open(path, "wb") as f:
        f.write(data)
    return open(path, "rb")


def start_listener(args=(), stdin=subprocess.DEVNULL):
    return listen(home, ["--classic"] + list(args), stdin=stdin)


def start_connector(port, args=(), stdin=subprocess.DEVNULL, cmd=None):
    return Proc(["-c", "127.0.0.1:%d" % port, "--classic"] + list(args),
                home, stdin=stdin, cmd=cmd)


def error_lines(err):
    return [l for l in err.splitlines() if l.startswith("x25519chat: ")]


def shown_secret(proc):
    m = SECRET_LINE.search(proc.err())
    return m.group(1) if m else None


def short(b, n=80):
    r = repr(b)
    return r if len(r) <= n else "%s... (%d bytes)" % (r[:n], len(b))


def as_lines(plains):
    return b"".join(p + b"\n" for p in plains)


def packets_for(lines):
    """The packets x25519chat sends for input lines: one per line, lines
    longer than a packet split into full packets and the rest."""
    out = []
    for line in lines:
        if not line:
            out.append(b"")
        out.extend(line[i:i + MAXPLAIN] for i in range(0, len(line),
                                                       MAXPLAIN))
    return out


def describe_packets(got, want):
    """"" when got == want, else where they first differ."""
    if got == want:
        return ""
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            break
    else:
        i = min(len(got), len(want))
    return ("first difference at packet %d: got %s, expected %s "
            "(sizes got %s, expected %s)" % (
                i, short(got[i]) if i < len(got) else "nothing",
                short(want[i]) if i < len(want) else "nothing",
                [len(p) for p in got][:12], [len(p) for p in want][:12]))


def judge(what, proc, rc, msg, stdout=b""):
    """A fault: exit status rc, exactly one error line matching msg,
    stdout exactly the authenticated lines."""
    if proc.rc is None:
        return check(what, False, "hung (killed at its time limit)")
    problems = []
    if proc.rc != rc:
        problems.append("exit status %s, expected %d" % (proc.rc, rc))
    errs = error_lines(proc.err())
    if len(errs) != 1:
        problems.append("expected one 'x25519chat: ' line, stderr: %r"
                        % proc.err()[-400:])
    elif not re.search(msg, errs[0], re.I):
        problems.append("message %r does not match /%s/" % (errs[0], msg))
    if proc.out() != stdout:
        problems.append("stdout %s, expected %s" % (short(proc.out()),
                                                    short(stdout)))
    return check(what, not problems, "; ".join(problems))


def stray_lines(proc, msg):
    """The status lines of a listener's stderr that match msg."""
    return [l for l in proc.err().splitlines() if re.search(msg, l, re.I)]


def judge_stray(what, proc, msg, stdout=b"", timeout=None):
    """A connection that fails before its session is a stray: the
    listener (started with -v) says so in one line matching msg, and keeps
    listening for the next, with nothing on stdout.  Ends the listener."""
    deadline = time.monotonic() + (timeout or RUN_TIMEOUT)
    while not stray_lines(proc, msg) and proc.alive() and \
            time.monotonic() < deadline:
        time.sleep(0.02)
    problems = []
    got = stray_lines(proc, msg)
    if len(got) != 1:
        problems.append("expected one line matching /%s/, stderr: %r" %
                        (msg, proc.err()[-400:]))
    if error_lines(proc.err()):
        problems.append("error lines %r: a stray is no error of the "
                        "listener" % error_lines(proc.err()))
    if not proc.alive():
        problems.append("the listener exited (%s) instead of listening on"
                        % proc.p.poll())
    if proc.out() != stdout:
        problems.append("stdout %s, expected %s" % (short(proc.out()),
                                                    short(stdout)))
    proc.kill()
    return check(what, not problems, "; ".join(problems))


def peer_ok(what, task):
    """Report an unexpected failure of our own peer thread."""
    if task.error is not None and not isinstance(task.error, OSError):
        check(what + " (peer side)", False, repr(task.error))
        return False
    return True


def against_listener(what, hostile, rc, msg, stdout=b"", args=(),
                     stdin=subprocess.DEVNULL):
    """Start x25519chat -l --classic, run hostile(port) against it, and
    judge the outcome: exit status rc, or with rc None a stray (the
    handshake failed, and the listener listens on).  Return hostile's
    result (or None)."""
    proc, port = start_listener(list(args) + (["-v"] if rc is None else
                                              []), stdin=stdin)
    if port is None:
        proc.kill()
        check(what, False, "listener did not start: %r" % proc.err())
        return None
    task = Background(hostile, port)
    if rc is None:
        task.join()
        judge_stray(what, proc, msg, stdout)
    else:
        proc.wait(RUN_TIMEOUT)
        task.join()
        judge(what, proc, rc, msg, stdout)
    peer_ok(what, task)
    return task.result


def against_connector(what, hostile, rc, msg, stdout=b"", args=(),
                      stdin=subprocess.DEVNULL):
    """Run hostile(sock) as the listener x25519chat -c --classic connects
    to, and judge the outcome.  Return hostile's result (or None)."""
    server = PeerServer(hostile)
    proc = start_connector(server.port, args, stdin=stdin)
    proc.wait(RUN_TIMEOUT)
    server.task.join()
    judge(what, proc, rc, msg, stdout)
    peer_ok(what, server.task)
    return server.task.result


# Keys gathered from every session, to check they are never reused.
listener_keys = []
connector_keys = []
nonces = []


# ---------------------------------------------------------------------------
# B. Interop.
# ---------------------------------------------------------------------------

UTF8 = "Grüße, ça va? Ωμέγα ✓ 日本語 🙂".encode("utf-8")
BINARY = bytes(b for b in range(256) if b != 0x0a)
# Lines x25519chat sends from its stdin (a 70000-byte line gets split;
# the line of exactly 65536 bytes has checks of its own below).
CHAT_SENDS = [b"hello from x25519chat", b"", UTF8, BINARY, b"B" * 70000,
              b"last line"]
# Lines our peer sends (each at most one packet).
PEER_SENDS = [b"hello from the peer", b"", UTF8, BINARY, b"z" * MAXPLAIN,
              b"", b"the end"]


def check_session(what, proc, peer, got):
    """The common checks of a good session."""
    if proc.rc is None:
        check(what + ": exits", False, "hung; stderr %r" % proc.err()[-400:])
        return
    check(what + ": exit status 0", proc.rc == 0,
          "status %s, stderr %r" % (proc.rc, proc.err()[-400:]))
    check(what + ": no error on stderr", not error_lines(proc.err()),
          repr(error_lines(proc.err())))
    check(what + ": shared secret shown matches the peer's",
          peer.secret is not None and shown_secret(proc) == peer.secret.hex(),
          "shown %s, peer computed %s" % (
              shown_secret(proc), peer.secret.hex() if peer.secret else None))
    out = proc.out()
    want = as_lines(PEER_SENDS)
    check(what + ": x25519chat's stdout is exactly the peer's lines",
          out == want, "got %s, expected %s" % (short(out), short(want)))
    problem = describe_packets(got or [], packets_for(CHAT_SENDS))
    check(what + ": the peer received x25519chat's lines (70000 split "
          "as 65536 + 4464)", not problem, problem)


def interop_listener():
    what = "x25519chat -l --classic <-> peer as connector"
    stdin = stdin_file(as_lines(CHAT_SENDS), "chat-sends")
    proc, port = start_listener(["-v"], stdin=stdin)
    if port is None:
        proc.kill()
        check(what, False, "listener did not start: %r" % proc.err())
        return
    peers = []

    def run():
        peer = ClassicPeer.connect(port)
        peers.append(peer)
        try:
            peer.handshake(listener=False)
            return exchange(peer, PEER_SENDS)
        finally:
            peer.close()

    task = Background(run).join(RUN_TIMEOUT)
    proc.wait(RUN_TIMEOUT)
    check(what + ": peer completed the session", task.error is None,
          repr(task.error))
    if not peers:
        check(what, False, "could not connect: %r" % task.error)
        proc.kill()
        return
    check_session(what, proc, peers[0], task.result)
    listener_keys.append(peers[0].their_public)
    connector_keys.append(peers[0].public)
    nonces.extend(peers[0].nonces_seen)


def interop_connector():
    what = "peer as listener <-> x25519chat -c --classic"
    peers = []

    def run(sock):
        peer = ClassicPeer(sock)
        peers.append(peer)
        try:
            peer.handshake(listener=True)
            return exchange(peer, PEER_SENDS)
        finally:
            peer.close()

    server = PeerServer(run)
    # No newline after the last line: it is still sent, at EOF.
    stdin = stdin_file(as_lines(CHAT_SENDS)[:-1], "chat-sends")
    proc = start_connector(server.port, ["-v"], stdin=stdin)
    proc.wait(RUN_TIMEOUT)
    server.task.join()
    check(what + ": peer completed the session", server.task.error is None,
          repr(server.task.error))
    if not peers:
        check(what, False, "x25519chat never connected: %r" % proc.err())
        return
    check_session(what, proc, peers[0], server.task.result)
    listener_keys.append(peers[0].public)
    connector_keys.append(peers[0].their_public)
    nonces.extend(peers[0].nonces_seen)


def max_line():
    """A stdin line of exactly 65536 bytes fits one packet: it must
    arrive as that one packet, followed by the next line."""
    lines = [b"A" * MAXPLAIN, b"next line"]
    what = "a stdin line of exactly 65536 bytes is sent as one packet"

    def receive(peer, listener):
        try:
            peer.handshake(listener=listener)
            return exchange(peer, [])
        finally:
            peer.close()

    proc, port = start_listener(stdin=stdin_file(as_lines(lines), "max"))
    if port is None:
        proc.kill()
        check(what, False, "listener did not start: %r" % proc.err())
    else:
        task = Background(lambda: receive(ClassicPeer.connect(port), False))
        proc.wait(RUN_TIMEOUT)
        task.join()
        problem = describe_packets(task.result or [], lines)
        check(what + " (x25519chat listening)", proc.rc == 0 and not problem,
              "status %s; %s" % (proc.rc, problem or repr(task.error)))
        no_secret_shown("x25519chat -l --classic", proc)

    server = PeerServer(lambda sock: receive(ClassicPeer(sock), True))
    proc = start_connector(server.port,
                           stdin=stdin_file(as_lines(lines), "max"))
    proc.wait(RUN_TIMEOUT)
    server.task.join()
    problem = describe_packets(server.task.result or [], lines)
    check(what + " (x25519chat connecting)", proc.rc == 0 and not problem,
          "status %s; %s" % (proc.rc, problem or repr(server.task.error)))
    no_secret_shown("x25519chat -c --classic", proc)


def no_secret_shown(who, proc):
    """A secret on the screen is asked for with -v: a session that ran
    without it must not show one."""
    check(who + " without -v: a whole session, and no shared secret shown",
          proc.rc == 0 and "Shared secret" not in proc.err() and
          "Shared secret" not in proc.out().decode("latin-1"),
          "status %s, stderr %r" % (proc.rc, proc.err()[-300:]))


def random_lines(seed, size):
    """About size bytes of lines (no newline inside, at most 65535 bytes
    each, many short, some empty, some long), ending with a newline."""
    rng = random.Random(seed)
    blob = rng.randbytes(size).replace(b"\n", b" ")
    out = bytearray()
    pos = 0
    while pos < len(blob):
        r = rng.random()
        n = 0 if r < 0.05 else rng.randint(1, 200) if r < 0.95 else \
            rng.randint(1000, MAXPLAIN - 1)
        out += blob[pos:pos + n] + b"\n"
        pos += n
    return bytes(out)


def self_bulk():
    what = "x25519chat <-> x25519chat --classic, 4 MB each way at once"
    a = random_lines(1, 4 << 20)
    b = random_lines(2, 4 << 20)
    lp, port = start_listener(["-v"], stdin=stdin_file(a, "bulk-a"))
    if port is None:
        lp.kill()
        check(what, False, "listener did not start: %r" % lp.err())
        return
    cp = start_connector(port, ["-v"], stdin=stdin_file(b, "bulk-b"))
    crc = cp.wait(30)
    lrc = lp.wait(5)
    check(what + ": both exit 0", crc == 0 and lrc == 0,
          "connector %s %r, listener %s %r" % (
              crc, error_lines(cp.err()), lrc, error_lines(lp.err())))
    check(what + ": listener's stdout is the connector's input, "
          "byte for byte", lp.out() == b,
          "%d bytes, expected %d" % (len(lp.out()), len(b)))
    check(what + ": connector's stdout is the listener's input, "
          "byte for byte", cp.out() == a,
          "%d bytes, expected %d" % (len(cp.out()), len(a)))
    ls, cs = shown_secret(lp), shown_secret(cp)
    check(what + ": both show the same shared secret",
          ls is not None and ls == cs, "%s vs %s" % (ls, cs))


def memcheck_max_packet():
    """Receiving a packet of the largest plaintext must stay inside
    x25519chat's buffers."""
    what = "a 65536-byte packet received under valgrind: no memory error"
    valgrind = shutil.which("valgrind")
    with open(BIN, "rb") as f:
        image = f.read()
    if b"__tsan_init" in image:
        sys.stderr.write("not run (valgrind cannot run a ThreadSanitizer "
                         "build): %s\n" % what)
        return
    if b"__asan_init" in image:
        # AddressSanitizer watches the buffers itself, and valgrind cannot
        # run beside it.
        what = "a 65536-byte packet received under AddressSanitizer"
        cmd = None
    elif valgrind is None:
        sys.stderr.write("not run (valgrind not installed): %s\n" % what)
        return
    else:
        cmd = [valgrind, "-q", "--error-exitcode=99", BIN]

    def run(sock):
        peer = ClassicPeer(sock)
        try:
            peer.handshake(listener=True)
            return exchange(peer, [b"m" * MAXPLAIN, b"after"])
        finally:
            peer.close()

    server = PeerServer(run)
    proc = start_connector(server.port, args=["-w", "20"], cmd=cmd)
    proc.wait(40)
    server.task.join()
    invalid = [l for l in proc.err().splitlines()
               if "Invalid" in l or "AddressSanitizer" in l]
    check(what, proc.rc == 0 and not invalid and
          proc.out() == as_lines([b"m" * MAXPLAIN, b"after"]),
          "status %s; %s" % (proc.rc, invalid[:2] or error_lines(proc.err())))


def fresh_keys_and_nonces():
    keys = [k for k in listener_keys + connector_keys if k]
    check("every session used fresh public keys",
          len(keys) >= 4 and len(set(keys)) == len(keys),
          "%d keys, %d distinct" % (len(keys), len(set(keys))))
    check("x25519chat never repeated a nonce",
          len(nonces) >= 10 and len(set(nonces)) == len(nonces),
          "%d nonces, %d distinct" % (len(nonces), len(set(nonces))))


# ---------------------------------------------------------------------------
# C. Hostile peers.
# ---------------------------------------------------------------------------

GOOD = b"good line before the fault"
SECRET_INPUT = b"x25519chat must not send this\n"


def hostile_listener_peer(port, action):
    """Connect to x25519chat -l, finish the exchange, then action(peer)."""
    peer = ClassicPeer.connect(port)
    try:
        peer.handshake(listener=False)
        return action(peer)
    finally:
        peer.close()


def hostile_connector_peer(sock, action):
    """Accept x25519chat -c, finish the exchange, then action(peer)."""
    peer = ClassicPeer(sock)
    try:
        peer.handshake(listener=True)
        return action(peer)
    finally:
        peer.close()


def both_roles(what, action, rc, msg, stdout=b""):
    """Run the post-handshake attack action(peer) against both roles."""
    against_listener(what + " (x25519chat listening)",
                     lambda port: hostile_listener_peer(port, action),
                     rc, msg, stdout)
    against_connector(what + " (x25519chat connecting)",
                      lambda sock: hostile_connector_peer(sock, action),
                      rc, msg, stdout)


def then_send(data, after=b""):
    """An attack: a good packet, then raw data (bytes, or a function of
    the peer), then (maybe) a good packet that must never show, then
    the end of our stream."""
    def action(peer):
        peer.send_line(GOOD)
        peer.send_raw(data(peer) if callable(data) else data)
        if after:
            peer.send_line(after)
        peer.half_close()
        peer.read_rest()
    return action


def flip(packet, offset):
    """packet with one bit flipped at offset (after the length prefix)."""
    b = bytearray(packet)
    b[4 + offset] ^= 0x04
    return bytes(b)


def bad_lengths():
    for length in (0, 27, OVERHEAD + MAXPLAIN + 1, 0xffffffff):
        body = os.urandom(min(length, 64))
        both_roles("length prefix %d is refused" % length,
                   then_send(struct.pack(">I", length) + body,
                             after=b"never shown"),
                   3, r"length|bound", as_lines([GOOD]))


def truncated():
    both_roles("a packet cut in its body is a security failure",
               then_send(lambda p: p.seal(b"cut short")[:4 + 20]),
               3, r"middle of a packet|truncat|closed", as_lines([GOOD]))
    both_roles("a packet cut in its length prefix is a security failure",
               then_send(b"\x00\x00"),
               3, r"middle of a packet|truncat|closed", as_lines([GOOD]))
    both_roles("a packet cut right after its length prefix is a security "
               "failure",
               then_send(struct.pack(">I", OVERHEAD + 5)),
               3, r"middle of a packet|truncat|closed", as_lines([GOOD]))


def bad_tags():
    fields = (("tag", NONCELEN + 3), ("ciphertext", OVERHEAD + 2),
              ("nonce", 5))
    for name, offset in fields:
        both_roles("a bit flipped in the %s is refused" % name,
                   then_send(lambda p, o=offset: flip(p.seal(b"tampered"),
                                                       o),
                             after=b"must not follow a bad packet"),
                   3, r"authenticat|tag", as_lines([GOOD]))
    both_roles("an empty packet with a bad tag is refused",
               then_send(lambda p: flip(p.seal(b""), NONCELEN)),
               3, r"authenticat|tag", as_lines([GOOD]))

    def foreign(peer):
        other = AESGCM(os.urandom(32))
        nonce = os.urandom(NONCELEN)
        sealed = other.encrypt(nonce, b"sealed with another key", None)
        return (struct.pack(">I", len(sealed) + NONCELEN) + nonce +
                sealed[-TAGLEN:] + sealed[:-TAGLEN])
    both_roles("a packet sealed with another key is refused",
               then_send(foreign), 3, r"authenticat|tag", as_lines([GOOD]))


def low_order_keys():
    """Public keys whose shared secret is zero, from the Wycheproof set."""
    path = os.path.join(TOP, "test", "vectors", "wycheproof_x25519.json")
    with open(path) as f:
        data = json.load(f)
    keys = []
    for group in data["testGroups"]:
        for t in group["tests"]:
            if ("LowOrderPublic" in t["flags"] and
                    "ZeroSharedSecret" in t["flags"] and
                    t["result"] == "acceptable"):
                key = bytes.fromhex(t["public"])
                if key not in keys:
                    keys.append(key)
    return keys


def low_order():
    keys = low_order_keys()
    must = {bytes(32), b"\x01" + bytes(31),
            bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b"
                          "04445cc4581c8e86d8224eddd09f1157")}
    check("the vector file lists the low-order keys to try",
          len(keys) >= 10 and must <= set(keys),
          "found %d keys" % len(keys))

    for key in keys:
        def as_connector(port, key=key):
            peer = ClassicPeer.connect(port)
            try:
                theirs = peer.read_exact(KEYLEN)
                peer.send_raw(key)
                peer.sock.shutdown(socket.SHUT_WR)
                return theirs, peer.read_rest()
            finally:
                peer.close()
        res = against_listener("low-order key %s... refused by the "
                               "listener, which listens on" %
                               key.hex()[:12], as_connector,
                               None, r"low.order",
                               stdin=stdin_file(SECRET_INPUT, "secret"))
        check("low-order key %s...: the listener sent only its key"
              % key.hex()[:12], res is not None and len(res[0]) == KEYLEN
              and res[1] == b"", "got %s" % (
                  res and "%d + %d bytes" % (len(res[0]), len(res[1]))))

    for key in sorted(must):
        def as_listener(sock, key=key):
            peer = ClassicPeer(sock)
            try:
                peer.send_raw(key)
                return peer.read_rest()
            finally:
                peer.close()
        res = against_connector("low-order key %s... refused by the "
                                "connector" % key.hex()[:12], as_listener,
                                3, r"low.order",
                                stdin=stdin_file(SECRET_INPUT, "secret"))
        check("low-order key %s...: the connector sent nothing, not even "
              "its key" % key.hex()[:12], res == b"",
              "got %s" % short(res))


def cut_handshake():
    for n in (0, 1, 16, 31):
        def as_connector(port, n=n):
            peer = ClassicPeer.connect(port)
            try:
                theirs = peer.read_exact(KEYLEN)
                peer.send_raw(peer.public[:n])
                peer.sock.shutdown(socket.SHUT_WR)
                return theirs + peer.read_rest()
            finally:
                peer.close()
        res = against_listener("connector closing after %d bytes of its "
                               "key: the listener listens on" % n,
                               as_connector, None, r"handshake",
                               stdin=stdin_file(SECRET_INPUT, "secret"))
        check("connector closing after %d bytes: the listener sent only its "
              "key" % n, res is not None and len(res) == KEYLEN,
              "got %s" % short(res))

        def as_listener(sock, n=n):
            peer = ClassicPeer(sock)
            try:
                peer.send_raw(peer.public[:n])
                peer.sock.shutdown(socket.SHUT_WR)
                return peer.read_rest()
            finally:
                peer.close()
        res = against_connector("listener closing after %d bytes of its "
                                "key" % n, as_listener, 3, r"handshake",
                                stdin=stdin_file(SECRET_INPUT, "secret"))
        check("listener closing after %d bytes: the connector sent nothing"
              % n, res == b"", "got %s" % short(res))


def resets():
    """An RST instead of a FIN.  The exit status may say I/O error (1) or
    cut stream (3), but never a clean end, and nothing unauthenticated
    may show."""
    def unread_reset(port):
        peer = ClassicPeer.connect(port)
        # Wait until the listener's key is here, leave it unread, reset.
        peer.sock.recv(1, socket.MSG_PEEK)
        time.sleep(0.05)
        peer.reset()

    def mid_packet(peer):
        peer.send_line(GOOD)
        peer.send_raw(peer.seal(b"never complete")[:20])
        time.sleep(0.2)
        peer.reset()

    proc, port = start_listener(["-v"])
    if port is None:
        proc.kill()
        check("a connection reset during the handshake", False,
              "listener did not start: %r" % proc.err())
    else:
        Background(unread_reset, port).join()
        judge_stray("a connection reset during the handshake is a stray: "
                    "one line, and the listener listens on", proc,
                    r"handshake.*(reset|closed)")
    cases = (("a connection reset inside a packet fails",
              lambda port: hostile_listener_peer(port, mid_packet),
              as_lines([GOOD])),)
    for what, hostile, stdout in cases:
        proc, port = start_listener()
        if port is None:
            proc.kill()
            check(what, False, "listener did not start: %r" % proc.err())
            continue
        Background(hostile, port).join()
        proc.wait(RUN_TIMEOUT)
        if proc.rc is None:
            check(what, False, "hung (killed at its time limit)")
            continue
        errs = error_lines(proc.err())
        check(what, proc.rc in (1, 3) and len(errs) == 1 and
              proc.out() == stdout, "status %s, errors %r, stdout %s" % (
                  proc.rc, errs, short(proc.out())))


def wait_for(cond, timeout=3):
    """Poll cond() until it holds or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def check_timing(what, started, proc, low=0.7, high=3.5):
    """-w 1 means giving up after about one second, not much later."""
    elapsed = time.monotonic() - started
    if proc.rc is not None:
        check(what + ": gave up about 1s after connecting",
              low <= elapsed <= high, "took %.2fs" % elapsed)


def trickle(sock, data, stop, period=0.4):
    """Send data one byte at a time until stopped or refused."""
    for i in range(len(data)):
        if stop.wait(period):
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return


def slow_peers():
    # The listener, facing a silent connector and a trickling one.
    for name, trickling in (("silent", False), ("trickling", True)):
        what = "%s connector past -w 1" % name
        proc, port = start_listener(["-w", "1", "-v"])
        if port is None:
            proc.kill()
            check(what, False, "listener did not start")
            continue
        started = time.monotonic()
        peer = ClassicPeer.connect(port)
        stop = threading.Event()
        task = Background(trickle, peer.sock, peer.public, stop) \
            if trickling else None
        wait_for(lambda: stray_lines(proc, r"timed out"), 5)
        elapsed = time.monotonic() - started
        stop.set()
        if task:
            task.join()
        peer.close()
        judge_stray(what + " is dropped in one line, and the listener "
                    "listens on", proc, r"timed out")
        check(what + ": dropped about 1s after connecting",
              0.7 <= elapsed <= 3.5, "took %.2fs" % elapsed)

    # The connector, facing a silent listener and a trickling one.
    for name, trickling in (("silent", False), ("trickling", True)):
        what = "%s listener past -w 1" % name
        stop = threading.Event()

        def play(sock, trickling=trickling):
            peer = ClassicPeer(sock)
            try:
                if trickling:
                    trickle(sock, peer.public, stop)
                else:
                    stop.wait(IO_TIMEOUT)
            finally:
                peer.close()
        server = PeerServer(play)
        started = time.monotonic()
        proc = start_connector(server.port, ["-w", "1"])
        proc.wait(5)
        stop.set()
        server.task.join()
        judge(what + " makes the connector exit 1", proc, 1, r"timed out")
        check_timing(what, started, proc)


def keep_listening():
    what = "-k -w 1 listener"
    proc, port = start_listener(["-k", "-w", "1", "-v"])
    if port is None:
        proc.kill()
        check(what, False, "listener did not start")
        return
    try:
        # 1. A silent peer is dropped after about a second.
        started = time.monotonic()
        silent = ClassicPeer.connect(port)
        key = silent.read_exact(KEYLEN)
        rest = silent.read_rest()  # EOF once the listener gives up
        elapsed = time.monotonic() - started
        silent.close()
        check(what + ": drops a silent peer after about 1s",
              len(key) == KEYLEN and rest == b"" and 0.7 <= elapsed <= 3.5,
              "key %d bytes, then %s after %.2fs" % (len(key), short(rest),
                                                     elapsed))
        # 2. A peer with a bad packet is dropped too.
        bad = ClassicPeer.connect(port)
        bad.handshake(listener=False)
        bad.send_raw(flip(bad.seal(b"tampered"), NONCELEN))
        bad.half_close()
        bad.read_rest()
        bad.close()
        # 3. A good peer is then served normally.
        good = ClassicPeer.connect(port)
        good.handshake(listener=False)
        got = exchange(good, [b"served after the others"])
        good.close()
        wait_for(lambda: proc.out() == b"served after the others\n")
        check(what + ": then serves a good peer", got == [] and
              proc.out() == b"served after the others\n" and
              shown_secret(proc) is not None and
              good.secret.hex() in proc.err(),
              "received %r, stdout %s" % (got, short(proc.out())))
        errs = error_lines(proc.err())
        check(what + ": reported the timeout (a stray, with -v) and the "
              "bad tag (an error of the session), one line each",
              len(stray_lines(proc, r"timed out")) == 1 and len(errs) == 1
              and re.search(r"authenticat|tag", errs[0]),
              repr(proc.err()[-600:]))
        check(what + ": a fresh key for each peer",
              len({key, bad.their_public, good.their_public}) == 3,
              "keys repeated")
        check(what + ": still listening afterwards", proc.alive(),
              "exited with %s" % proc.p.poll())
    except (OSError, PeerError) as e:
        check(what, False, "peer failed: %r" % e)
    finally:
        proc.kill()


def cannot_connect():
    # A bound socket that does not listen: connecting to it is refused.
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    try:
        proc = start_connector(port)
        proc.wait(RUN_TIMEOUT)
        judge("connecting to a closed port exits 1", proc, 1,
              r"cannot connect.*refused")
    finally:
        closed.close()
    proc = Proc(["-c", "no-such-host.invalid:1", "--classic"], home)
    proc.wait(RUN_TIMEOUT)
    judge("an unresolvable host name exits 1", proc, 1,
          r"no-such-host\.invalid")


def main():
    started = time.monotonic()
    try:
        interop_listener()
        interop_connector()
        max_line()
        self_bulk()
        memcheck_max_packet()
        fresh_keys_and_nonces()
        bad_lengths()
        truncated()
        bad_tags()
        low_order()
        cut_handshake()
        resets()
        slow_peers()
        keep_listening()
        cannot_connect()
    finally:
        home.cleanup()
    sys.stderr.write("classic suite took %.1fs\n"
                     % (time.monotonic() - started))
    finish()


if __name__ == "__main__":
    main()
