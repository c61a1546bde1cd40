#!/usr/bin/python3
"""Interop and attack tests of x25519chat's default protocol, x25519chat/1,
against a peer built on an independent Noise implementation (dissononce).

The protocol: Noise_XX_25519_AESGCM_SHA256 (XXpsk3 with --psk), prologue
"x25519chat/1", handshake messages framed as "u32 length || message", then
transport packets "u32 length || nonce[12] || tag[16] || ciphertext" whose
nonce is 4 zero bytes and a 64-bit big-endian counter, and whose plaintext
is one type byte (DATA, CLOSE, REKEY) and a body.

Our peer runs the handshake through dissononce and does its own transport
framing and AES-256-GCM with explicit counters, so that it can also replay,
reorder, flip bits, forge lengths and misbehave in the handshake.

  A. Handshake, Direction, Link: the peer.   Rig: x25519chat facing it.
  B. Interop in both roles: data both ways, names, session code, REKEY,
     CLOSE, --psk, --peer, known_peers.
  C. Attacks with x25519chat as the victim: each must end with the right
     exit status, one "x25519chat: ..." line, and nothing on stdout but the
     authenticated data sent before the fault.
  D. Truth of the -vv trace, recomputed with dissononce from the traced
     ephemeral keys; and no secret in stderr without -vv.

Run from the top directory: /usr/bin/python3 test/noise.py
"""

import atexit
import base64
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dissononce.cipher.aesgcm import AESGCMCipher
from dissononce.dh.private import PrivateKey
from dissononce.dh.x25519.keypair import KeyPair
from dissononce.dh.x25519.public import PublicKey
from dissononce.dh.x25519.x25519 import X25519DH
from dissononce.extras.dh.dangerous.dh_nogen import NoGenDH
from dissononce.hash.sha256 import SHA256Hash
from dissononce.processing.handshakepatterns.interactive.XX import \
    XXHandshakePattern
from dissononce.processing.impl.cipherstate import CipherState
from dissononce.processing.impl.handshakestate import HandshakeState
from dissononce.processing.impl.symmetricstate import SymmetricState
from dissononce.processing.modifiers.psk import PSKPatternModifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Home, Proc, check, finish, listen  # noqa: E402

PROLOGUE = b"x25519chat/1"
DATA, CLOSE, REKEY = 0, 1, 2
OVERHEAD = 28                   # nonce and tag, counted in the length
MAXPLAIN = 65536                # type byte and body
MAXBODY = MAXPLAIN - 1
WAIT = 8                        # seconds any one step may take
BUDGET = 75                     # seconds before no new test starts

STARTED = []                    # every Proc we start; killed at exit


@atexit.register
def _kill_started():
    for proc in STARTED:
        proc.kill()


class ProtocolError(Exception):
    """Our peer saw x25519chat break the protocol."""


class Closed(Exception):
    """The connection ended; got counts the bytes of the cut read."""

    def __init__(self, got):
        super().__init__("connection closed after %d bytes of a read" % got)
        self.got = got


# ---------------------------------------------------------------- keys

def nonce(n):
    """The nonce of counter n: 4 zero bytes, then n as 64-bit big-endian."""
    return bytes(4) + struct.pack(">Q", n)


def keypair(private=None):
    """A dissononce X25519 key pair, fresh or from 32 private bytes."""
    return X25519DH().generate_keypair(
        None if private is None else PrivateKey(private))


def dh(private, public):
    """X25519(private, public) computed by pyca, apart from dissononce."""
    return x25519.X25519PrivateKey.from_private_bytes(private).exchange(
        x25519.X25519PublicKey.from_public_bytes(public))


def b64(raw):
    return base64.b64encode(raw).decode()


def session_code(h):
    x = h[:6].hex()
    return "%s-%s-%s" % (x[0:4], x[4:8], x[8:12])


_files = [0]


def secret_file(home, raw):
    """Write raw as a key file (base64 and a newline, mode 0600)."""
    _files[0] += 1
    path = home.path("key%d" % _files[0])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (b64(raw) + "\n").encode())
    os.close(fd)
    return path


# ------------------------------------------------------ A. the peer

def cipher_key(cs):
    """The key of a dissononce CipherState, which has no accessor for it."""
    return cs._key


class Handshake:
    """One side of the x25519chat/1 handshake, run by dissononce.  With
    ephemeral (32 private bytes) the e key is fixed, as in a recorded
    run; dissononce's initialize(e=...) cannot serve for that, as its
    write_message() insists on generating e itself."""

    def __init__(self, initiator, static, psk=None, ephemeral=None,
                 dhfn=None):
        dhfn = dhfn or X25519DH()
        if ephemeral is not None:
            dhfn = NoGenDH(dhfn, PrivateKey(ephemeral))
        self.state = HandshakeState(
            SymmetricState(CipherState(AESGCMCipher()), SHA256Hash()), dhfn)
        pattern = XXHandshakePattern()
        if psk is not None:
            pattern = PSKPatternModifier(3).modify(pattern)
        self.state.initialize(pattern, initiator, PROLOGUE, s=static,
                              psks=None if psk is None else [psk])
        self.initiator = initiator
        self.static = static
        self.keys = None        # (c1 key, c2 key) once done
        self.hash = None        # the handshake hash h once done

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
            self.keys = tuple(cipher_key(c) for c in split)
            self.hash = self.state.symmetricstate.get_handshake_hash()

    def remote_static(self):
        return self.state.rs.data

    def dh_outputs(self):
        """DH(ee), DH(es), DH(se) of the finished handshake, by pyca."""
        st = self.state
        e, s = st.e.private.data, st.s.private.data
        re_, rs = st.re.data, st.rs.data
        if self.initiator:
            return dh(e, re_), dh(e, rs), dh(s, re_)
        return dh(e, re_), dh(s, re_), dh(e, rs)


LOW_ORDER = (bytes(32), b"\x01" + bytes(31))   # u = 0 and u = 1


def fake_pair(public):
    """A "key pair" whose public key is public, whatever the private."""
    return KeyPair(PublicKey(public), PrivateKey(os.urandom(32)))


class LowOrderDH(X25519DH):
    """X25519 for a peer that holds a low-order point as a key.  DH with
    that key gives what a victim skipping the low-order check would get,
    all zeros, so messages built with it are valid for such a victim and
    only the check can stop them.  With fake_e, the ephemeral key "generated"
    is that point."""

    def __init__(self, fake_e=None):
        super().__init__()
        self.fake_e = fake_e

    def generate_keypair(self, privatekey=None):
        if self.fake_e is not None:
            return fake_pair(self.fake_e)
        return super().generate_keypair(privatekey)

    def dh(self, keypair, publickey):
        if keypair.public.data in LOW_ORDER:
            return bytes(32)
        return super().dh(keypair, publickey)


class Direction:
    """One direction of transport: a key and the counter of the next
    packet.  seal() and open() use and advance the counter; forge() seals
    with any counter and leaves it alone."""

    def __init__(self, key):
        self.key = key
        self.n = 0

    def forge(self, plaintext, n):
        sealed = AESGCM(self.key).encrypt(nonce(n), plaintext, b"")
        body, tag = sealed[:-16], sealed[-16:]
        return struct.pack(">I", OVERHEAD + len(body)) + nonce(n) + tag + body

    def seal(self, plaintext):
        pkt = self.forge(plaintext, self.n)
        self.n += 1
        return pkt

    def open(self, pkt):
        """The plaintext of one whole packet, or ProtocolError."""
        length = struct.unpack(">I", pkt[:4])[0]
        if length != len(pkt) - 4 or not OVERHEAD < length <= OVERHEAD + \
                MAXPLAIN:
            raise ProtocolError("packet length %d" % length)
        if pkt[4:16] != nonce(self.n):
            raise ProtocolError("nonce %s where counter %d was due" %
                                (pkt[4:16].hex(), self.n))
        try:
            plain = AESGCM(self.key).decrypt(pkt[4:16], pkt[32:] + pkt[16:32],
                                             b"")
        except InvalidTag:
            raise ProtocolError("bad tag on packet %d" % self.n)
        self.n += 1
        return plain

    def rekey(self):
        """Noise Rekey(); the counter goes on under the new key."""
        self.key = AESGCM(self.key).encrypt(nonce(2**64 - 1), bytes(32),
                                            b"")[:32]


class Link:
    """Our end of one TCP connection to x25519chat: handshake frames, then
    transport packets.  Once keyed, a reader thread opens and collects
    what x25519chat sends."""

    def __init__(self, sock, initiator):
        self.sock = sock
        self.initiator = initiator
        self.tx = self.rx = None
        self.sent = []          # (type, raw packet) we sent, in order
        self.packets = []       # (n, type, body, raw) from x25519chat
        self.data = b""         # its DATA bodies, joined
        self.closed = False     # its CLOSE arrived
        self.after_close = b""  # bytes after that CLOSE (none allowed)
        self.eof = False        # it closed TCP at a packet boundary
        self.error = None       # what the reader found wrong
        self.cond = threading.Condition()
        self.reader = None
        # For streams too large to keep: only count DATA bytes, note any
        # that is not zero, and keep no DATA packet.
        self.count_only = False
        self.count = 0
        self.nonzero = False

    # Plain bytes.

    def recv_exact(self, n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            r = self.sock.recv_into(view[got:], n - got)
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

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drain(self, timeout=WAIT):
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

    # Handshake.

    def send_frame(self, msg, length=None):
        self.send_raw(struct.pack(">I", len(msg) if length is None else
                                  length) + msg)

    def recv_frame(self):
        length = struct.unpack(">I", self.recv_exact(4))[0]
        if length > 65535:
            raise ProtocolError("handshake message of %d bytes" % length)
        return self.recv_exact(length)

    def handshake(self, hs, name=b""):
        """Run all three messages; key the link; return the peer's name."""
        if self.initiator:
            self.send_frame(hs.write())
            theirs = hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
        else:
            hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
            theirs = hs.read(self.recv_frame())
        self.start(hs)
        return theirs

    def start(self, hs):
        """Key both directions from a finished handshake; start reading."""
        c1, c2 = (Direction(k) for k in hs.keys)
        self.tx, self.rx = (c1, c2) if self.initiator else (c2, c1)
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    # Transport.

    def send(self, kind, body=b""):
        """Seal and send one packet; return it."""
        pkt = self.tx.seal(bytes([kind]) + body)
        self.sent.append((kind, pkt))
        self.send_raw(pkt)
        return pkt

    def rekey(self):
        """Send REKEY, then switch our sending key."""
        self.send(REKEY)
        self.tx.rekey()

    def _read_loop(self):
        try:
            while not self.closed:
                try:
                    head = self.recv_exact(4)
                except Closed as c:
                    if c.got:
                        raise ProtocolError("cut inside a length prefix")
                    self.eof = True
                    return
                length = struct.unpack(">I", head)[0]
                if not OVERHEAD < length <= OVERHEAD + MAXPLAIN:
                    raise ProtocolError("packet length %d" % length)
                raw = head + self.recv_exact(length)
                n = self.rx.n
                plain = self.rx.open(raw)
                kind, body = plain[0], plain[1:]
                if kind not in (DATA, CLOSE, REKEY) or (kind != DATA and
                                                         body):
                    raise ProtocolError("packet %d: type %d, %d body bytes"
                                        % (n, kind, len(body)))
                with self.cond:
                    if kind == DATA and self.count_only:
                        self.count += len(body)
                        if body.count(0) != len(body):
                            self.nonzero = True
                    else:
                        self.packets.append((n, kind, body, raw))
                    if kind == DATA and not self.count_only:
                        self.data += body
                    elif kind == REKEY:
                        self.rx.rekey()
                    elif kind == CLOSE:
                        self.closed = True
                    self.cond.notify_all()
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.eof = True
                    return
                self.after_close += chunk
        except (OSError, ProtocolError, Closed) as exc:
            self.error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            with self.cond:
                self.cond.notify_all()

    def wait_packet(self, n, timeout=WAIT):
        """x25519chat's packet number n, or None if it did not come."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for p in self.packets:
                    if p[0] == n:
                        return p
                left = deadline - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    return None
                self.cond.wait(left)

    def wait_reader(self, timeout=WAIT):
        """True once the reader has finished (EOF, CLOSE and EOF, error)."""
        if self.reader is None:
            return True
        self.reader.join(timeout)
        return not self.reader.is_alive()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.reader is not None:
            self.reader.join(2)


# -------------------------------------------- x25519chat facing the peer

def open_server():
    """A listening socket for our peer, on a free loopback port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(WAIT)
    return srv


def stdin_for(data):
    """What Proc takes as stdin: a file holding data, a pipe we hold open
    ("pipe"), or /dev/null (None)."""
    if data is None:
        return subprocess.DEVNULL
    if data == "pipe":
        return subprocess.PIPE
    if hasattr(data, "fileno"):
        return data
    f = tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


class Rig:
    """x25519chat as "listener" or "connector" with its own identity, and
    a TCP connection to it (rig.link) for our peer.  stdin: bytes, an open
    file, "pipe" or None, as stdin_for() takes it."""

    def __init__(self, role, home=None, stdin=b"", name=None, peer=None,
                 psk=None, args=(), server=None):
        self.role = role
        self.own_home = home is None
        self.home = home or Home()
        self.key = keypair()
        argv = ["-i", secret_file(self.home, self.key.private.data)]
        if name is not None:
            argv += ["-n", name]
        if peer is not None:
            argv += ["--peer", b64(peer)]
        if psk is not None:
            argv += ["--psk", secret_file(self.home, psk)]
        argv += list(args)
        self.stdin = stdin_for(stdin)
        self.stdin_data = stdin if isinstance(stdin, bytes) else None
        self.server, self.own_server = server, False
        self.link = None
        self.proc = None
        try:
            sock = self._start(role, argv)
        except Exception:
            self.cleanup()
            raise
        sock.settimeout(WAIT)
        # Our peer plays the other role.
        self.link = Link(sock, initiator=(role == "listener"))

    def _start(self, role, argv):
        """Start x25519chat; return the socket connected to it."""
        if role == "listener":
            self.proc, port = listen(self.home, argv, stdin=self.stdin)
            STARTED.append(self.proc)
            if port is None:
                raise RuntimeError("listener did not start: %r" %
                                   self.proc.err())
            return socket.create_connection(("127.0.0.1", port),
                                            timeout=WAIT)
        if self.server is None:
            self.server, self.own_server = open_server(), True
        self.port = self.server.getsockname()[1]
        self.proc = Proc(["-c", "127.0.0.1:%d" % self.port] + argv,
                         self.home, stdin=self.stdin)
        STARTED.append(self.proc)
        try:
            return self.server.accept()[0]
        except socket.timeout:
            raise RuntimeError("x25519chat did not connect: %r" %
                               self.proc.err())

    def peer_handshake(self, **kw):
        """A Handshake for our side, with a fresh static key."""
        return Handshake(self.role == "listener", kw.pop("static", None) or
                         keypair(), **kw)

    def end(self, timeout=WAIT):
        """x25519chat's exit status, or None if it had to be killed."""
        return self.proc.wait(timeout)

    def out(self):
        return self.proc.out()

    def err(self):
        return self.proc.err()

    def cleanup(self):
        if self.link is not None:
            self.link.close()
        if self.proc is not None:
            self.proc.kill()
        if hasattr(self.stdin, "close"):
            self.stdin.close()
        if self.own_server:
            self.server.close()
        if self.own_home:
            self.home.cleanup()


def error_lines(err):
    return [ln for ln in err.splitlines() if ln.startswith("x25519chat: ")]


PEER_KEY = re.compile(r'^Peer key: (\S+)( \("(.*)"\))?$', re.M)
CODE = re.compile(r"^Session code: (\S+) ", re.M)


def short(data, limit=60):
    """A short description of bytes for failure messages."""
    if len(data) <= limit:
        return repr(data)
    return "%d bytes %r..." % (len(data), data[:limit])


def ended(rig, rc, want_rc, want_out, err_has=None):
    """Why x25519chat's end is not the expected one ("" if it is): exit
    status, one error line on failure (none on success), stdout."""
    errs = error_lines(rig.err())
    why = []
    if rc != want_rc:
        why.append("exit %s, expected %s" % (rc, want_rc))
    if want_rc == 0 and errs:
        why.append("error lines %r" % errs)
    if want_rc != 0 and len(errs) != 1:
        why.append("%d error lines, expected 1: %r" % (len(errs), errs))
    if err_has is not None and not any(err_has in e for e in errs):
        why.append("no error line mentions %r" % err_has)
    out = rig.out()
    if out != want_out:
        why.append("stdout %s, expected %s" % (short(out), short(want_out)))
    if why:
        why.append("stderr %r" % rig.err()[-600:])
    return "; ".join(why)


def test(name):
    """Run one test function; an exception in it is a failed check."""
    def wrap(fn):
        def run(*args):
            if time.monotonic() - T0 > BUDGET:
                check(name, False, "not run: the time budget is spent")
                return
            try:
                fn(*args)
            except Exception as exc:    # a test that crashed has failed
                check(name, False, "%s: %s" % (type(exc).__name__, exc))
        return run
    return wrap


# ---------------------------------------------------------- B. interop

def stream_plan(data):
    """Cut data into DATA bodies: one of the largest size, an empty one,
    a one-byte one, then mixed sizes; REKEY after the 4th and twice after
    the 6th packet.  Return a list of ("data", body) and ("rekey",)."""
    sizes = [MAXBODY, 0, 1, 1000, 30000, 7]
    plan, off = [], 0
    for i, size in enumerate(sizes):
        plan.append(("data", data[off:off + size]))
        off += size
        if i == 3:
            plan.append(("rekey",))
        if i == 5:
            plan += [("rekey",), ("rekey",)]
    while off < len(data):
        plan.append(("data", data[off:off + MAXBODY]))
        off += MAXBODY
    return plan


def play(link, plan):
    for step in plan:
        if step[0] == "rekey":
            link.rekey()
        else:
            link.send(DATA, step[1])


@test("interop")
def interop(role, hello):
    """Our peer against x25519chat in role, data both ways in pipe mode,
    names, REKEYs from our side, CLOSE both ways.  hello: as listener,
    our peer first sends the empty DATA x25519chat's listener sends."""
    where = "interop, x25519chat as %s%s" % (
        role, "" if role == "listener" else
        (", peer sends the empty DATA first" if hello else
         ", peer sends no empty DATA first"))
    chat_name = "chat \u00fcn\u00efc\u00f8de \u2713"
    peer_name = "peer \u540d\u524d \u2615".encode()
    chat_in, peer_out = os.urandom(150000), os.urandom(170001)
    rig = Rig(role, stdin=chat_in, name=chat_name)
    try:
        hs = rig.peer_handshake()
        got_name = rig.link.handshake(hs, peer_name)
        if role == "connector" and hello:
            rig.link.send(DATA)
        play(rig.link, stream_plan(peer_out))
        rig.link.send(CLOSE)
        rig.link.shutdown_write()
        rc = rig.end()
        rig.link.wait_reader()
        link = rig.link

        why = ended(rig, rc, 0, peer_out)
        check(where + ": exit 0, stdout = our data byte for byte",
              not why, why)
        ok = (link.data == chat_in and link.closed and link.eof and
              not link.after_close and link.error is None)
        check(where + ": we got its data byte for byte, its CLOSE, then EOF",
              ok, "got %d of %d bytes (equal: %s), CLOSE %s, EOF %s, "
              "%d bytes after CLOSE, error %s" %
              (len(link.data), len(chat_in), link.data == chat_in,
               link.closed, link.eof, len(link.after_close), link.error))
        if role == "listener":
            first = link.packets[0] if link.packets else None
            check(where + ": its first packet is an empty DATA n=0",
                  first is not None and first[:3] == (0, DATA, b""),
                  "first packet %r" % (first[:3] if first else None,))
        m = PEER_KEY.search(rig.err())
        shown = (m.group(1), m.group(3)) if m else None
        want = (b64(hs.static.public.data), peer_name.decode())
        check(where + ": 'Peer key' shows our static key and our name",
              shown == want, "shown %r, expected %r" % (shown, want))
        check(where + ": we decrypted its name and its static key",
              got_name == chat_name.encode() and
              hs.remote_static() == rig.key.public.data,
              "name %r, key %s (its key %s)" %
              (got_name, b64(hs.remote_static()), b64(rig.key.public.data)))
        m = CODE.search(rig.err())
        code = m.group(1) if m else None
        check(where + ": session code = first 6 bytes of our handshake hash",
              code == session_code(hs.hash),
              "shown %r, ours %r" % (code, session_code(hs.hash)))
    finally:
        rig.cleanup()


def small_session(rig, hs, name=b""):
    """Handshake, a little data both ways (ours around a REKEY), CLOSE;
    return (rc, why) where why is "" when it went through as it should."""
    chat_in = rig.stdin_data
    rig.link.handshake(hs, name)
    peer_out = b"from the peer\n" + os.urandom(2000)
    rig.link.send(DATA, peer_out[:1000])
    rig.link.rekey()
    rig.link.send(DATA, peer_out[1000:])
    rig.link.send(CLOSE)
    rig.link.shutdown_write()
    rc = rig.end()
    rig.link.wait_reader()
    why = ended(rig, rc, 0, peer_out)
    link = rig.link
    if chat_in is not None and link.data != chat_in:
        why += "; we got %s" % short(link.data)
    if not (link.closed and link.eof) or link.error:
        why += "; its CLOSE %s, EOF %s, error %s" % (link.closed, link.eof,
                                                    link.error)
    return rc, why


def chat_rig(role, **kw):
    """A Rig whose stdin holds a little known data."""
    return Rig(role, stdin=b"from x25519chat\n" + os.urandom(1500), **kw)


@test("psk match")
def psk_match(role):
    psk = os.urandom(32)
    rig = chat_rig(role, psk=psk)
    try:
        _, why = small_session(rig, rig.peer_handshake(psk=psk))
        check("psk match, x25519chat as %s: data through both ways, exit 0"
              % role, not why, why)
    finally:
        rig.cleanup()


def refused_without_data(rig, what, want_rc=3, err_has=None):
    """x25519chat must have ended with want_rc and nothing on stdout, and
    our peer must have received no transport packet."""
    rc = rig.end()
    rig.link.wait_reader()
    why = ended(rig, rc, want_rc, b"", err_has)
    if rig.link.packets:
        why += "; it sent us %d transport packets" % len(rig.link.packets)
    check(what, not why, why)


@test("psk mismatch")
def psk_mismatch(role, chat_psk, peer_psk):
    what = "psk mismatch (x25519chat %s, peer %s), x25519chat as %s: " \
        "exit 3, nothing shown" % ("with psk" if chat_psk else "no psk",
                                   "with psk" if peer_psk else "no psk",
                                   role)
    rig = chat_rig(role, psk=chat_psk)
    try:
        hs = rig.peer_handshake(psk=peer_psk)
        link = rig.link
        try:
            link.handshake(hs)
            # We wrote message 3 (x25519chat listens): send some data it
            # must never show.
            link.send(DATA, b"must not be shown")
        except Exception:
            # dissononce refused a message: hang up as a listener would.
            link.shutdown_write()
            link.drain(WAIT)
        refused_without_data(rig, what)
    finally:
        rig.cleanup()


@test("--peer")
def peer_pin(role, right):
    """x25519chat in role pins our key (right) or another (wrong).  As
    connector it must refuse after message 2, before sending message 3;
    as listener, after message 3, before sending any packet."""
    what = "--peer %s key, x25519chat as %s" % (
        "right" if right else "wrong", role)
    ours = keypair()
    pin = ours.public.data if right else keypair().public.data
    rig = chat_rig(role, peer=pin)
    try:
        hs = rig.peer_handshake(static=ours)
        if right:
            _, why = small_session(rig, hs)
            check(what + ": session goes through, exit 0", not why, why)
            return
        if role == "listener":
            rig.link.handshake(hs)
            rig.link.send(DATA, b"must not be shown")
            refused_without_data(rig, what + ": exit 3, no packet sent to "
                                 "us", err_has="--peer")
            return
        link = rig.link
        hs.read(link.recv_frame())
        link.send_frame(hs.write())
        got, eof = link.drain()
        rc = rig.end()
        why = ended(rig, rc, 3, b"", "--peer")
        if got or not eof:
            why += "; after message 2 we got %s (EOF %s)" % (short(got), eof)
        check(what + ": exit 3, and message 3 never sent", not why, why)
    finally:
        rig.cleanup()


@test("known_peers")
def known_peers():
    """First contact records the listener's key; the same key is accepted
    again; another key for the same HOST:PORT is refused before message 3."""
    home, server = Home(), open_server()
    known = home.path("x25519chat", "known_peers")
    first = keypair()
    try:
        port = server.getsockname()[1]
        line = "127.0.0.1:%d %s\n" % (port, b64(first.public.data))

        rig = chat_rig("connector", home=home, server=server)
        try:
            _, why = small_session(rig, rig.peer_handshake(static=first))
            text = open(known).read() if os.path.exists(known) else None
            if text != line:
                why += "; known_peers holds %r, expected %r" % (text, line)
            if "First contact" not in rig.err():
                why += "; no 'First contact' status line"
            check("known_peers: first contact records 127.0.0.1:PORT KEY",
                  not why, why)
        finally:
            rig.cleanup()

        rig = chat_rig("connector", home=home, server=server)
        try:
            _, why = small_session(rig, rig.peer_handshake(static=first))
            text = open(known).read() if os.path.exists(known) else None
            if text != line:
                why += "; known_peers now %r" % text
            check("known_peers: the same key is accepted again, file "
                  "unchanged", not why, why)
        finally:
            rig.cleanup()

        rig = chat_rig("connector", home=home, server=server)
        try:
            hs = rig.peer_handshake()       # another static key
            hs.read(rig.link.recv_frame())
            rig.link.send_frame(hs.write())
            got, eof = rig.link.drain()
            rc = rig.end()
            why = ended(rig, rc, 3, b"", "CHANGED")
            if got or not eof:
                why += "; after message 2 we got %s (EOF %s)" % (short(got),
                                                                 eof)
            text = open(known).read() if os.path.exists(known) else None
            if text != line:
                why += "; known_peers now %r" % text
            check("known_peers: a changed key is refused (exit 3, CHANGED), "
                  "no message 3", not why, why)
        finally:
            rig.cleanup()
    finally:
        server.close()
        home.cleanup()


HOSTILE_NAME = (b"\x1b]0;title\x07\x1b[2J\r\x08evil\xe2\x80\xae"
                b"\x9b31m\xff\x00\xc2\x9b")


@test("names")
def names(role):
    """A name of the largest size (64 bytes) is shown whole; a name full
    of terminal controls is shown without any of them reaching stderr."""
    for what, name in (("64-byte name", "n\u00e9" * 21 + "x"),
                       ("name with terminal controls", HOSTILE_NAME)):
        raw = name.encode() if isinstance(name, str) else name
        rig = chat_rig(role)
        try:
            _, why = small_session(rig, rig.peer_handshake(), raw)
            m = PEER_KEY.search(rig.err())
            shown = m.group(3) if m else None
            if isinstance(name, str):
                if len(raw) != 64 or shown != name:
                    why += "; shown %r for %r (%d bytes)" % (shown, name,
                                                           len(raw))
            else:
                bad = [c for c in rig.err() if (ord(c) < 0x20 and
                       c != "\n") or 0x7f <= ord(c) <= 0x9f or
                       c in "\u202e\ufffd"]
                if bad or shown is None or "evil" not in shown:
                    why += "; stderr holds %r, name shown %r" % (bad, shown)
            check("names, x25519chat as %s: %s" % (role, what), not why,
                  why)
        finally:
            rig.cleanup()


@test("listener hangs up after the handshake")
def listener_refuses():
    rig = chat_rig("connector")
    try:
        rig.link.handshake(rig.peer_handshake())
        rig.link.shutdown_write()
        rc = rig.end()
        why = ended(rig, rc, 3, b"", "refused")
        check("x25519chat as connector, our listener hangs up before any "
              "packet: exit 3, 'refused'", not why, why)
    finally:
        rig.cleanup()


# ---------------------------------------------------------- C. attacks

BEFORE = [b"shown before the fault\n", os.urandom(3000)]
SHOWN = b"".join(BEFORE)
CHAT_IN = os.urandom(3 * MAXBODY + 100)     # several packets from it
SECRET = b"\x00must never be shown " + os.urandom(40)   # 61 bytes


def replay(link):
    link.send_raw(link.sent[0][1])


def reorder(link):
    a = link.tx.seal(SECRET)
    b = link.tx.seal(SECRET)
    link.send_raw(b + a)


def skip(link):
    link.send_raw(link.tx.forge(SECRET, link.tx.n + 1))


def reflect(link):
    """Send back x25519chat's own packet with the counter it expects."""
    p = link.wait_packet(link.tx.n)
    if p is None:
        raise RuntimeError("x25519chat sent no packet %d to reflect" %
                           link.tx.n)
    link.send_raw(p[3])


def flip(offset, bit, pad=0):
    """A packet with one bit flipped at offset, and pad junk bytes after
    it so that a length grown by the flip can still be read."""
    def fault(link):
        pkt = bytearray(link.tx.seal(SECRET[:-1]))     # even length: 88
        pkt[offset] ^= bit
        link.send_raw(bytes(pkt) + os.urandom(pad))
    return fault


def bare_length(value):
    """Only a length prefix; x25519chat must refuse it without reading."""
    return lambda link: link.send_raw(struct.pack(">I", value))


def truncated(link):
    pkt = link.tx.seal(SECRET)
    link.send_raw(pkt[:len(pkt) // 2])
    link.shutdown_write()


def eof_without_close(link):
    link.shutdown_write()


def typed(kind, body):
    return lambda link: link.send(kind, body)


def rekey_not_applied(link):
    link.send(REKEY)
    link.send(DATA, SECRET[1:])     # still under the old key


def rekey_unannounced(link):
    link.tx.rekey()
    link.send(DATA, SECRET[1:])


ATTACKS = [
    # (what, fault, exit status, text in the error line)
    ("replay of our first packet", replay, 3, "nonce"),
    ("reordered packets", reorder, 3, "nonce"),
    ("skipped counter", skip, 3, "nonce"),
    ("reflection of its own packet", reflect, 3, "tag"),
    ("bit flip in the length, +1, packet padded", flip(3, 0x01, 64), 3, None),
    ("bit flip in the length, out of bounds", flip(1, 0x80), 3, "length"),
    ("bit flip in the nonce's zero bytes", flip(4, 0x01), 3, "nonce"),
    ("bit flip in the nonce's counter", flip(15, 0x01), 3, "nonce"),
    ("bit flip in the tag", flip(20, 0x10), 3, "tag"),
    ("bit flip in the type byte", flip(32, 0x01), 3, "tag"),
    ("bit flip in the last ciphertext byte", flip(-1, 0x80), 3, "tag"),
    ("length 0", bare_length(0), 3, "length"),
    ("length 28 (no type byte)", bare_length(28), 3, "length"),
    ("length 65565", bare_length(65565), 3, "length"),
    ("length 0xffffffff", bare_length(0xffffffff), 3, "length"),
    ("truncated packet then EOF", truncated, 4, None),
    ("EOF without CLOSE", eof_without_close, 4, None),
    ("unknown type 0x03", typed(3, b""), 3, "type"),
    ("unknown type 0xff with a body", typed(0xff, b"xyz"), 3, "type"),
    ("CLOSE with a body", typed(CLOSE, b"x"), 3, "type"),
    ("REKEY with a body", typed(REKEY, b"x"), 3, "type"),
    ("REKEY sent but our key not changed", rekey_not_applied, 3, "tag"),
    ("key changed without REKEY", rekey_unannounced, 3, "tag"),
]


@test("transport attack")
def attack(role, what, fault, want_rc, err_has):
    """Handshake, authenticated data, then the fault.  We keep our side
    open (unless the fault closes it), so x25519chat must react to the
    fault itself."""
    rig = Rig(role, stdin=CHAT_IN)
    try:
        rig.link.handshake(rig.peer_handshake())
        for body in BEFORE:
            rig.link.send(DATA, body)
        fault(rig.link)
        rc = rig.end()
        why = ended(rig, rc, want_rc, SHOWN, err_has)
        check("attack, x25519chat as %s: %s -> exit %d, only the data "
              "before it shown" % (role, what, want_rc), not why, why)
    finally:
        rig.cleanup()


@test("data after CLOSE")
def data_after_close(role):
    """After our CLOSE, a valid DATA n+1 must never be shown; x25519chat
    (pipe mode, stdin still open) keeps sending until its stdin ends, then
    sends its CLOSE and exits 0."""
    what = "attack, x25519chat as %s: valid DATA after our CLOSE" % role
    rig = Rig(role, stdin="pipe")
    try:
        rig.link.handshake(rig.peer_handshake())
        for body in BEFORE:
            rig.link.send(DATA, body)
        rig.link.send(CLOSE)
        rig.link.send(DATA, b"after CLOSE: must never be shown\n")
        time.sleep(0.3)
        alive = rig.proc.alive()
        reply = b"its reply after our CLOSE\n"
        rig.proc.p.stdin.write(reply)
        rig.proc.p.stdin.close()
        rc = rig.end()
        rig.link.wait_reader()
        why = ended(rig, rc, 0, SHOWN)
        if not alive:
            why += "; it ended before its own stdin did"
        if not rig.link.data.endswith(reply) or not rig.link.closed:
            why += "; we got %s, its CLOSE %s (%s)" % (
                short(rig.link.data), rig.link.closed, rig.link.error)
        check(what + ": not shown; its reply and CLOSE still come; exit 0",
              not why, why)
    finally:
        rig.cleanup()


@test("connection reset")
def reset_after_data(role):
    """A TCP reset after some data is a cut like EOF: exit 4, the data
    before it shown.  We reset only once that data is on its stdout."""
    rig = Rig(role, stdin=CHAT_IN)
    try:
        rig.link.handshake(rig.peer_handshake())
        for body in BEFORE:
            rig.link.send(DATA, body)
        deadline = time.monotonic() + WAIT
        while rig.out() != SHOWN and time.monotonic() < deadline:
            time.sleep(0.01)
        sock = rig.link.sock
        sock.shutdown(socket.SHUT_RD)       # wake our reader first
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()
        rc = rig.end()
        why = ended(rig, rc, 4, SHOWN)
        check("attack, x25519chat as %s: TCP reset after data -> exit 4, "
              "data shown" % role, not why, why)
    finally:
        rig.cleanup()


@test("its own REKEY")
def own_rekey(role):
    """x25519chat rekeys its sending direction after 2^30 bytes: it sends
    REKEY and goes on under Rekey(k), which our peer must follow.  Its
    stdin is a sparse file of zeros, a little over 2^30 bytes."""
    size = 2**30 + 5 * MAXBODY
    zeros = tempfile.TemporaryFile()
    zeros.truncate(size)
    rig = Rig(role, stdin=zeros)
    try:
        rig.link.count_only = True
        rig.link.handshake(rig.peer_handshake())
        rig.link.send(CLOSE)
        rig.link.shutdown_write()
        done = rig.link.wait_reader(30)
        rc = rig.end()
        link = rig.link
        rekeys = [p[0] for p in link.packets if p[1] == REKEY]
        why = ended(rig, rc, 0, b"")
        if not done or link.error or not link.closed:
            why += "; reader done %s, error %s, CLOSE %s" % (
                done, link.error, link.closed)
        if link.count != size or link.nonzero:
            why += "; got %d of %d bytes, non-zero bytes %s" % (
                link.count, size, link.nonzero)
        if len(rekeys) != 1:
            why += "; REKEY packets at n=%s" % rekeys
        check("x25519chat as %s rekeys after 2^30 bytes: one REKEY, all "
              "data decrypts under the new key, exit 0" % role, not why, why)
    finally:
        rig.cleanup()
        zeros.close()


# Handshake attacks: each takes the link before any message and returns
# a description of what x25519chat sent afterwards that it must not have.

def after_hs_msg(link, expect_silence):
    got, eof = link.drain()
    if expect_silence and (got or not eof):
        return "after our message we got %s (EOF %s)" % (short(got), eof)
    return ""


def msg2_with_e(e_pub):
    """x25519chat connects; message 2 carries e_pub as our ephemeral key
    and is otherwise valid for a victim that accepts DH(ee) = 0."""
    def script(link):
        hs = Handshake(False, keypair(), dhfn=LowOrderDH(fake_e=e_pub))
        hs.read(link.recv_frame())
        link.send_frame(hs.write())
        return after_hs_msg(link, True)
    return script


def msg1_with_e(e_pub):
    def script(link):
        link.send_frame(e_pub)
        return after_hs_msg(link, True)
    return script


def bare_hs_length(value):
    """Only a length prefix for the next handshake message; we keep the
    connection open, so x25519chat must refuse it without reading."""
    def script(link):
        if not link.initiator:
            link.recv_frame()
        link.send_raw(struct.pack(">I", value))
        return after_hs_msg(link, True)
    return script


def msg1_with_payload(link):
    link.send_frame(keypair().public.data + b"x")
    return after_hs_msg(link, True)


def long_name_msg2(link):
    hs = Handshake(False, keypair())
    hs.read(link.recv_frame())
    link.send_frame(hs.write(b"n" * 65))
    return after_hs_msg(link, True)


def long_name_msg3(link):
    hs = Handshake(True, keypair())
    link.send_frame(hs.write())
    hs.read(link.recv_frame())
    link.send_frame(hs.write(b"n" * 65))
    return after_hs_msg(link, True)


def tampered_static_msg2(link):
    hs = Handshake(False, keypair())
    hs.read(link.recv_frame())
    msg = bytearray(hs.write())
    msg[40] ^= 0x01         # inside the encrypted static key
    link.send_frame(bytes(msg))
    return after_hs_msg(link, True)


def low_order_static_msg2(link):
    hs = Handshake(False, fake_pair(bytes(32)), dhfn=LowOrderDH())
    hs.read(link.recv_frame())
    link.send_frame(hs.write())
    return after_hs_msg(link, True)


def low_order_static_msg3(link):
    hs = Handshake(True, fake_pair(bytes(32)), dhfn=LowOrderDH())
    link.send_frame(hs.write())
    hs.read(link.recv_frame())
    link.send_frame(hs.write())
    return after_hs_msg(link, True)



HS_ATTACKS = [
    # (x25519chat's role, what, script)
    ("connector", "message 2 with an all-zero ephemeral key",
     msg2_with_e(bytes(32))),
    ("connector", "message 2 with the low-order ephemeral key u=1",
     msg2_with_e(LOW_ORDER[1])),
    ("listener", "message 1 with an all-zero ephemeral key",
     msg1_with_e(bytes(32))),
    ("listener", "message 1 with the low-order ephemeral key u=1",
     msg1_with_e(LOW_ORDER[1])),
    ("listener", "handshake length prefix 0xffffffff",
     bare_hs_length(0xffffffff)),
    ("listener", "handshake length prefix 70000", bare_hs_length(70000)),
    ("connector", "handshake length prefix 0xffffffff",
     bare_hs_length(0xffffffff)),
    ("connector", "handshake length prefix 70000", bare_hs_length(70000)),
    ("listener", "empty message 1", msg1_with_e(b"")),
    ("listener", "message 1 with a payload byte", msg1_with_payload),
    ("connector", "message 2 with a 65-byte name", long_name_msg2),
    ("listener", "message 3 with a 65-byte name", long_name_msg3),
    ("connector", "message 2 with a bit flipped in the static key",
     tampered_static_msg2),
    ("connector", "message 2 with an all-zero static key",
     low_order_static_msg2),
    ("listener", "message 3 with an all-zero static key",
     low_order_static_msg3),
]


@test("handshake attack")
def hs_attack(role, what, script):
    rig = Rig(role, stdin=CHAT_IN)
    try:
        extra = script(rig.link)
        rc = rig.end()
        why = ended(rig, rc, 3, b"")
        if extra:
            why += "; " + extra
        check("handshake attack, x25519chat as %s: %s -> exit 3, nothing "
              "more sent" % (role, what), not why, why)
    finally:
        rig.cleanup()


# ------------------------------------------------------------ D. traces

TRACE_VALUE = re.compile(r"^\[trace\]   (.+?) = ([0-9a-f]*)$")
TRACE_PACKET = re.compile(r"^\[trace\] (send|recv) n=(\d+) type=(\S+) "
                          r"length=(\d+) nonce=([0-9a-f]+) tag=([0-9a-f]+)$")
TYPES = {"DATA": DATA, "CLOSE": CLOSE, "REKEY": REKEY}


class Trace:
    """The [trace] lines of one stderr: steps (name, value or None for a
    heading) in order, and the packet lines."""

    def __init__(self, err):
        self.lines = [ln for ln in err.splitlines()
                      if ln.startswith("[trace]")]
        self.steps, self.packets = [], []
        for ln in self.lines:
            m = TRACE_PACKET.match(ln)
            if m:
                self.packets.append(dict(
                    dir=m.group(1), n=int(m.group(2)), type=m.group(3),
                    length=int(m.group(4)), nonce=bytes.fromhex(m.group(5)),
                    tag=bytes.fromhex(m.group(6))))
                continue
            m = TRACE_VALUE.match(ln)
            if m:
                self.steps.append((m.group(1), bytes.fromhex(m.group(2))))
            else:
                self.steps.append((ln[len("[trace] "):], None))

    def headings(self):
        return [name for name, value in self.steps if value is None]

    def values(self, name, before=None):
        """Every value called name, up to the heading before if given."""
        out = []
        for step, value in self.steps:
            if before is not None and step == before and value is None:
                break
            if step == name and value is not None:
                out.append(value)
        return out

    def value(self, name):
        vals = self.values(name)
        return vals[0] if vals else None


def run_pair(args_l, args_c, data_l, data_c, home_l, home_c):
    """Two x25519chat processes talking; return (listener, connector)
    Procs after both ended (rc in .rc), or raise if one did not start."""
    lst, port = listen(home_l, args_l, stdin=stdin_for(data_l))
    STARTED.append(lst)
    if port is None:
        raise RuntimeError("listener did not start: %r" % lst.err())
    con = Proc(["-c", "127.0.0.1:%d" % port] + args_c, home_c,
               stdin=stdin_for(data_c))
    STARTED.append(con)
    con.wait(WAIT)
    lst.wait(WAIT)
    return lst, con


def packet_plaintexts(packets, stream):
    """The plaintext of each sent packet, rebuilt from the sender's stdin
    (stream) and the traced lengths: a DATA packet carries the next bytes
    of the stream, control packets only their type byte."""
    out, off = [], 0
    for p in packets:
        body_len = p["length"] - OVERHEAD - 1
        body = stream[off:off + body_len] if p["type"] == "DATA" else b""
        off += len(body)
        out.append(bytes([TYPES.get(p["type"], 255)]) + body)
    return out


def check_packets(label, sender, receiver, key, stream):
    """The traced packets one side sent: nonces encode n, n counts from 0,
    lengths fit, the other side traced the same packets, and each tag is
    the one AES-GCM gives for the rebuilt plaintext."""
    sent = [p for p in sender.packets if p["dir"] == "send"]
    recv = [p for p in receiver.packets if p["dir"] == "recv"]
    why = []
    for i, p in enumerate(sent):
        if p["n"] != i:
            why.append("packet %d traced as n=%d" % (i, p["n"]))
        if p["nonce"] != nonce(p["n"]):
            why.append("n=%d nonce %s" % (p["n"], p["nonce"].hex()))
        if not OVERHEAD < p["length"] <= OVERHEAD + MAXPLAIN:
            why.append("n=%d length %d" % (p["n"], p["length"]))
    check(label + ": every sent nonce is 4 zero bytes || n, n = 0, 1, 2...",
          sent and not why, "; ".join(why[:5]) or "no packets traced")
    check(label + ": the receiver traced the same packets",
          sent == [dict(p, dir="send") for p in recv],
          "%d sent, %d received; first difference %r" % (
              len(sent), len(recv),
              next(((a, b) for a, b in zip(sent, recv)
                    if a != dict(b, dir="send")), None)))
    bad = []
    k = key
    for p, plain in zip(sent, packet_plaintexts(sent, stream)):
        tag = AESGCM(k).encrypt(nonce(p["n"]), plain, b"")[-16:]
        if tag != p["tag"]:
            bad.append(p["n"])
        if p["type"] == "REKEY":
            k = AESGCM(k).encrypt(nonce(2**64 - 1), bytes(32), b"")[:32]
    check(label + ": every traced tag is AES-GCM's tag of the packet under "
          "the traced key", sent and not bad, "wrong tags at n=%s" % bad[:10])


@test("trace truthfulness")
def trace_truth(psk):
    label = "trace (-vv, %s)" % ("XXpsk3" if psk else "XX")
    home_l, home_c = Home(), Home()
    try:
        key_l, key_c = keypair(), keypair()
        data_l, data_c = os.urandom(100000), os.urandom(70000)
        args_l = ["-vv", "-n", "lis", "-i",
                  secret_file(home_l, key_l.private.data)]
        args_c = ["-vv", "-n", "con", "-i",
                  secret_file(home_c, key_c.private.data)]
        if psk:
            args_l += ["--psk", secret_file(home_l, psk)]
            args_c += ["--psk", secret_file(home_c, psk)]
        lst, con = run_pair(args_l, args_c, data_l, data_c, home_l, home_c)
        check(label + ": both exit 0, data crossed byte for byte",
              lst.rc == 0 and con.rc == 0 and lst.out() == data_c and
              con.out() == data_l,
              "exit %s/%s, stdout equal %s/%s; %r" % (
                  lst.rc, con.rc, lst.out() == data_c, con.out() == data_l,
                  (lst.err() + con.err())[-400:]))
        tl, tc = Trace(lst.err()), Trace(con.err())
        for who, t in (("listener", tl), ("connector", tc)):
            first = t.lines[0] if t.lines else ""
            check(label + ": %s's trace starts with a secret-key warning" %
                  who, "WARNING" in first and "secret" in first,
                  "first trace line %r" % first)
            want = ["-> e", "<- e, ee, s, es",
                    "-> s, se, psk" if psk else "-> s, se", "Split()"]
            heads = [h for h in t.headings() if h in want]
            check(label + ": %s's trace has the steps in order" % who,
                  heads == want, "headings %r" % t.headings())

        e_l, e_c = tl.value("e.private"), tc.value("e.private")
        if e_l is None or e_c is None:
            raise RuntimeError("no e.private traced")
        i = Handshake(True, key_c, psk=psk, ephemeral=e_c)
        r = Handshake(False, key_l, psk=psk, ephemeral=e_l)
        msgs = [i.write()]
        r.read(msgs[0])
        msgs.append(r.write(b"lis"))
        i.read(msgs[1])
        msgs.append(i.write(b"con"))
        r.read(msgs[2])
        if i.hash != r.hash or i.keys != r.keys:
            raise RuntimeError("dissononce disagrees with itself")
        h, (c1, c2) = i.hash, i.keys

        epub_l, epub_c = keypair(e_l).public.data, keypair(e_c).public.data
        s_c = key_c.private.data
        p_l, p_c = key_l.public.data, key_c.public.data
        dhs = {"DH(ee)": dh(e_c, epub_l), "DH(es)": dh(e_c, p_l),
               "DH(se)": dh(s_c, epub_l)}
        for who, t, epub, spub, re_, rs in (
                ("listener", tl, epub_l, p_l, epub_c, p_c),
                ("connector", tc, epub_c, p_c, epub_l, p_l)):
            got = {n: t.value(n) for n in ("e.public", "s.public", "re",
                                           "rs", *dhs)}
            want = dict(dhs, **{"e.public": epub, "s.public": spub,
                                "re": re_, "rs": rs})
            wrong = [n for n in want if got[n] != want[n]]
            check(label + ": %s's traced e.public, s.public, re, rs and DH "
                  "outputs are right" % who, not wrong, "wrong: %s" % wrong)
            hs_ = t.values("h", before="Split()")
            check(label + ": %s's last traced h before Split() is the "
                  "handshake hash" % who, hs_ and hs_[-1] == h,
                  "traced %s, recomputed %s" %
                  (hs_[-1].hex() if hs_ else None, h.hex()))
            mine = [0, 2] if t is tc else [1]
            got = (t.values("message sent"), t.values("message received"))
            want = ([msgs[j] for j in mine],
                    [msgs[j] for j in range(3) if j not in mine])
            check(label + ": %s's traced handshake messages are the ones "
                  "dissononce writes" % who, got == want,
                  "traced %d sent, %d received; equal %s/%s" % (
                      len(got[0]), len(got[1]), got[0] == want[0],
                      got[1] == want[1]))
            keys = (t.value("c1 key (connector to listener)"),
                    t.value("c2 key (listener to connector)"))
            check(label + ": %s's traced c1 and c2 keys are Split()'s" % who,
                  keys == (c1, c2), "traced %r" % (keys,))
        for who, proc in (("listener", lst), ("connector", con)):
            m = CODE.search(proc.err())
            check(label + ": %s's session code comes from the handshake hash"
                  % who, m is not None and m.group(1) == session_code(h),
                  "shown %r, recomputed %r" % (m and m.group(1),
                                               session_code(h)))
        check_packets(label + ", connector to listener", tc, tl, c1, data_c)
        check_packets(label + ", listener to connector", tl, tc, c2, data_l)
    finally:
        home_l.cleanup()
        home_c.cleanup()


TYPE_NAMES = {v: k for k, v in TYPES.items()}


def wire(n, kind, pkt):
    """What a trace line should say of packet pkt (counter n, type kind)."""
    return dict(n=n, type=TYPE_NAMES.get(kind, "unknown"),
                length=len(pkt) - 4, nonce=pkt[4:16], tag=pkt[16:32])


def check_wire_trace(role, trace, link):
    """x25519chat's packet trace lines describe the packets on the wire:
    the ones we sent (our REKEY included) and the ones we received."""
    ours = [wire(n, kind, pkt) for n, (kind, pkt) in enumerate(link.sent)]
    theirs = [wire(n, kind, raw) for n, kind, _, raw in link.packets]
    traced = {"send": [], "recv": []}
    for p in trace.packets:
        traced[p["dir"]].append({k: v for k, v in p.items() if k != "dir"})
    check("-vv against our peer, x25519chat as %s: its recv and send trace "
          "lines match the packets on the wire" % role,
          ours and theirs and traced["recv"] == ours and
          traced["send"] == theirs,
          "recv lines %d (we sent %d, equal %s), send lines %d (we got %d, "
          "equal %s)" % (len(traced["recv"]), len(ours),
                         traced["recv"] == ours, len(traced["send"]),
                         len(theirs), traced["send"] == theirs))


def secrets_found(text, secrets):
    """Names of the secrets whose hex (either case) or base64 is in text."""
    return [name for name, raw in secrets.items()
            if raw.hex() in text or raw.hex().upper() in text or
            b64(raw) in text or b64(raw).rstrip("=") in text]


@test("no secrets without -vv")
def no_secrets_pair():
    home_l, home_c = Home(), Home()
    try:
        key_l, key_c = keypair(), keypair()
        psk = os.urandom(32)
        args_l = ["-v", "--psk", secret_file(home_l, psk), "-i",
                  secret_file(home_l, key_l.private.data)]
        args_c = ["--psk", secret_file(home_c, psk), "-i",
                  secret_file(home_c, key_c.private.data)]
        lst, con = run_pair(args_l, args_c, b"a", b"b", home_l, home_c)
        secrets = {"listener private key": key_l.private.data,
                   "connector private key": key_c.private.data, "psk": psk}
        err = lst.err() + con.err()
        found = secrets_found(err, secrets)
        check("no -vv (x25519chat pair, -v and default): no private key or "
              "psk in stderr, no [trace] line",
              lst.rc == 0 and con.rc == 0 and not found and
              "[trace]" not in err,
              "exit %s/%s, found %s, trace lines %s" % (
                  lst.rc, con.rc, found, "[trace]" in err))
    finally:
        home_l.cleanup()
        home_c.cleanup()


@test("no secrets without -vv, against our peer")
def no_secrets_peer(role, verbosity):
    """Our peer knows the transport keys and DH outputs: they must not
    appear in x25519chat's stderr below -vv, and must appear with it (so
    that the search itself is shown to work)."""
    psk = os.urandom(32)
    rig = chat_rig(role, psk=psk, args=verbosity)
    try:
        hs = rig.peer_handshake(psk=psk)
        _, why = small_session(rig, hs)
        ee, es, se = hs.dh_outputs()
        secrets = {"its private key": rig.key.private.data, "psk": psk,
                   "c1 key": hs.keys[0], "c2 key": hs.keys[1],
                   "DH(ee)": ee, "DH(es)": es, "DH(se)": se}
        found = secrets_found(rig.err(), secrets)
        flags = " ".join(verbosity) or "default verbosity"
        if "-vv" in verbosity:
            # The trace shows s.public, not s: all but the private key.
            want = set(secrets) - {"its private key"}
            check("-vv against our peer, x25519chat as %s: the same search "
                  "finds our transport keys, DH outputs and the psk" % role,
                  not why and set(found) == want,
                  why or "found %s" % found)
            check_wire_trace(role, Trace(rig.err()), rig.link)
        else:
            check("no -vv (%s) against our peer, x25519chat as %s: no key, "
                  "DH output or psk in stderr" % (flags, role),
                  not why and not found and "[trace]" not in rig.err(),
                  why or "found %s" % found)
    finally:
        rig.cleanup()


# ---------------------------------------------------------------- main

T0 = time.monotonic()


def main():
    for role in ("listener", "connector"):
        interop(role, True)
    interop("connector", False)
    for role in ("listener", "connector"):
        psk_match(role)
        a, b = os.urandom(32), os.urandom(32)
        psk_mismatch(role, a, b)
        psk_mismatch(role, a, None)
    for role in ("listener", "connector"):
        psk_mismatch(role, None, os.urandom(32))
    for role in ("listener", "connector"):
        names(role)
    for right in (True, False):
        peer_pin("connector", right)
        peer_pin("listener", right)
    known_peers()
    listener_refuses()

    for role in ("listener", "connector"):
        for what, fault, rc, err_has in ATTACKS:
            attack(role, what, fault, rc, err_has)
        data_after_close(role)
        reset_after_data(role)
    own_rekey("listener")
    for role, what, script in HS_ATTACKS:
        hs_attack(role, what, script)

    trace_truth(None)
    trace_truth(os.urandom(32))
    no_secrets_pair()
    for role in ("listener", "connector"):
        for verbosity in ([], ["-v"], ["-vv"]):
            no_secrets_peer(role, verbosity)
    finish()


if __name__ == "__main__":
    main()
