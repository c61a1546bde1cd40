#!/usr/bin/python3
"""Interop and attack tests of x25519chat's default protocol, x25519chat/2,
against a peer built on an independent Noise implementation (dissononce)
and pyca/cryptography.

The protocol, as x25519chat(1) describes it under PROTOCOL:

  The hello, two frames "u32 length || body": the connector's offer
  (version 2 | suites: bit 0 AESGCM, bit 1 ChaChaPoly | mode: 0 XX,
  1 XXpsk3), then the listener's choice (1 AESGCM, 2 ChaChaPoly) or its
  refusal (0 | reason).
  The handshake: the three messages of Noise_XX_25519_{AESGCM|ChaChaPoly}
  _SHA256 (XXpsk3 in mode 1) as frames, with the prologue "x25519chat/2"
  || frame 1's body || frame 2's body.
  Transport packets "u32 length || nonce[12] || tag[16] || ciphertext",
  the nonce 4 zero bytes || a 64-bit counter, big-endian for AESGCM and
  little-endian for ChaChaPoly; the plaintext one type byte (DATA, CLOSE,
  REKEY, ACK, ERROR, PING) and a body.  Each side sends CLOSE when its
  input ends and acknowledges the other's CLOSE with ACK.

Our peer runs the handshake through dissononce (AESGCMCipher or
ChaChaPolyCipher) and does its own hello, framing and transport AEAD (pyca
AESGCM and ChaCha20Poly1305 with explicit counters), so that it can also
misbehave at any step.

  A. Handshake, Direction, Link: the peer.   Rig: x25519chat facing it.
  B. Interop in both roles and both suites: data both ways, names, REKEY,
     the clean end, --psk, --peer, known_peers; the session code,
     recomputed from our own h2 with hashlib; -q.
  C. The hello: the offers x25519chat makes, the choices it makes, every
     refusal, and malformed frames both ways.
  D. Downgrade: a relay between two x25519chat processes edits the hello.
  E. Transport attacks: exit status, one "x25519chat: " line, only the
     authenticated data before the fault on stdout, and never an ERROR in
     answer to a packet that does not authenticate.
  F. Order and shape: every rule of the packet order and of packet bodies
     broken, each answered with an authenticated ERROR and exit 3.  The
     end: a cut before both CLOSEs are acknowledged is exit 4; what may
     still follow a CLOSE; the ACK comes once the data is written out.
  G. ERROR: the peer's, reported safely (exit 5, or 1 for "busy" as the
     listener's first packet); x25519chat's own when its stdout fails.
  H. In the background, as they mostly wait: a PING after 15 s of
     silence; --keepalive ends a session whose peer is silent, and our
     PINGs keep one alive; the 5 s linger after an ERROR or a clean end.
  I. The last ACK survives a PING at the very end, 100 times per role,
     and x25519chat reads on to our end of TCP (no reset).
  J. Handshake attacks; truth of the -vv trace, recomputed with dissononce
     in both suites; no secret on stderr without -vv.

Run from the top directory: /usr/bin/python3 test/noise.py
"""

import atexit
import base64
import hashlib
import itertools
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
from cryptography.hazmat.primitives.ciphers.aead import (AESGCM,
                                                         ChaCha20Poly1305)

from dissononce.cipher.aesgcm import AESGCMCipher
from dissononce.cipher.chachapoly import ChaChaPolyCipher
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

PROLOGUE = b"x25519chat/2"
VERSION = 2
AES, CHACHA = 1, 2                  # frame 2's choice byte
SUITES = (AES, CHACHA)
SUITE_NAME = {AES: "AESGCM", CHACHA: "ChaChaPoly"}
SUITE_OPT = {AES: "aesgcm", CHACHA: "chachapoly"}     # --cipher
OFFER = {AES: 0x01, CHACHA: 0x02}   # bits of frame 1's suites byte
MODE_XX, MODE_PSK = 0, 1
REFUSE_VERSION, REFUSE_CIPHER, REFUSE_NEEDPSK, REFUSE_NOPSK, REFUSE_BUSY, \
    REFUSE_MODE = 1, 2, 3, 4, 5, 6
HELLOMAX = 255                      # longest hello frame body

DATA, CLOSE, REKEY, ACK, ERROR, PING = 0, 1, 2, 3, 4, 5
TYPE_NAMES = {DATA: "DATA", CLOSE: "CLOSE", REKEY: "REKEY", ACK: "ACK",
              ERROR: "ERROR", PING: "PING"}
TYPES = {v: k for k, v in TYPE_NAMES.items()}
ERRORMAX = 200                      # longest ERROR reason
OVERHEAD = 28                       # nonce and tag, counted in the length
MAXPLAIN = 65536                    # type byte and body
MAXBODY = MAXPLAIN - 1
WAIT = 10                           # seconds any one step may take
BUDGET = 150                        # seconds before no new test starts

STARTED = []                        # every Proc we start; killed at exit


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


class Refused(Exception):
    """Frame 2 was not a choice: a refusal (0 | reason) or junk."""

    def __init__(self, f2):
        super().__init__("frame 2 is %s" % f2.hex())
        self.f2 = f2


# ---------------------------------------------------------------- keys

def nonce(n, suite=AES):
    """The nonce of counter n: 4 zero bytes, then n as a 64-bit number,
    big-endian for AESGCM, little-endian for ChaChaPoly."""
    return bytes(4) + struct.pack(">Q" if suite == AES else "<Q", n)


def aead(suite, key):
    """pyca's AEAD of suite, apart from dissononce."""
    return AESGCM(key) if suite == AES else ChaCha20Poly1305(key)


def rekeyed(suite, key):
    """Noise Rekey(k): the first 32 bytes of ENCRYPT(k, 2^64-1, "", 0^32).
    (dissononce's CipherState.rekey() keeps all 48 bytes and resets the
    counter, so it cannot serve.)"""
    return aead(suite, key).encrypt(nonce(2**64 - 1, suite), bytes(32),
                                    b"")[:32]


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


def session_code(h2):
    """The session code of a handshake whose hash after message 2 is h2:
    t = SHA-512("x25519chat/2 code" || h2), then 65536 times
    t = SHA-512(t || h2); the first 8 bytes of t in hex, 4 by 4."""
    t = hashlib.sha512(b"x25519chat/2 code" + h2).digest()
    for _ in range(65536):
        t = hashlib.sha512(t + h2).digest()
    x = t[:8].hex()
    return "-".join(x[i:i + 4] for i in range(0, 16, 4))


def protocol_name(suite, psk):
    return "Noise_%s_25519_%s_SHA256" % ("XXpsk3" if psk else "XX",
                                         SUITE_NAME[suite])


_files = itertools.count(1)


def secret_file(home, raw):
    """Write raw as a key file (base64 and a newline, mode 0600)."""
    path = home.path("key%d" % next(_files))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (b64(raw) + "\n").encode())
    os.close(fd)
    return path


# ------------------------------------------------------ A. the peer

def cipher_key(cs):
    """The key of a dissononce CipherState, which has no accessor for it."""
    return cs._key


def offer_frame(suites, psk):
    """Frame 1's body: version 2, the suite bits, the mode."""
    return bytes([VERSION, suites, MODE_XX if psk is None else MODE_PSK])


class Handshake:
    """One side of the x25519chat/2 handshake, the Noise part run by
    dissononce.

    suite: the suite this side wants (AES or CHACHA): as connector it
    offers only that one, as listener it chooses only that one; None
    offers both, or chooses as x25519chat does (AESGCM when offered).
    f1, f2: frame bodies to send in place of the right ones.  The
    dissononce state starts once the hello is known (start()); write()
    or read() before that assume the hello x25519chat would have had
    (both suites offered, the wanted one chosen).  With ephemeral (32
    private bytes) the e key is fixed, as in a recorded run; dissononce's
    initialize(e=...) cannot serve for that, as its write_message()
    insists on generating e itself."""

    def __init__(self, initiator, static, psk=None, ephemeral=None,
                 dhfn=None, suite=None, f1=None, f2=None):
        self.initiator = initiator
        self.static = static
        self.psk = psk
        self.ephemeral = ephemeral
        self.dhfn = dhfn
        self.suite = suite
        self.f1, self.f2 = f1, f2
        self.state = None
        self.chosen = None      # the suite in use once started
        self.prologue = None
        self.messages = 0       # handshake messages written or read
        self.keys = None        # (c1 key, c2 key) once done
        self.hash = None        # the handshake hash h once done
        self.h2 = None          # h right after message 2

    def offer(self):
        """Frame 1's body, as the connector."""
        if self.f1 is not None:
            return self.f1
        bits = (OFFER[AES] | OFFER[CHACHA]) if self.suite is None else \
            OFFER[self.suite]
        return offer_frame(bits, self.psk)

    def answer(self, f1):
        """Frame 2's body for frame 1's body f1, as a listener holding our
        PSK (or none) answers it, checking in the order of x25519chat(1):
        version, mode, length, PSK, ciphers.  None: no answer at all."""
        if self.f2 is not None:
            return self.f2
        if not f1:
            return None
        if f1[0] != VERSION:
            return bytes([0, REFUSE_VERSION])
        if len(f1) < 3:
            return None
        if f1[2] not in (MODE_XX, MODE_PSK):
            return bytes([0, REFUSE_MODE])
        if len(f1) != 3:
            return None
        if f1[2] == MODE_XX and self.psk is not None:
            return bytes([0, REFUSE_NEEDPSK])
        if f1[2] == MODE_PSK and self.psk is None:
            return bytes([0, REFUSE_NOPSK])
        bits = f1[1] & (OFFER[AES] | OFFER[CHACHA])
        if self.suite is not None:
            bits &= OFFER[self.suite]
        if not bits:
            return bytes([0, REFUSE_CIPHER])
        return bytes([AES if bits & OFFER[AES] else CHACHA])

    def start(self, f1, f2):
        """Start the Noise handshake after the hello f1, f2 (a choice)."""
        suite = f2[0]
        cipher = AESGCMCipher() if suite == AES else ChaChaPolyCipher()
        dhfn = self.dhfn or X25519DH()
        if self.ephemeral is not None:
            dhfn = NoGenDH(dhfn, PrivateKey(self.ephemeral))
        self.state = HandshakeState(
            SymmetricState(CipherState(cipher), SHA256Hash()), dhfn)
        pattern = XXHandshakePattern()
        if self.psk is not None:
            pattern = PSKPatternModifier(3).modify(pattern)
        self.prologue = PROLOGUE + f1 + f2
        self.state.initialize(pattern, self.initiator, self.prologue,
                              s=self.static,
                              psks=None if self.psk is None else [self.psk])
        self.chosen = suite

    def _ready(self):
        if self.state is None:
            self.start(self.offer(), bytes([self.suite or AES]))

    def write(self, payload=b""):
        self._ready()
        buf = bytearray()
        self._done(self.state.write_message(payload, buf))
        return bytes(buf)

    def read(self, message):
        self._ready()
        buf = bytearray()
        self._done(self.state.read_message(message, buf))
        return bytes(buf)

    def _done(self, split):
        self.messages += 1
        if self.messages == 2:
            self.h2 = self.state.symmetricstate.get_handshake_hash()
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
    """One direction of transport in suite (AES or CHACHA): a key and the
    counter of the next packet.  seal() and open() use and advance the
    counter; forge() seals with any counter and leaves it alone."""

    def __init__(self, key, suite=AES):
        self.key = key
        self.suite = suite
        self.n = 0

    def forge(self, plaintext, n, nonce_bytes=None):
        """A packet of plaintext sealed with counter n; nonce_bytes, if
        given, is the nonce both written and used, whatever n says."""
        nb = nonce(n, self.suite) if nonce_bytes is None else nonce_bytes
        sealed = aead(self.suite, self.key).encrypt(nb, plaintext, b"")
        body, tag = sealed[:-16], sealed[-16:]
        return struct.pack(">I", OVERHEAD + len(body)) + nb + tag + body

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
        if pkt[4:16] != nonce(self.n, self.suite):
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
        self.key = rekeyed(self.suite, self.key)


def order_fault(initiator, st, kind, body):
    """Why x25519chat may not send a packet of kind with body now, given
    what its peer (we, the initiator or not) has seen and sent (st, a
    Link); None if it may."""
    if kind not in TYPE_NAMES:
        return "unknown type %d" % kind
    if kind in (CLOSE, REKEY, ACK, PING) and body:
        return "%s with a %d-byte body" % (TYPE_NAMES[kind], len(body))
    if kind == ERROR and not 1 <= len(body) <= ERRORMAX:
        return "ERROR with a %d-byte reason" % len(body)
    if st.failed is not None:
        return "%s after its ERROR" % TYPE_NAMES[kind]
    if initiator and not st.got_any and kind != ERROR and \
            (kind != DATA or body):
        return "its first packet (as listener) is %s with %d bytes, not " \
            "an empty DATA" % (TYPE_NAMES[kind], len(body))
    if kind == DATA and st.closed:
        return "DATA after its CLOSE"
    if kind == CLOSE and st.closed:
        return "a second CLOSE"
    if kind == ACK and not st.sent_close:
        return "ACK before our CLOSE"
    if kind == ACK and st.acked:
        return "a second ACK"
    return None


class Link:
    """Our end of one TCP connection to x25519chat: the hello and the
    handshake frames, then transport packets.  Once keyed, a reader
    thread opens what x25519chat sends, checks its order, and (auto_ack)
    acknowledges its CLOSE as x25519chat/2 asks; after its ERROR
    (hangup_on_error) it shuts our sending half, as a peer that gives up
    would.  Everything we send goes through send() (or under self.lock),
    so that the reader's ACK never cuts into a packet of ours."""

    def __init__(self, sock, initiator):
        self.sock = sock
        self.initiator = initiator
        self.tx = self.rx = None
        self.lock = threading.RLock()   # sealing and sending, as one
        self.f1 = self.f2 = None        # the hello's bodies
        self.suite = None               # the suite chosen
        self.hs_end = None              # when the last message went/came
        self.hs_sent = None             # when our last message went
        self.sent = []          # (type, raw packet) we sent, in order
        self.sent_close = self.sent_ack = False
        self.packets = []       # (n, type, body, raw) from x25519chat
        self.times = []         # when each of those arrived (monotonic)
        self.data = b""         # its DATA bodies, joined
        self.got_any = False    # a packet arrived
        self.closed = False     # its CLOSE arrived
        self.acked = False      # its ACK of our CLOSE arrived
        self.failed = None      # the reason in its ERROR
        self.eof = False        # it closed TCP at a packet boundary
        self.reset = False      # the connection was reset
        self.error = None       # what the reader found wrong
        self.auto_ack = True
        self.hangup_on_error = True
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
        """Read until EOF; return (bytes read, whether EOF came in time).
        Only before the reader runs."""
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

    # The hello and the handshake.

    def send_frame(self, msg, length=None):
        self.send_raw(struct.pack(">I", len(msg) if length is None else
                                  length) + msg)

    def recv_frame(self, limit=65535):
        length = struct.unpack(">I", self.recv_exact(4))[0]
        if length > limit:
            raise ProtocolError("frame of %d bytes" % length)
        return self.recv_exact(length)

    def hello(self, hs):
        """Run the hello for hs (our offer, or our answer to x25519chat's)
        and start hs's Noise state; Refused when frame 2 is no choice."""
        if self.initiator:
            f1 = hs.offer()
            self.send_frame(f1)
            f2 = self.recv_frame(HELLOMAX)
        else:
            f1 = self.recv_frame(HELLOMAX)
            f2 = hs.answer(f1)
            if f2 is None:
                raise ProtocolError("frame 1 %s: no answer" % f1.hex())
            self.send_frame(f2)
        self.f1, self.f2 = f1, f2
        if len(f2) != 1 or f2[0] not in SUITES:
            raise Refused(f2)
        if self.initiator and len(f1) > 1 and not f1[1] & OFFER[f2[0]]:
            raise ProtocolError("the listener chose %s, which we did not "
                                "offer" % SUITE_NAME[f2[0]])
        hs.start(f1, f2)
        self.suite = f2[0]

    def handshake(self, hs, name=b"", first=True):
        """The hello and all three messages; key the link; return the
        peer's name.  As listener (first) we then send the empty DATA
        that tells the connector it was accepted."""
        self.hello(hs)
        if self.initiator:
            self.send_frame(hs.write())
            theirs = hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
            self.hs_sent = time.monotonic()
        else:
            hs.read(self.recv_frame())
            self.send_frame(hs.write(name))
            self.hs_sent = time.monotonic()
            theirs = hs.read(self.recv_frame())
        self.hs_end = time.monotonic()
        self.start(hs, first and not self.initiator)
        return theirs

    def start(self, hs, first=False):
        """Key both directions from a finished handshake; send the
        listener's empty DATA if first (before the reader can send an
        ACK); start reading."""
        c1, c2 = (Direction(k, hs.chosen) for k in hs.keys)
        self.tx, self.rx = (c1, c2) if self.initiator else (c2, c1)
        if first:
            self.send(DATA)
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    # Transport.

    def send(self, kind, body=b""):
        """Seal and send one packet; return it."""
        with self.lock:
            pkt = self.tx.seal(bytes([kind]) + body)
            if kind == CLOSE:
                self.sent_close = True
            self.sent.append((kind, pkt))
            self.send_raw(pkt)
            if kind == ACK:
                self.sent_ack = True
        with self.cond:
            self.cond.notify_all()
        return pkt

    def rekey(self):
        """Send REKEY, then switch our sending key."""
        with self.lock:
            self.send(REKEY)
            self.tx.rekey()

    def _read_loop(self):
        try:
            while True:
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
                with self.cond:
                    why = order_fault(self.initiator, self, kind, body)
                    if kind == DATA and self.count_only and not why:
                        self.count += len(body)
                        if body.count(0) != len(body):
                            self.nonzero = True
                    else:
                        self.packets.append((n, kind, body, raw))
                        self.times.append(time.monotonic())
                    if why:
                        raise ProtocolError("packet %d: %s" % (n, why))
                    self.got_any = True
                    if kind == DATA and not self.count_only:
                        self.data += body
                    elif kind == REKEY:
                        self.rx.rekey()
                    elif kind == CLOSE:
                        self.closed = True
                    elif kind == ACK:
                        self.acked = True
                    elif kind == ERROR:
                        self.failed = body
                    self.cond.notify_all()
                if kind == CLOSE and self.auto_ack:
                    self.send(ACK)
                if kind == ERROR and self.hangup_on_error:
                    self.shutdown_write()
        except ConnectionResetError:
            self.reset = True
        except (OSError, ProtocolError, Closed) as exc:
            self.error = "%s: %s" % (type(exc).__name__, exc)
        finally:
            with self.cond:
                self.cond.notify_all()

    def wait_for(self, pred, timeout=WAIT):
        """Wait until pred() holds (checked under the reader's lock), the
        reader has ended, or timeout; return pred()."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or self.reader is None or \
                        not self.reader.is_alive():
                    return pred()
                self.cond.wait(min(left, 0.5))
            return True

    def wait_packet(self, n, timeout=WAIT):
        """x25519chat's packet number n, or None if it did not come."""
        found = []

        def has():
            found[:] = [p for p in self.packets if p[0] == n]
            return bool(found)
        return found[0] if self.wait_for(has, timeout) else None

    def wait_type(self, kind, timeout=WAIT):
        """Index in packets of x25519chat's first packet of kind, or None."""
        found = []

        def has():
            found[:] = [i for i, p in enumerate(self.packets)
                        if p[1] == kind]
            return bool(found)
        return found[0] if self.wait_for(has, timeout) else None

    def wait_reader(self, timeout=WAIT):
        """True once the reader has finished (EOF, reset, error)."""
        if self.reader is None:
            return True
        self.reader.join(timeout)
        return not self.reader.is_alive()

    def finish(self, timeout=WAIT):
        """The clean end, from our side: our CLOSE (unless sent), then
        wait for its CLOSE (which the reader acknowledges) and its ACK of
        ours, shut our sending half, and wait for its end of TCP.  Return
        "" if it all came, else what did not."""
        if not self.sent_close:
            self.send(CLOSE)
        self.wait_for(lambda: self.closed and self.sent_ack and self.acked,
                      timeout)
        self.shutdown_write()
        self.wait_reader(timeout)
        return self.unclean()

    def unclean(self):
        """"" if both directions ended cleanly as we saw them, else why."""
        why = []
        for ok, what in ((self.closed, "no CLOSE from it"),
                         (self.sent_ack, "we sent no ACK"),
                         (self.sent_close, "we sent no CLOSE"),
                         (self.acked, "no ACK from it"),
                         (self.eof, "no end of TCP after its last packet"),
                         (self.error is None, "reader: %s" % self.error),
                         (self.failed is None, "its ERROR %r" % self.failed)):
            if not ok:
                why.append(what)
        return "; ".join(why)

    def reset_after_end(self, timeout=1.0):
        """After our reader met its end of TCP and x25519chat exited: did
        a reset follow?  One does when it closed with bytes of ours still
        unread, which is what its reading on after the end must prevent."""
        # Once its FIN is in, recv() says EOF whatever follows; a reset
        # shows in SO_ERROR (EPIPE or ECONNRESET).
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) != b""
        except ConnectionResetError:
            return True
        except OSError:
            return False

    def types(self):
        return [TYPE_NAMES.get(p[1], p[1]) for p in self.packets]

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
    if isinstance(data, str) and data == "pipe":
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
    file, "pipe" or None, as stdin_for() takes it.  timeout: how long one
    read of our peer may wait."""

    def __init__(self, role, home=None, stdin=b"", name=None, peer=None,
                 psk=None, args=(), server=None, timeout=WAIT, cmd=None):
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
        # A listener tells of a connection that fails before its session
        # (a stray) in one line, with -v, and listens on: see end().
        if role == "listener" and "-q" not in argv and "-v" not in argv \
                and "-vv" not in argv:
            argv.append("-v")
        self.stdin = stdin_for(stdin)
        self.stdin_data = stdin if isinstance(stdin, bytes) else None
        self.server, self.own_server = server, False
        self.cmd = cmd          # connector only: Proc's command prefix
        self.link = None
        self.proc = None
        try:
            sock = self._start(role, argv)
        except Exception:
            self.cleanup()
            raise
        sock.settimeout(timeout)
        # Our peer plays the other role.
        self.link = Link(sock, initiator=(role == "listener"))

    def _start(self, role, argv):
        """Start x25519chat; return the socket connected to it."""
        if role == "listener" and "-q" in argv:
            return self._start_quiet(argv)
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
                         self.home, stdin=self.stdin, cmd=self.cmd)
        STARTED.append(self.proc)
        try:
            return self.server.accept()[0]
        except socket.timeout:
            raise RuntimeError("x25519chat did not connect: %r" %
                               self.proc.err())

    def _start_quiet(self, argv):
        """A -q listener does not say where it listens: give it a port
        that was free a moment ago, and connect once it listens."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.proc = Proc(["-l", "127.0.0.1:%d" % port] + argv, self.home,
                         stdin=self.stdin)
        STARTED.append(self.proc)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                return socket.create_connection(("127.0.0.1", port),
                                                timeout=WAIT)
            except ConnectionRefusedError:
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise RuntimeError("-q listener on port %d did not "
                                       "start: %r" % (port, self.proc.err()))
                time.sleep(0.01)

    def peer_handshake(self, **kw):
        """A Handshake for our side, with a fresh static key."""
        return Handshake(self.role == "listener", kw.pop("static", None) or
                         keypair(), **kw)

    def close_stdin(self):
        """End x25519chat's stdin when it is a pipe we hold."""
        if self.proc.p.stdin is not None and not self.proc.p.stdin.closed:
            self.proc.p.stdin.close()

    def end(self, timeout=WAIT):
        """x25519chat's exit status, or None if it had to be killed; for a
        listener whose connection from us failed before its session, STRAY
        once it has said so in a line naming our address, if it is then
        still listening."""
        if self.role != "listener" or self.link is None:
            return self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.proc.alive() and time.monotonic() < deadline:
            if self.stray_lines():
                # A listener about to exit must be seen doing so.
                return self.proc.wait(0.3) if self.proc.wait(0.3) \
                    is not None else STRAY
            time.sleep(0.01)
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def stray_lines(self):
        """The lines of a listener's stderr that tell of our connection
        failing before its session."""
        try:
            me = "127.0.0.1:%d" % self.link.sock.getsockname()[1]
        except OSError:
            return []
        return [ln for ln in self.err().splitlines() if me in ln and
                not ln.startswith(("Client ", "Session with "))]

    def out(self):
        return self.proc.out()

    def err(self):
        return self.proc.err()

    def cleanup(self):
        if self.link is not None:
            self.link.close()
        if self.proc is not None:
            self.proc.kill()
            if self.proc.p.stdin is not None:
                self.proc.p.stdin.close()
            if self.proc in STARTED:
                STARTED.remove(self.proc)
            self.proc.outf.close()
            self.proc.errf.close()
        if hasattr(self.stdin, "close"):
            self.stdin.close()
        if self.own_server:
            self.server.close()
        if self.own_home:
            self.home.cleanup()


STRAY = "a stray"


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
    status, one error line on failure (none on success), stdout.  A
    listener whose handshake with us failed (want_rc 1 or 3) must instead
    be a stray: one line about it, and listening on."""
    if rig.role == "listener" and want_rc in (1, 3) and rc != want_rc:
        return ended_stray(rig, rc, want_out, err_has)
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


def ended_stray(rig, rc, want_out, err_has):
    """As ended(), for a listener whose connection from us failed before
    its session."""
    why = []
    lines = rig.stray_lines()
    if rc != STRAY:
        why.append("exit %s, expected a stray: one line, and listening on"
                   % rc)
    if len(lines) != 1:
        why.append("%d lines about our connection, expected 1: %r" % (
            len(lines), lines))
    elif err_has is not None and err_has not in lines[0]:
        why.append("its line does not mention %r" % err_has)
    if rig.out() != want_out:
        why.append("stdout %s, expected %s" % (short(rig.out()),
                                                short(want_out)))
    if why:
        why.append("stderr %r" % rig.err()[-600:])
    return "; ".join(why)


def join(*whys):
    return "; ".join(w for w in whys if w)


def _describe(arg):
    if callable(arg):
        return getattr(arg, "__name__", "a function")
    if isinstance(arg, bytes):
        return arg.hex()[:16] or "empty"
    return str(arg)[:40]


def test(name):
    """Run one test function; an exception in it is a failed check."""
    def wrap(fn):
        def run(*args):
            label = name + "".join(" [%s]" % _describe(a) for a in args)
            if time.monotonic() - T0 > BUDGET:
                check(label, False, "not run: the time budget is spent")
                return
            try:
                fn(*args)
            except Exception as exc:    # a test that crashed has failed
                check(label, False, "%s: %s" % (type(exc).__name__, exc))
        return run
    return wrap


# ---------------------------------------------------------- B. interop

def stream_plan(data):
    """Cut data into DATA bodies: one of the largest size, an empty one,
    a one-byte one, then mixed sizes, and 300 of one byte (so that the
    counter needs a second byte); REKEY after the 4th and twice after the
    6th packet.  Return a list of ("data", body) and ("rekey",)."""
    sizes = [MAXBODY, 0, 1, 1000, 30000, 7] + [1] * 300
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


CHAT_NAME = "chat \u00fcn\u00efc\u00f8de \u2713"
PEER_NAME = "peer \u540d\u524d \u2615".encode()


@test("interop")
def interop(role, suite, with_psk):
    """Our peer against x25519chat in role and suite, data both ways in
    pipe mode, names, REKEYs from our side, the clean end both ways."""
    where = "interop, x25519chat as %s, %s%s" % (
        role, SUITE_NAME[suite], ", --psk" if with_psk else "")
    psk = os.urandom(32) if with_psk else None
    chat_in, peer_out = os.urandom(150000), os.urandom(170001)
    rig = Rig(role, stdin=chat_in, name=CHAT_NAME, psk=psk)
    try:
        hs = rig.peer_handshake(psk=psk, suite=suite)
        got_name = rig.link.handshake(hs, PEER_NAME)
        play(rig.link, stream_plan(peer_out))
        rig.link.send(CLOSE)
        rig.link.wait_for(lambda: rig.link.acked)
        out_at_ack = rig.out()
        unclean = rig.link.finish()
        rc = rig.end()
        link = rig.link

        why = ended(rig, rc, 0, peer_out)
        check(where + ": exit 0, stdout = our data byte for byte, across "
              "our REKEYs", not why, why)
        check(where + ": when its ACK of our CLOSE came, its stdout already "
              "held all our data", link.acked and out_at_ack == peer_out,
              "ACK %s, stdout then %d of %d bytes" % (
                  link.acked, len(out_at_ack), len(peer_out)))
        check(where + ": we got its data byte for byte, its CLOSE, its ACK "
              "of our CLOSE, then its end of TCP; we ACKed its CLOSE",
              link.data == chat_in and not unclean,
              "got %d of %d bytes (equal: %s); %s; packets %s" % (
                  len(link.data), len(chat_in), link.data == chat_in,
                  unclean, link.types()[-6:]))
        want = protocol_name(suite, psk)
        check(where + ": the hello chose %s, and the handshake that "
              "worked is %s" % (SUITE_NAME[suite], want),
              link.suite == suite and hs.state.protocol_name == want,
              "chosen %s, dissononce ran %s" % (
                  link.suite, hs.state.protocol_name))
        if role == "listener":
            first = link.packets[0] if link.packets else None
            check(where + ": its first packet is an empty DATA n=0",
                  first is not None and first[:3] == (0, DATA, b""),
                  "first packet %r" % (first[:3] if first else None,))
        m = PEER_KEY.search(rig.err())
        shown = (m.group(1), m.group(3)) if m else None
        want = (b64(hs.static.public.data), PEER_NAME.decode())
        check(where + ": 'Peer key' shows our static key and our name",
              shown == want, "shown %r, expected %r" % (shown, want))
        check(where + ": we decrypted its name and its static key",
              got_name == CHAT_NAME.encode() and
              hs.remote_static() == rig.key.public.data,
              "name %r, key %s (its key %s)" %
              (got_name, b64(hs.remote_static()), b64(rig.key.public.data)))
        m = CODE.search(rig.err())
        code = m.group(1) if m else None
        mine = session_code(hs.h2)
        check(where + ": its session code is the one we compute from our "
              "own h2 (hashlib)", code == mine and hs.h2 != hs.hash,
              "shown %r, ours %r" % (code, mine))
    finally:
        rig.cleanup()


def small_session(rig, hs, name=b""):
    """Handshake, a little data both ways (ours around a REKEY), the clean
    end; return (rc, why) where why is "" when it went as it should."""
    chat_in = rig.stdin_data
    rig.link.handshake(hs, name)
    peer_out = b"from the peer\n" + os.urandom(2000)
    rig.link.send(DATA, peer_out[:1000])
    rig.link.rekey()
    rig.link.send(DATA, peer_out[1000:])
    unclean = rig.link.finish()
    rc = rig.end()
    why = ended(rig, rc, 0, peer_out)
    link = rig.link
    if chat_in is not None and link.data != chat_in:
        why += "; we got %s" % short(link.data)
    if unclean:
        why += "; " + unclean
    return rc, why


def chat_rig(role, **kw):
    """A Rig whose stdin holds a little known data."""
    return Rig(role, stdin=b"from x25519chat\n" + os.urandom(1500), **kw)


@test("psk match")
def psk_match(role, suite):
    psk = os.urandom(32)
    rig = chat_rig(role, psk=psk)
    try:
        _, why = small_session(rig, rig.peer_handshake(psk=psk, suite=suite))
        check("psk match, x25519chat as %s, %s: data through both ways, "
              "exit 0" % (role, SUITE_NAME[suite]), not why, why)
    finally:
        rig.cleanup()


def refused_without_data(rig, what, want_rc=3, err_has=None,
                         unknown=False):
    """x25519chat must have ended with want_rc and nothing on stdout, and
    our peer must have received no transport packet; unknown: as a
    connector, it must not have recorded our key in known_peers."""
    rc = rig.end()
    rig.link.wait_reader()
    why = ended(rig, rc, want_rc, b"", err_has)
    if rig.link.packets:
        why += "; it sent us %d transport packets" % len(rig.link.packets)
    known = rig.home.path("x25519chat", "known_peers")
    if unknown and os.path.exists(known):
        why += "; known_peers holds %r" % open(known).read()
    check(what + (", our key not recorded" if unknown else ""), not why, why)


@test("psk mismatch")
def psk_mismatch(role, suite):
    """Both sides hold a PSK, not the same one: message 3 cannot be
    right.  (One side without a PSK is refused in the hello: see C.)"""
    what = "psk mismatch, x25519chat as %s, %s: exit 3, nothing shown, " \
        "no packet" % (role, SUITE_NAME[suite])
    rig = chat_rig(role, psk=os.urandom(32))
    try:
        hs = rig.peer_handshake(psk=os.urandom(32), suite=suite)
        link = rig.link
        try:
            link.handshake(hs)
            # We wrote message 3 (x25519chat listens): send some data it
            # must never show.
            link.send(DATA, b"must not be shown")
        except Exception:
            # dissononce refused message 3: hang up as a listener would.
            link.shutdown_write()
            link.drain(WAIT)
        refused_without_data(rig, what, err_has="psk" if role == "listener"
                             else "refused",
                             unknown=role == "connector")
    finally:
        rig.cleanup()


@test("--peer")
def peer_pin(role, right, suite):
    """x25519chat in role pins our key (right) or another (wrong).  As
    connector it must refuse after message 2, before sending message 3;
    as listener, after message 3, before sending any packet."""
    what = "--peer %s key, x25519chat as %s, %s" % (
        "right" if right else "wrong", role, SUITE_NAME[suite])
    ours = keypair()
    pin = ours.public.data if right else keypair().public.data
    rig = chat_rig(role, peer=pin)
    try:
        hs = rig.peer_handshake(static=ours, suite=suite)
        if right:
            _, why = small_session(rig, hs)
            check(what + ": session goes through, exit 0", not why, why)
            return
        if role == "listener":
            rig.link.handshake(hs, first=False)
            rig.link.send(DATA, b"must not be shown")
            refused_without_data(rig, what + ": exit 3, no packet sent to "
                                 "us", err_has="--peer")
            return
        link = rig.link
        link.hello(hs)
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
    again; another key for the same HOST:PORT is refused before message 3;
    a listener that refuses us in the hello is not recorded."""
    home, server = Home(), open_server()
    known = home.path("x25519chat", "known_peers")
    first = keypair()

    def text():
        return open(known).read() if os.path.exists(known) else None
    try:
        port = server.getsockname()[1]
        line = "127.0.0.1:%d %s\n" % (port, b64(first.public.data))

        rig = chat_rig("connector", home=home, server=server)
        try:
            f1 = rig.link.recv_frame(HELLOMAX)
            rig.link.send_frame(bytes([0, REFUSE_CIPHER]))
            rc = rig.end()
            why = ended(rig, rc, 3, b"", "cipher")
            if text() is not None:
                why += "; known_peers holds %r" % text()
            check("known_peers: a listener that refuses the hello (offer "
                  "%s) is not recorded" % f1.hex(), not why, why)
        finally:
            rig.cleanup()

        rig = chat_rig("connector", home=home, server=server)
        try:
            _, why = small_session(rig, rig.peer_handshake(static=first))
            if text() != line:
                why += "; known_peers holds %r, expected %r" % (text(), line)
            if "First contact" not in rig.err():
                why += "; no 'First contact' status line"
            check("known_peers: first contact records 127.0.0.1:PORT KEY",
                  not why, why)
        finally:
            rig.cleanup()

        rig = chat_rig("connector", home=home, server=server)
        try:
            _, why = small_session(rig, rig.peer_handshake(static=first,
                                                           suite=CHACHA))
            if text() != line:
                why += "; known_peers now %r" % text()
            check("known_peers: the same key is accepted again "
                  "(ChaChaPoly this time), file unchanged", not why, why)
        finally:
            rig.cleanup()

        rig = chat_rig("connector", home=home, server=server)
        try:
            hs = rig.peer_handshake()       # another static key
            rig.link.hello(hs)
            hs.read(rig.link.recv_frame())
            rig.link.send_frame(hs.write())
            got, eof = rig.link.drain()
            rc = rig.end()
            why = ended(rig, rc, 3, b"", "CHANGED")
            if got or not eof:
                why += "; after message 2 we got %s (EOF %s)" % (short(got),
                                                                 eof)
            if text() != line:
                why += "; known_peers now %r" % text()
            check("known_peers: a changed key is refused (exit 3, CHANGED), "
                  "no message 3", not why, why)
        finally:
            rig.cleanup()
    finally:
        server.close()
        home.cleanup()


HOSTILE_NAME = (b"\x1b]0;title\x07\x1b[2J\r\x08evil\xe2\x80\xae"
                b"\x9b31m\xff\x00\xc2\x9b")


def unsafe_chars(text):
    """Characters of text that could act on a terminal."""
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or
            0x7f <= ord(c) <= 0x9f or c in "\u202a\u202b\u202c\u202d"
            "\u202e\u2066\u2067\u2068\u2069\ufffd"]


FORGED_CODE_NAME = (b"forged\nSession code: 0000-0000-0000-0000  Compare "
                    b"this code")


@test("names")
def names(role, suite):
    """A name of the largest size (64 bytes) is shown whole; a name full
    of terminal controls is shown without any of them reaching stderr."""
    for what, name in (("64-byte name", "n\u00e9" * 21 + "x"),
                       ("name with terminal controls", HOSTILE_NAME),
                       ("name with a newline and a forged 'Session code' "
                        "line", FORGED_CODE_NAME)):
        raw = name.encode() if isinstance(name, str) else name
        rig = chat_rig(role)
        try:
            hs = rig.peer_handshake(suite=suite)
            _, why = small_session(rig, hs, raw)
            m = PEER_KEY.search(rig.err())
            shown = m.group(3) if m else None
            if name == FORGED_CODE_NAME:
                codes = [ln for ln in rig.err().splitlines()
                         if ln.startswith("Session code:")]
                if len(codes) != 1 or CODE.search(codes[0]).group(1) != \
                        session_code(hs.h2) or shown is None or \
                        "forged" not in shown:
                    why += "; 'Session code' lines %r, name shown %r" % (
                        codes, shown)
            elif isinstance(name, str):
                if len(raw) != 64 or shown != name:
                    why += "; shown %r for %r (%d bytes)" % (shown, name,
                                                           len(raw))
            else:
                bad = unsafe_chars(rig.err())
                if bad or shown is None or "evil" not in shown:
                    why += "; stderr holds %r, name shown %r" % (bad, shown)
            check("names, x25519chat as %s, %s: %s" % (
                role, SUITE_NAME[suite], what), not why, why)
        finally:
            rig.cleanup()


@test("listener hangs up after the handshake")
def listener_refuses(suite):
    rig = chat_rig("connector")
    try:
        rig.link.handshake(rig.peer_handshake(suite=suite), first=False)
        rig.link.shutdown_write()
        rc = rig.end()
        why = ended(rig, rc, 3, b"", "refused")
        check("x25519chat as connector, %s, our listener hangs up before "
              "any packet: exit 3, 'refused'" % SUITE_NAME[suite],
              not why, why)
    finally:
        rig.cleanup()


@test("-q")
def quiet(role, suite):
    """-q: no status at all, so no session code (nor its cost)."""
    rig = chat_rig(role, args=["-q"])
    try:
        _, why = small_session(rig, rig.peer_handshake(suite=suite))
        err = rig.err()
        if err != "":
            why += "; stderr %r" % err[:300]
        check("-q, x25519chat as %s, %s: clean session, stderr empty (no "
              "session code)" % (role, SUITE_NAME[suite]), not why, why)
    finally:
        rig.cleanup()


# ------------------------------------------------------------ C. hello

# Words a connector must use for each refusal reason (x25519chat(1): the
# table of reasons; 7 to 9 are kept for short codes).
REFUSAL_WORDS = {1: "version", 2: "cipher", 3: "requires a pre-shared key",
                 4: "no pre-shared key", 5: "the listener is busy",
                 6: "mode", 7: "short code", 8: "short code",
                 9: "short code"}


@test("a refusal reaches the connector")
def refusal_words(reason):
    """Our listener refuses x25519chat's offer with reason: it must say so
    in words, exit 3 (1 when busy), and send nothing more."""
    want_rc = 1 if reason == REFUSE_BUSY else 3
    rig = Rig("connector", stdin="pipe")
    try:
        f1 = rig.link.recv_frame(HELLOMAX)
        rig.link.send_frame(bytes([0, reason]))
        got, eof = rig.link.drain()
        rc = rig.end()
        why = ended(rig, rc, want_rc, b"", REFUSAL_WORDS[reason])
        if not any("refused" in e for e in error_lines(rig.err())):
            why += "; the error line does not say 'refused'"
        if got or not eof:
            why += "; after frame 2 it sent %s (EOF %s)" % (short(got), eof)
        check("hello: our listener refuses with 0|%d (offer %s) -> "
              "x25519chat says %r, exit %d, sends nothing more" % (
                  reason, f1.hex(), REFUSAL_WORDS[reason], want_rc),
              not why, why)
    finally:
        rig.cleanup()


@test("the listener refuses")
def listener_refusal(what, args, psk, f1, want_f2):
    """We offer f1 to x25519chat listening with args (and --psk if psk):
    it must answer exactly want_f2 (a refusal) and exit 3."""
    rig = Rig("listener", stdin="pipe", args=args,
              psk=os.urandom(32) if psk else None)
    try:
        rig.link.send_frame(f1)
        f2 = rig.link.recv_frame(HELLOMAX)
        got, eof = rig.link.drain()
        rc = rig.end()
        why = ended(rig, rc, 3, b"", "refused")
        if f2 != want_f2:
            why += "; frame 2 is %s, expected %s" % (f2.hex(), want_f2.hex())
        if got or not eof:
            why += "; then it sent %s (EOF %s)" % (short(got), eof)
        check("hello: x25519chat listener%s%s, offer %s (%s) -> refusal %s, "
              "exit 3" % (" " + " ".join(args) if args else "",
                          " --psk" if psk else "", f1.hex(), what,
                          want_f2.hex()), not why, why)
    finally:
        rig.cleanup()


LISTENER_REFUSALS = [
    # (what, listener args, listener has a psk, frame 1, frame 2)
    ("version 3", [], False, bytes([3, 3, 0]), bytes([0, 1])),
    ("version 1", [], False, bytes([1, 3, 0]), bytes([0, 1])),
    ("version 3, one byte", [], False, bytes([3]), bytes([0, 1])),
    ("version 3, 40 bytes", [], False, bytes([3]) + bytes(39),
     bytes([0, 1])),
    ("version before mode", [], False, bytes([3, 3, 7]), bytes([0, 1])),
    ("mode 2 (short codes, not spoken yet)", [], False, bytes([2, 3, 2]),
     bytes([0, 6])),
    ("mode 7", [], False, bytes([2, 3, 7]), bytes([0, 6])),
    ("mode 255", [], False, bytes([2, 3, 255]), bytes([0, 6])),
    ("mode before length", [], False, bytes([2, 3, 2]) + bytes(16),
     bytes([0, 6])),
    ("mode before PSK", [], True, bytes([2, 3, 5]), bytes([0, 6])),
    ("mode 0 to a listener with --psk", [], True, bytes([2, 3, 0]),
     bytes([0, 3])),
    ("mode 1 to a listener without --psk", [], False, bytes([2, 3, 1]),
     bytes([0, 4])),
    ("PSK before ciphers", [], True, bytes([2, 0, 0]), bytes([0, 3])),
    ("no suite", [], False, bytes([2, 0, 0]), bytes([0, 2])),
    ("only unknown suite bits", [], False, bytes([2, 0xfc, 0]),
     bytes([0, 2])),
    ("only AESGCM", ["--cipher", "chachapoly"], False, bytes([2, 1, 0]),
     bytes([0, 2])),
    ("only ChaChaPoly", ["--cipher", "aesgcm"], False, bytes([2, 2, 0]),
     bytes([0, 2])),
    ("only ChaChaPoly, mode 1", ["--cipher", "aesgcm"], True,
     bytes([2, 2, 1]), bytes([0, 2])),
]


@test("a malformed frame 1")
def bad_frame1(what, raw, hold):
    """raw in place of frame 1: x25519chat listening must answer nothing
    and exit 3.  hold: keep our side open (it must not wait for more)."""
    rig = Rig("listener", stdin="pipe")
    try:
        rig.link.send_raw(raw)
        if not hold:
            rig.link.shutdown_write()
        got, eof = rig.link.drain()
        rc = rig.end()
        why = ended(rig, rc, 3, b"")
        if got or not eof:
            why += "; it answered %s (EOF %s)" % (short(got), eof)
        check("hello: frame 1 %s -> x25519chat listener answers nothing, "
              "exit 3" % what, not why, why)
    finally:
        rig.cleanup()


def frame(body, length=None):
    return struct.pack(">I", len(body) if length is None else length) + body


BAD_FRAME1 = [
    ("empty", frame(b""), True),
    ("02 (1 byte)", frame(b"\x02"), True),
    ("0203 (2 bytes)", frame(b"\x02\x03"), True),
    ("02030000 (4 bytes)", frame(b"\x02\x03\x00\x00"), True),
    ("02030100 (4 bytes, mode 1)", frame(b"\x02\x03\x01\x00"), True),
    ("020300 and 252 more bytes (255 in all)",
     frame(b"\x02\x03\x00" + bytes(252)), True),
    ("of 256 bytes (longer than any frame)",
     frame(b"\x02\x03\x00" + bytes(253)), True),
    ("length 256, nothing after it", struct.pack(">I", 256), True),
    ("length 0xffffffff, nothing after it", struct.pack(">I", 0xffffffff),
     True),
    ("cut after 2 of its 3 bytes", struct.pack(">I", 3) + b"\x02\x03",
     False),
    ("cut inside its length", b"\x00\x00", False),
]


@test("a malformed frame 2")
def bad_frame2(what, raw, hold, args):
    """raw in place of frame 2: x25519chat connecting (with args) must
    exit 3 without sending anything after frame 1."""
    rig = Rig("connector", stdin="pipe", args=args)
    try:
        f1 = rig.link.recv_frame(HELLOMAX)
        rig.link.send_raw(raw)
        if not hold:
            rig.link.shutdown_write()
        got, eof = rig.link.drain()
        rc = rig.end()
        why = ended(rig, rc, 3, b"")
        if got or not eof:
            why += "; then it sent %s (EOF %s)" % (short(got), eof)
        check("hello: frame 2 %s to x25519chat connector%s (offer %s) -> "
              "exit 3, nothing more sent" % (
                  what, " " + " ".join(args) if args else "", f1.hex()),
              not why, why)
    finally:
        rig.cleanup()


BAD_FRAME2 = [
    ("empty", frame(b""), True, []),
    ("0101 (a choice of 2 bytes)", frame(b"\x01\x01"), True, []),
    ("0200 (a choice of 2 bytes)", frame(b"\x02\x00"), True, []),
    ("00 (a refusal without reason)", frame(b"\x00"), True, []),
    ("000100 (a refusal of 3 bytes)", frame(b"\x00\x01\x00"), True, []),
    ("0000 (reason 0)", frame(b"\x00\x00"), True, []),
    ("000a (reason 10)", frame(b"\x00\x0a"), True, []),
    ("00ff (reason 255)", frame(b"\x00\xff"), True, []),
    ("03 (no such suite)", frame(b"\x03"), True, []),
    ("ff (no such suite)", frame(b"\xff"), True, []),
    ("01 and 254 more bytes (255 in all)", frame(b"\x01" + bytes(254)),
     True, []),
    ("of 256 bytes", frame(b"\x01" + bytes(255)), True, []),
    ("length 256, nothing after it", struct.pack(">I", 256), True, []),
    ("length 0xffffffff, nothing after it", struct.pack(">I", 0xffffffff),
     True, []),
    ("cut inside its body", struct.pack(">I", 2) + b"\x00", False, []),
    ("02 (ChaChaPoly, not offered)", frame(b"\x02"), True,
     ["--cipher", "aesgcm"]),
    ("01 (AESGCM, not offered)", frame(b"\x01"), True,
     ["--cipher", "chachapoly"]),
]


@test("the connector's offer")
def connector_offer(args, psk, want_f1, suite):
    """x25519chat connecting with args (and --psk) must offer exactly
    want_f1; our listener then chooses suite, and the session runs in it."""
    key = os.urandom(32) if psk else None
    rig = chat_rig("connector", args=args, psk=key)
    try:
        hs = rig.peer_handshake(psk=key, suite=suite)
        _, why = small_session(rig, hs)
        if rig.link.f1 != want_f1:
            why = join("frame 1 is %s, expected %s" % (
                rig.link.f1.hex() if rig.link.f1 else None, want_f1.hex()),
                why)
        check("hello: x25519chat connector%s%s offers exactly %s; we choose "
              "%s and the session runs in it, exit 0" % (
                  " " + " ".join(args) if args else "",
                  " --psk" if psk else "", want_f1.hex(), SUITE_NAME[suite]),
              not why, why)
    finally:
        rig.cleanup()


@test("the listener's choice")
def listener_choice(args, psk, f1, want_f2):
    """We offer f1 to x25519chat listening with args: it must choose
    want_f2, and the session must then run in that suite, with our f1 as
    it is (unknown bits too) in the prologue."""
    key = os.urandom(32) if psk else None
    rig = chat_rig("listener", args=args, psk=key)
    try:
        hs = rig.peer_handshake(psk=key, f1=f1)
        try:
            _, why = small_session(rig, hs)
        except Refused as r:
            why = "refused: frame 2 is %s" % r.f2.hex()
        if rig.link.f2 != want_f2:
            why = join("frame 2 is %s, expected %s" % (
                rig.link.f2.hex() if rig.link.f2 else None, want_f2.hex()),
                why)
        check("hello: x25519chat listener%s%s, offer %s -> chooses %s (%s), "
              "session runs in it, exit 0" % (
                  " " + " ".join(args) if args else "",
                  " --psk" if psk else "", f1.hex(), want_f2.hex(),
                  SUITE_NAME.get(want_f2[0])), not why, why)
    finally:
        rig.cleanup()


LISTENER_CHOICES = [
    # (listener args, psk, frame 1, frame 2)
    ([], False, bytes([2, 3, 0]), bytes([AES])),
    ([], False, bytes([2, 1, 0]), bytes([AES])),
    ([], False, bytes([2, 2, 0]), bytes([CHACHA])),
    ([], False, bytes([2, 0xff, 0]), bytes([AES])),      # unknown bits
    ([], False, bytes([2, 0xfe, 0]), bytes([CHACHA])),
    ([], False, bytes([2, 0x81, 0]), bytes([AES])),
    ([], True, bytes([2, 3, 1]), bytes([AES])),
    ([], True, bytes([2, 0xfe, 1]), bytes([CHACHA])),
    (["--cipher", "chachapoly"], False, bytes([2, 3, 0]), bytes([CHACHA])),
    (["--cipher", "aesgcm"], False, bytes([2, 3, 0]), bytes([AES])),
]

CONNECTOR_OFFERS = [
    # (connector args, psk, frame 1, the suite we choose)
    ([], False, bytes([2, 3, 0]), AES),
    ([], False, bytes([2, 3, 0]), CHACHA),
    (["--cipher", "aesgcm"], False, bytes([2, 1, 0]), AES),
    (["--cipher", "chachapoly"], False, bytes([2, 2, 0]), CHACHA),
    ([], True, bytes([2, 3, 1]), AES),
    (["--cipher", "chachapoly"], True, bytes([2, 2, 1]), CHACHA),
]


@test("two x25519chat refuse in the hello")
def pair_refusal(what, largs, cargs, want_words):
    """A real listener and a real connector that cannot agree: both exit
    3, the connector in the words of the listener's reason."""
    home_l, home_c = Home(), Home()
    try:
        lst, con = run_pair(largs(home_l), cargs(home_c), b"x", b"y",
                            home_l, home_c, stray=True)
        errs_c, errs_l = error_lines(con.err()), error_lines(lst.err())
        ok = (lst.rc == STRAY and con.rc == 3 and len(errs_c) == 1 and
              not errs_l and want_words in errs_c[0] and
              not lst.out() and not con.out())
        check("hello between two x25519chat, %s: the connector exits 3 and "
              "says %r; the listener, quiet without -v, listens on" % (
                  what, want_words), ok,
              "exit %s/%s, connector %r, listener %r" % (
                  lst.rc, con.rc, errs_c, errs_l))
    finally:
        home_l.cleanup()
        home_c.cleanup()


def psk_args(home):
    return ["--psk", secret_file(home, PAIR_PSK)]


PAIR_PSK = os.urandom(32)
PAIR_REFUSALS = [
    ("listener --psk, connector without", psk_args, lambda h: [],
     REFUSAL_WORDS[3]),
    ("listener without, connector --psk", lambda h: [], psk_args,
     REFUSAL_WORDS[4]),
    ("listener --cipher aesgcm, connector --cipher chachapoly",
     lambda h: ["--cipher", "aesgcm"], lambda h: ["--cipher", "chachapoly"],
     REFUSAL_WORDS[2]),
]


# -------------------------------------------------------- D. downgrade

def frames_of(data):
    """data cut into frames "u32 length || body"; the rest if it is not
    whole frames."""
    out, off = [], 0
    while len(data) - off >= 4:
        n = struct.unpack(">I", data[off:off + 4])[0]
        if len(data) - off - 4 < n:
            break
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out, data[off:]


def relay_pair(edit1, edit2, largs, cargs, data_l, data_c, stray=False):
    """An x25519chat listener and an x25519chat connector talking through
    us: frame 1 passes through edit1, frame 2 through edit2, and every
    later byte as it is.  Return (listener Proc, connector Proc, hello
    frames as they came (f1, f2), bytes after the hello from the
    connector, from the listener)."""
    home_l, home_c = Home(), Home()
    srv = open_server()
    socks = []
    try:
        largs = largs(home_l) + ["-i", secret_file(home_l, os.urandom(32))]
        cargs = cargs(home_c) + ["-i", secret_file(home_c, os.urandom(32))]
        lst, port = listen(home_l, largs, stdin=stdin_for(data_l))
        STARTED.append(lst)
        if port is None:
            raise RuntimeError("listener did not start: %r" % lst.err())
        con = Proc(["-c", "127.0.0.1:%d" % srv.getsockname()[1]] + cargs,
                   home_c, stdin=stdin_for(data_c))
        STARTED.append(con)
        c = srv.accept()[0]
        socks.append(c)
        lsock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        socks.append(lsock)
        for s in socks:
            s.settimeout(WAIT)
        to_c, to_l = Link(c, False), Link(lsock, True)
        f1 = to_c.recv_frame(HELLOMAX)
        to_l.send_frame(edit1(f1))
        f2 = to_l.recv_frame(HELLOMAX)
        to_c.send_frame(edit2(f2))
        seen = {"c": bytearray(), "l": bytearray()}

        def pump(src, dst, key):
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    seen[key] += chunk
                    dst.sendall(chunk)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        pumps = [threading.Thread(target=pump, args=a, daemon=True)
                 for a in ((c, lsock, "c"), (lsock, c, "l"))]
        for t in pumps:
            t.start()
        con.wait(WAIT)
        if stray:
            settle_stray(lst)
        else:
            lst.wait(WAIT)
        for t in pumps:
            t.join(WAIT)
        return lst, con, (f1, f2), bytes(seen["c"]), bytes(seen["l"])
    finally:
        for s in socks:
            s.close()
        srv.close()
        home_l.cleanup()
        home_c.cleanup()


def set_suites(mask):
    return lambda f1: f1[:1] + bytes([f1[1] & mask]) + f1[2:]


def add_suites(bits):
    return lambda f1: f1[:1] + bytes([f1[1] | bits]) + f1[2:]


def set_byte(index, value):
    return lambda f: f[:index] + bytes([value]) + f[index + 1:]


def same(f):
    return f


def no_args(home):
    return []


@test("downgrade")
def downgrade(what, edit1, edit2, largs, cargs, at_msg2):
    """A relay edits the hello between two x25519chat: the handshake must
    fail (exit 3 both), nothing may be delivered, message 3 must never
    cross; at_msg2: the connector fails message 2 (its tag)."""
    lst, con, (f1, f2), from_c, from_l = relay_pair(
        edit1, edit2, largs, cargs, b"listener's data\n",
        b"connector's data\n", stray=True)
    try:
        fc, rest_c = frames_of(from_c)
        fl, rest_l = frames_of(from_l)
        why = []
        errs_c = error_lines(con.err())
        if lst.rc != STRAY or con.rc != 3:
            why.append("exit %s (listener), %s (connector)" % (lst.rc,
                                                               con.rc))
        if len(errs_c) != 1 or error_lines(lst.err()):
            why.append("error lines %r / %r" % (error_lines(lst.err()),
                                                errs_c))
        if at_msg2 and not (errs_c and "tag" in errs_c[0]):
            why.append("the connector did not fail on message 2's tag")
        if lst.out() or con.out():
            why.append("delivered %s / %s" % (short(lst.out()),
                                              short(con.out())))
        if len(fc) > 1 or rest_c or len(fl) > 1 or rest_l:
            why.append("after the hello, the connector sent %d frames (+%d "
                       "bytes), the listener %d (+%d)" % (
                           len(fc), len(rest_c), len(fl), len(rest_l)))
        if at_msg2 and len(fl) != 1:
            why.append("message 2 never came")
        if why:
            why.append("stderr %r / %r" % (lst.err()[-300:],
                                           con.err()[-300:]))
        check("downgrade: a relay %s (hello %s|%s became %s|%s) -> the "
              "connector exits 3%s, the listener listens on, nothing "
              "delivered, no message 3" % (
                  what, f1.hex(), f2.hex(), edit1(f1).hex(), edit2(f2).hex(),
                  ", message 2 fails at the connector" if at_msg2 else ""),
              not why, "; ".join(why))
    finally:
        lst.kill()
        con.kill()


@test("relay")
def relay_control():
    """The same relay, editing nothing: both sides end cleanly, so the
    failures above come from the edits alone."""
    data_l, data_c = os.urandom(5000), os.urandom(7000)
    lst, con, (f1, f2), _, _ = relay_pair(same, same, no_args, no_args,
                                          data_l, data_c)
    try:
        codes = [CODE.search(p.err()) for p in (lst, con)]
        codes = [m.group(1) if m else None for m in codes]
        ok = (lst.rc == 0 and con.rc == 0 and lst.out() == data_c and
              con.out() == data_l and codes[0] and codes[0] == codes[1])
        check("downgrade control: the relay editing nothing (hello %s|%s) "
              "-> exit 0 both, data crosses, same session code" % (
                  f1.hex(), f2.hex()), ok,
              "exit %s/%s, data %s/%s, codes %s; %r / %r" % (
                  lst.rc, con.rc, lst.out() == data_c, con.out() == data_l,
                  codes, lst.err()[-300:], con.err()[-300:]))
    finally:
        lst.kill()
        con.kill()


DOWNGRADES = [
    # (what, edit frame 1, edit frame 2, listener args, connector args,
    #  message 2 fails at the connector)
    ("strips AESGCM from the offer", set_suites(0xfe), same, no_args,
     no_args, True),
    ("strips ChaChaPoly from the offer", set_suites(0xfd), same, no_args,
     no_args, True),
    ("changes the choice AESGCM to ChaChaPoly", same, set_byte(0, CHACHA),
     no_args, no_args, True),
    ("changes the choice ChaChaPoly to AESGCM", same, set_byte(0, AES),
     lambda h: ["--cipher", "chachapoly"], no_args, True),
    ("adds an unknown suite bit to the offer", add_suites(0x80), same,
     no_args, no_args, True),
    ("turns mode 1 (--psk) into mode 0 for a listener without --psk",
     set_byte(2, MODE_XX), same, no_args, psk_args, False),
]


# ---------------------------------------------------------- E. attacks

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


def flip_counter(link):
    """One bit flipped in the lowest byte of the counter, which is the last
    nonce byte in AESGCM (big-endian) and the fifth in ChaChaPoly."""
    flip(15 if link.tx.suite == AES else 8, 0x01)(link)


def other_suite(link):
    """The right nonce and key, sealed with the other suite's AEAD."""
    d = link.tx
    other = CHACHA if d.suite == AES else AES
    nb = nonce(d.n, d.suite)
    sealed = aead(other, d.key).encrypt(nb, SECRET, b"")
    link.send_raw(struct.pack(">I", OVERHEAD + len(SECRET)) + nb +
                  sealed[-16:] + sealed[:-16])


def other_byte_order(link):
    """The counter written (and used) in the other suite's byte order."""
    d = link.tx
    other = CHACHA if d.suite == AES else AES
    link.send_raw(d.forge(SECRET, d.n, nonce_bytes=nonce(d.n, other)))


def bare_length(value):
    """Only a length prefix; x25519chat must refuse it without reading."""
    return lambda link: link.send_raw(struct.pack(">I", value))


def truncated(link):
    pkt = link.tx.seal(SECRET)
    link.send_raw(pkt[:len(pkt) // 2])
    link.shutdown_write()


def eof_without_close(link):
    link.shutdown_write()


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
    ("bit flip in the counter's lowest byte", flip_counter, 3, "nonce"),
    ("the counter in the other suite's byte order", other_byte_order, 3,
     "nonce"),
    ("bit flip in the tag", flip(20, 0x10), 3, "tag"),
    ("bit flip in the type byte", flip(32, 0x01), 3, "tag"),
    ("bit flip in the last ciphertext byte", flip(-1, 0x80), 3, "tag"),
    ("sealed with the other suite's AEAD", other_suite, 3, "tag"),
    ("length 0", bare_length(0), 3, "length"),
    ("length 28 (no type byte)", bare_length(28), 3, "length"),
    ("length 65565", bare_length(65565), 3, "length"),
    ("length 0xffffffff", bare_length(0xffffffff), 3, "length"),
    ("truncated packet then EOF", truncated, 4, None),
    ("EOF without CLOSE", eof_without_close, 4, None),
    ("REKEY sent but our key not changed", rekey_not_applied, 3, "tag"),
    ("key changed without REKEY", rekey_unannounced, 3, "tag"),
]


@test("transport attack")
def attack(role, suite, what, fault, want_rc, err_has):
    """Handshake, authenticated data, then the fault.  We keep our side
    open (unless the fault closes it), so x25519chat must react to the
    fault itself; and a packet that does not authenticate, or a cut, is
    never answered with an ERROR."""
    rig = Rig(role, stdin=CHAT_IN)
    try:
        link = rig.link
        link.auto_ack = False
        link.handshake(rig.peer_handshake(suite=suite))
        for body in BEFORE:
            link.send(DATA, body)
        with link.lock:
            fault(link)
        rc = rig.end()
        link.wait_reader()
        why = ended(rig, rc, want_rc, SHOWN, err_has)
        if link.failed is not None or link.error:
            why = join(why, "it answered with ERROR %r (reader: %s)" % (
                link.failed, link.error))
        check("attack, x25519chat as %s, %s: %s -> exit %d, only the data "
              "before it shown, no ERROR sent" % (role, SUITE_NAME[suite],
                                                  what, want_rc),
              not why, why)
    finally:
        rig.cleanup()


@test("connection reset")
def reset_after_data(role, suite):
    """A TCP reset after some data is a cut like EOF: exit 4, the data
    before it shown.  We reset only once that data is on its stdout."""
    rig = Rig(role, stdin=CHAT_IN)
    try:
        rig.link.handshake(rig.peer_handshake(suite=suite))
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
        check("attack, x25519chat as %s, %s: TCP reset after data -> exit "
              "4, data shown" % (role, SUITE_NAME[suite]), not why, why)
    finally:
        rig.cleanup()


@test("its own REKEY")
def own_rekey(role, suite):
    """x25519chat rekeys its sending direction after 2^30 bytes: it sends
    REKEY and goes on under Rekey(k), which our peer must follow.  Its
    stdin is a sparse file of zeros, a little over 2^30 bytes."""
    size = 2**30 + 5 * MAXBODY
    zeros = tempfile.TemporaryFile()
    zeros.truncate(size)
    rig = Rig(role, stdin=zeros, timeout=60)
    try:
        rig.link.count_only = True
        rig.link.handshake(rig.peer_handshake(suite=suite))
        unclean = rig.link.finish(60)
        rc = rig.end()
        link = rig.link
        rekeys = [p[0] for p in link.packets if p[1] == REKEY]
        why = join(ended(rig, rc, 0, b""), unclean)
        if link.count != size or link.nonzero:
            why = join(why, "got %d of %d bytes, non-zero bytes %s" % (
                link.count, size, link.nonzero))
        if len(rekeys) != 1:
            why = join(why, "REKEY packets at n=%s" % rekeys)
        check("x25519chat as %s, %s, rekeys after 2^30 bytes: one REKEY, "
              "all data decrypts under Rekey(k), clean end, exit 0" % (
                  role, SUITE_NAME[suite]), not why, why)
    finally:
        rig.cleanup()
        zeros.close()


# ------------------------------------------------------------ F. order

def start_std(rig, suite, auto_ack=True):
    """Handshake (our empty DATA first as listener), then BEFORE."""
    rig.link.auto_ack = auto_ack
    rig.link.handshake(rig.peer_handshake(suite=suite))
    for body in BEFORE:
        rig.link.send(DATA, body)


def data_after_close(rig, suite):
    start_std(rig, suite)
    rig.link.send(CLOSE)
    rig.link.send(DATA, b"after CLOSE: must never be shown\n")


def ack_before_close(rig, suite):
    start_std(rig, suite)
    rig.link.send(ACK)


def second_ack(rig, suite):
    start_std(rig, suite)
    if not rig.link.wait_for(lambda: rig.link.sent_ack):
        raise RuntimeError("no CLOSE from x25519chat to ACK: %s" %
                           rig.link.types())
    rig.link.send(ACK)


def second_close(rig, suite):
    start_std(rig, suite)
    rig.link.send(CLOSE)
    rig.link.send(CLOSE)


def ack_with_body(rig, suite):
    start_std(rig, suite, auto_ack=False)
    if not rig.link.wait_for(lambda: rig.link.closed):
        raise RuntimeError("no CLOSE from x25519chat: %s" % rig.link.types())
    rig.link.send(ACK, b"x")


def typed(kind, body):
    def script(rig, suite):
        start_std(rig, suite)
        rig.link.send(kind, body)
    return script


def first_packet(kind, body):
    def script(rig, suite):
        rig.link.handshake(rig.peer_handshake(suite=suite), first=False)
        rig.link.send(kind, body)
    return script


ITS_DATA = b"x25519chat's own data\n"
ORDER = [
    # (what, roles, x25519chat's stdin, script, stdout, words in its line)
    ("DATA after our CLOSE", "both", "pipe", data_after_close, SHOWN,
     "DATA after CLOSE"),
    ("ACK before its CLOSE", "both", "pipe", ack_before_close, SHOWN,
     "ACK before"),
    ("a second ACK of its CLOSE", "both", ITS_DATA, second_ack, SHOWN,
     "second ACK"),
    ("a second CLOSE", "both", "pipe", second_close, SHOWN,
     "second CLOSE"),
    ("unknown type 6", "both", "pipe", typed(6, b""), SHOWN, "unknown"),
    ("unknown type 255 with a body", "both", "pipe", typed(255, b"xyz"),
     SHOWN, "unknown"),
    ("ERROR with a 201-byte reason", "both", "pipe",
     typed(ERROR, b"r" * 201), SHOWN, "ERROR"),
    ("ERROR with an empty reason", "both", "pipe", typed(ERROR, b""), SHOWN,
     "ERROR"),
    ("CLOSE with a body", "both", "pipe", typed(CLOSE, b"x"), SHOWN, "body"),
    ("ACK with a body (after its CLOSE)", "both", ITS_DATA, ack_with_body,
     SHOWN, "body"),
    ("PING with a body", "both", "pipe", typed(PING, b"x"), SHOWN, "body"),
    ("REKEY with a body", "both", "pipe", typed(REKEY, b"x"), SHOWN, "body"),
    ("the listener's first packet a 1-byte DATA", "connector", "pipe",
     first_packet(DATA, b"x"), b"", "first packet"),
    ("the listener's first packet a PING", "connector", "pipe",
     first_packet(PING, b""), b"", "first packet"),
    ("the listener's first packet a CLOSE", "connector", "pipe",
     first_packet(CLOSE, b""), b"", "first packet"),
]


@test("order")
def order_rule(role, suite, what, stdin, script, want_out, words):
    """x25519chat must answer the fault with an authenticated ERROR, then
    end its side of TCP, exit 3 with one line, and have shown exactly
    the data it accepted before the fault."""
    rig = Rig(role, stdin=stdin)
    try:
        link = rig.link
        script(rig, suite)
        link.wait_reader()
        rc = rig.end()
        why = ended(rig, rc, 3, want_out, words)
        if link.failed is None:
            why = join(why, "no ERROR packet came (packets %s)" %
                       link.types())
        if link.error or not link.eof:
            why = join(why, "after its ERROR: reader %s, EOF %s, reset %s" %
                       (link.error, link.eof, link.reset))
        check("order, x25519chat as %s, %s: %s -> an authenticated ERROR "
              "(%r), exit 3, stdout = the data before" % (
                  role, SUITE_NAME[suite], what, link.failed), not why, why)
    finally:
        rig.cleanup()


# The end: a cut before both directions are acknowledged, and what may
# still come after a CLOSE.

def no_ack_of_its_close(rig, suite):
    """Our CLOSE is acknowledged; its CLOSE never is: we hang up."""
    start_std(rig, suite, auto_ack=False)
    rig.link.send(CLOSE)
    if not rig.link.wait_for(lambda: rig.link.closed and rig.link.acked):
        raise RuntimeError("no CLOSE and ACK from it: %s" % rig.link.types())
    rig.link.shutdown_write()


def no_close_of_ours(rig, suite):
    """Its CLOSE is acknowledged; we never send ours: we hang up."""
    start_std(rig, suite)
    if not rig.link.wait_for(lambda: rig.link.sent_ack):
        raise RuntimeError("no CLOSE from it: %s" % rig.link.types())
    rig.link.shutdown_write()


ENDS = [
    # (what, script, words its line must have, words it must not have)
    ("we hang up without acknowledging its CLOSE (ours was): what we sent "
     "is whole, and its line must not say otherwise", no_ack_of_its_close,
     None, "incomplete"),
    ("we acknowledge its CLOSE, then hang up without ours: its line says "
     "the stream may be incomplete", no_close_of_ours, "incomplete", None),
]


@test("a cut at the end")
def cut_at_end(role, suite, what, script, words, not_words):
    """Only both CLOSEs acknowledged make a clean end: a cut before that
    is exit 4, with everything that came shown, no ERROR, and one line
    that tells whether what came is whole."""
    rig = Rig(role, stdin=ITS_DATA)
    try:
        script(rig, suite)
        rc = rig.end()
        rig.link.wait_reader()
        why = ended(rig, rc, 4, SHOWN, words)
        errs = error_lines(rig.err())
        if not_words is not None and any(not_words in e for e in errs):
            why = join(why, "the error line says %r although our CLOSE "
                       "came: %r" % (not_words, errs))
        if rig.link.failed is not None or rig.link.error:
            why = join(why, "ERROR %r, reader %s" % (rig.link.failed,
                                                     rig.link.error))
        check("end, x25519chat as %s, %s: %s -> exit 4, all our data shown" %
              (role, SUITE_NAME[suite], what), not why, why)
    finally:
        rig.cleanup()


@test("after our CLOSE")
def after_close(role, suite, error):
    """After our CLOSE, REKEY and PING may still come (and ERROR): the
    session goes on under the new key and ends cleanly (or exit 5)."""
    rig = Rig(role, stdin="pipe")
    try:
        link = rig.link
        start_std(rig, suite)
        link.send(CLOSE)
        link.rekey()
        link.send(PING)
        if error:
            link.send(ERROR, b"late failure")
            link.shutdown_write()
            rc = rig.end()
            why = ended(rig, rc, 5, SHOWN, "peer failed: late failure")
        else:
            link.rekey()
            rig.close_stdin()
            why = join(link.finish(), ended(rig, rig.end(), 0, SHOWN))
        check("end, x25519chat as %s, %s: REKEY and PING after our CLOSE%s "
              "-> %s" % (role, SUITE_NAME[suite],
                         ", then ERROR" if error else "",
                         "exit 5, 'peer failed'" if error else
                         "its ACK comes under our new key, clean end, exit 0"),
              not why, why)
    finally:
        rig.cleanup()


@test("its own failure")
def own_failure(suite):
    """x25519chat's stdout is /dev/full: our DATA cannot be written out,
    so it must tell us at once with an ERROR naming stdout, then exit 1
    (a run-time error), with one line."""
    full = ["sh", "-c", 'exec "$0" "$@" >/dev/full', os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "x25519chat")]
    rig = Rig("connector", stdin="pipe", cmd=full)
    try:
        link = rig.link
        link.handshake(rig.peer_handshake(suite=suite))
        link.send(DATA, b"cannot be written out\n")
        link.wait_for(lambda: link.failed is not None)
        rc = rig.end()
        errs = error_lines(rig.err())
        why = []
        if rc != 1 or len(errs) != 1 or "stdout" not in errs[0]:
            why.append("exit %s, error lines %r" % (rc, errs))
        if link.failed is None or b"stdout" not in link.failed or \
                link.error:
            why.append("its ERROR %r, reader %s, packets %s" % (
                link.failed, link.error, link.types()))
        check("its own failure, x25519chat as connector, %s: stdout is "
              "/dev/full -> an ERROR naming stdout before it hangs up, exit "
              "1" % SUITE_NAME[suite], not why, "; ".join(why))
    finally:
        rig.cleanup()


# ------------------------------------------------- G. the peer's ERROR

HOSTILE_REASON = (b"disk full \x1b[2J\x1b]0;owned\x07 \xe2\x80\xae"
                  b"exe.txt \x9b31m\nx25519chat: forged line\r end")


@test("the peer's ERROR")
def peer_error(role, suite, what, reason, musts):
    """Our ERROR after some data: x25519chat says "peer failed: REASON"
    with the reason shown safely, exits 5, and keeps the data."""
    rig = Rig(role, stdin="pipe")
    try:
        rig.link.handshake(rig.peer_handshake(suite=suite))
        for body in BEFORE:
            rig.link.send(DATA, body)
        rig.link.send(ERROR, reason)
        rig.link.shutdown_write()
        rc = rig.end()
        errs = error_lines(rig.err())
        why = ended(rig, rc, 5, SHOWN, "peer failed: ")
        line = errs[0] if errs else ""
        missing = [m for m in musts if m not in line]
        bad = unsafe_chars(rig.err())
        if missing or bad:
            why = join(why, "line %r lacks %r, unsafe %r" % (line, missing,
                                                              bad))
        check("peer's ERROR, x25519chat as %s, %s: %s -> 'peer failed: "
              "...' shown safely, exit 5, data kept" % (
                  role, SUITE_NAME[suite], what), not why, why)
    finally:
        rig.cleanup()


PEER_ERRORS = [
    ("a reason with escape sequences, a bidi override and a newline",
     HOSTILE_REASON,
     ["peer failed: disk full ", "\\x1b[2J", "\\x1b]0;owned", "\\u202e",
      "exe.txt", "forged line", " end"]),
    ("a reason of 200 bytes", b"0123456789" * 20, ["0123456789" * 20]),
    ("a reason of 1 byte", b"Z", ["peer failed: Z"]),
]


@test("busy")
def busy_error(first, reason):
    """ERROR "busy" as the listener's first packet means it had no room
    for us: exit 1 "the listener is busy"; any other first ERROR, or a
    later one, is the peer's failure (5)."""
    rig = Rig("connector", stdin="pipe")
    try:
        rig.link.handshake(rig.peer_handshake(), first=not first)
        rig.link.send(ERROR, reason)
        rig.link.shutdown_write()
        rc = rig.end()
        busy = first and reason == b"busy"
        words = "the listener is busy" if busy else \
            "peer failed: " + reason.decode()
        why = ended(rig, rc, 1 if busy else 5, b"", words)
        known = rig.home.path("x25519chat", "known_peers")
        if first and os.path.exists(known):
            why = join(why, "known_peers holds %r" % open(known).read())
        check("peer's ERROR %r %s -> exit %d, %r%s" % (
            reason.decode(), "as our first packet (listener)" if first else
            "after our empty DATA", 1 if busy else 5, words,
            ", our key not recorded" if first else ""), not why, why)
    finally:
        rig.cleanup()


# -------------------------------------------------------- H. keepalive

def keepalive_ping(role, suite):
    """x25519chat idle (stdin held open), our peer silent: a PING must come
    about 15 s after its last packet (its empty DATA as listener, message
    3 as connector); then the session still ends cleanly.  The time is
    taken from our last handshake message, which that packet had to wait
    for: so under load it can only seem longer, never shorter.  Return
    the checks to report."""
    what = "keepalive, x25519chat as %s, %s, both idle: a PING 15 to 16 s " \
        "after its last packet, then a clean end" % (role, SUITE_NAME[suite])
    rig = Rig(role, stdin="pipe", timeout=60)
    try:
        link = rig.link
        link.handshake(rig.peer_handshake(suite=suite))
        t0 = link.hs_sent
        i = link.wait_type(PING, 25)
        dt = link.times[i] - t0 if i is not None else None
        # Nothing else came between its last packet and the PING.
        want_i = 1 if role == "listener" else 0
        rig.close_stdin()
        unclean = link.finish()
        rc = rig.end()
        why = join(ended(rig, rc, 0, b""), unclean)
        if dt is None or not 15.0 <= dt <= 16.0 or i != want_i:
            why = join(why, "PING after %s s; packets %s" % (
                None if dt is None else round(dt, 2), link.types()))
        return [(what + " (%s s)" % (None if dt is None else round(dt, 2)),
                 not why, why)]
    finally:
        rig.cleanup()


def keepalive_limit(role, suite):
    """--keepalive 30 and our peer silent after the handshake: x25519chat
    must end the session 30 s later, exit 4."""
    what = "keepalive, x25519chat as %s, %s, --keepalive 30, our peer " \
        "silent: exit 4 'no word from the peer in 30 s' after 29 to 31 s" % (
            role, SUITE_NAME[suite])
    rig = Rig(role, stdin="pipe", args=["--keepalive", "30"], timeout=60)
    try:
        link = rig.link
        link.handshake(rig.peer_handshake(suite=suite), first=False)
        t0 = link.hs_end
        rc = rig.end(45)
        dt = time.monotonic() - t0
        why = ended(rig, rc, 4, b"", "no word from the peer in 30 s")
        if not 29.0 <= dt <= 31.0:
            why = join(why, "it ended %.2f s after the handshake" % dt)
        return [(what + " (%.1f s)" % dt, not why, why)]
    finally:
        rig.cleanup()


def linger(role, suite, after_error):
    """Once it has sent ERROR (after_error) or ended cleanly, x25519chat
    shuts its sending half at once and reads on until our end of TCP or
    5 s.  We keep our side open: its FIN must come at once, its exit
    about 5 s later (3 after the ERROR, 0 after the clean end)."""
    what = "linger, x25519chat as %s, %s: %s, our side kept open -> its " \
        "end of TCP at once, exit %d 5 s later" % (
            role, SUITE_NAME[suite], "after its ERROR" if after_error else
            "after a clean end", 3 if after_error else 0)
    rig = Rig(role, stdin="pipe" if after_error else ITS_DATA, timeout=60)
    try:
        link = rig.link
        link.hangup_on_error = False
        link.handshake(rig.peer_handshake(suite=suite))
        link.send(DATA, SHOWN)
        if after_error:
            link.send(6)
            link.wait_for(lambda: link.failed is not None)
        else:
            link.send(CLOSE)
            link.wait_for(lambda: link.closed and link.acked and
                          link.sent_ack)
        t0 = time.monotonic()
        fin = link.wait_reader(WAIT)
        t_fin = time.monotonic() - t0
        rc = rig.end(15)
        t_exit = time.monotonic() - t0
        why = ended(rig, rc, 3 if after_error else 0, SHOWN)
        if (link.failed is None) != (not after_error) or link.error:
            why = join(why, "ERROR %r, reader %s" % (link.failed, link.error))
        if not fin or not link.eof or t_fin > 1.0:
            why = join(why, "its end of TCP after %.2f s (EOF %s)" % (
                t_fin, link.eof))
        if not 4.5 <= t_exit <= 7.0:
            why = join(why, "it exited %.2f s after" % t_exit)
        return [(what + " (%.1f s)" % t_exit, not why, why)]
    finally:
        rig.cleanup()


def pings_keep_alive(role, suite):
    """--keepalive 30, and our peer sends nothing but a PING every 10 s:
    the session outlives 30 s, then ends cleanly."""
    what = "keepalive, x25519chat as %s, %s, --keepalive 30, our PING " \
        "every 10 s: still there after 35 s, then a clean end" % (
            role, SUITE_NAME[suite])
    rig = Rig(role, stdin="pipe", args=["--keepalive", "30"], timeout=60)
    try:
        link = rig.link
        link.handshake(rig.peer_handshake(suite=suite))
        t0 = link.hs_sent
        for k in (1, 2, 3):
            time.sleep(max(0.0, t0 + 10 * k - time.monotonic()))
            link.send(PING)
        time.sleep(max(0.0, t0 + 35 - time.monotonic()))
        alive = rig.proc.alive()
        rig.close_stdin()
        why = join(link.finish(), ended(rig, rig.end(), 0, b""))
        if not alive:
            why = join("it had ended before 35 s", why)
        return [(what, not why, why)]
    finally:
        rig.cleanup()


class Background:
    """Checks that mostly wait, run in threads while the rest goes on.
    Each function returns a list of (what, ok, why); report() prints them
    from the main thread once all are done."""

    def __init__(self):
        self.jobs = []
        self.results = []
        self.lock = threading.Lock()

    def start(self, name, fn, *args):
        def body():
            try:
                res = fn(*args)
            except Exception as exc:    # a crashed check has failed
                res = [(name, False, "%s: %s" % (type(exc).__name__, exc))]
            with self.lock:
                self.results.extend(res)
        t = threading.Thread(target=body, daemon=True)
        t.start()
        self.jobs.append((name, t))

    def report(self, timeout):
        deadline = time.monotonic() + timeout
        for name, t in self.jobs:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                check(name, False, "still running after %d s" % timeout)
        with self.lock:
            for what, ok, why in self.results:
                check(what, ok, why)


# ---------------------------------------------- I. PING at the very end

PING_END = [
    "PING right after our CLOSE",
    "PING after its CLOSE, right before our ACK",
    "PING right after our ACK",
    "PING after the whole exchange, 0 to 20 ms before our end of TCP",
]


def ping_end_once(role, suite, variant, delay=0.0):
    """One short session ending with a PING of ours near the ACKs (in
    the last variant, delay seconds after them); "" or what went
    wrong."""
    rig = Rig(role, stdin=ITS_DATA, args=["-q"])
    try:
        link = rig.link
        link.auto_ack = variant not in (1, 2)
        link.handshake(rig.peer_handshake(suite=suite))
        body = b"the peer's data\n"
        link.send(DATA, body)
        link.send(CLOSE)
        if variant == 0:
            link.send(PING)
        elif variant in (1, 2):
            if not link.wait_for(lambda: link.closed):
                return "no CLOSE from it: %s" % link.types()
            link.send(PING if variant == 1 else ACK)
            link.send(ACK if variant == 1 else PING)
        else:
            link.wait_for(lambda: link.closed and link.acked and
                          link.sent_ack)
            time.sleep(delay)
            link.send(PING)
        unclean = link.finish()
        rc = rig.end()
        why = join(ended(rig, rc, 0, body), unclean)
        if link.data != ITS_DATA:
            why = join(why, "we got %s" % short(link.data))
        if not unclean and link.reset_after_end():
            why = join(why, "a reset after its end of TCP: it closed with "
                       "our PING unread")
        return why
    finally:
        rig.cleanup()


@test("PING at the end")
def ping_at_end(role, suite, runs):
    t = time.monotonic()
    bad = []
    for i in range(runs):
        # The last variant sends its PING 0, 2, 5 or 20 ms after the ACKs.
        delay = (0, 0.002, 0.005, 0.02)[i // len(PING_END) % 4]
        why = ping_end_once(role, suite, i % len(PING_END), delay)
        if why:
            bad.append("run %d (%s): %s" % (i, PING_END[i % len(PING_END)],
                                            why))
    check("PING at the end, x25519chat as %s, %s: %d sessions, a PING of "
          "ours right before or after the ACKs -> its ACK reaches us, it "
          "reads on to our end (no reset), exit 0 every time (%.1f s)" % (
              role, SUITE_NAME[suite], runs, time.monotonic() - t),
          not bad, "%d failed; %s" % (len(bad), "; ".join(bad[:3])))


# ------------------------------------------------ J. handshake attacks

# Each script takes the link before the hello and the suite to choose or
# offer, and returns a description of what x25519chat sent afterwards
# that it must not have.

def after_hs_msg(link, expect_silence):
    got, eof = link.drain()
    if expect_silence and (got or not eof):
        return "after our message we got %s (EOF %s)" % (short(got), eof)
    return ""


def msg2_with_e(e_pub):
    """x25519chat connects; message 2 carries e_pub as our ephemeral key
    and is otherwise valid for a victim that accepts DH(ee) = 0."""
    def script(link, suite):
        hs = Handshake(False, keypair(), dhfn=LowOrderDH(fake_e=e_pub),
                       suite=suite)
        link.hello(hs)
        hs.read(link.recv_frame())
        link.send_frame(hs.write())
        return after_hs_msg(link, True)
    return script


def msg1_with_e(e_pub):
    def script(link, suite):
        link.hello(Handshake(True, keypair(), suite=suite))
        link.send_frame(e_pub)
        return after_hs_msg(link, True)
    return script


def bare_hs_length(value):
    """Only a length prefix for the next handshake message; we keep the
    connection open, so x25519chat must refuse it without reading."""
    def script(link, suite):
        link.hello(Handshake(link.initiator, keypair(), suite=suite))
        if not link.initiator:
            link.recv_frame()
        link.send_raw(struct.pack(">I", value))
        return after_hs_msg(link, True)
    return script


def msg1_with_payload(link, suite):
    link.hello(Handshake(True, keypair(), suite=suite))
    link.send_frame(keypair().public.data + b"x")
    return after_hs_msg(link, True)


def long_name_msg2(link, suite):
    hs = Handshake(False, keypair(), suite=suite)
    link.hello(hs)
    hs.read(link.recv_frame())
    link.send_frame(hs.write(b"n" * 65))
    return after_hs_msg(link, True)


def long_name_msg3(link, suite):
    hs = Handshake(True, keypair(), suite=suite)
    link.hello(hs)
    link.send_frame(hs.write())
    hs.read(link.recv_frame())
    link.send_frame(hs.write(b"n" * 65))
    return after_hs_msg(link, True)


def tampered_static_msg2(link, suite):
    hs = Handshake(False, keypair(), suite=suite)
    link.hello(hs)
    hs.read(link.recv_frame())
    msg = bytearray(hs.write())
    msg[40] ^= 0x01         # inside the encrypted static key
    link.send_frame(bytes(msg))
    return after_hs_msg(link, True)


def low_order_static_msg2(link, suite):
    hs = Handshake(False, fake_pair(bytes(32)), dhfn=LowOrderDH(),
                   suite=suite)
    link.hello(hs)
    hs.read(link.recv_frame())
    link.send_frame(hs.write())
    return after_hs_msg(link, True)


def low_order_static_msg3(link, suite):
    hs = Handshake(True, fake_pair(bytes(32)), dhfn=LowOrderDH(),
                   suite=suite)
    link.hello(hs)
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
def hs_attack(role, suite, what, script):
    rig = Rig(role, stdin=CHAT_IN)
    try:
        extra = script(rig.link, suite)
        rc = rig.end()
        why = join(ended(rig, rc, 3, b""), extra)
        check("handshake attack, x25519chat as %s, %s: %s -> exit 3, "
              "nothing more sent" % (role, SUITE_NAME[suite], what),
              not why, why)
    finally:
        rig.cleanup()


# ------------------------------------------------------------ J. traces

TRACE_VALUE = re.compile(r"^\[trace\]   (.+?) = ([0-9a-f]*)"
                         r"(?: \(([A-Za-z0-9+/=]+)\))?$")
TRACE_PACKET = re.compile(r"^\[trace\] (send|recv) n=(\d+) type=(\S+) "
                          r"length=(\d+) nonce=([0-9a-f]+) tag=([0-9a-f]+)$")
PUBLIC_KEYS = ("s.public", "e.public", "re", "rs")


class Trace:
    """The [trace] lines of one stderr: steps (name, value or None for a
    heading, base64 text or None) in order, and the packet lines."""

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
                self.steps.append((m.group(1), bytes.fromhex(m.group(2)),
                                   m.group(3)))
            else:
                self.steps.append((ln[len("[trace] "):], None, None))

    def headings(self):
        return [name for name, value, _ in self.steps if value is None]

    def values(self, name, before=None, prefix=False):
        """Every value called name (or starting with it), up to the heading
        before if given."""
        out = []
        for step, value, _ in self.steps:
            if before is not None and step == before and value is None:
                break
            if value is not None and (step == name or
                                      prefix and step.startswith(name)):
                out.append(value)
        return out

    def value(self, name, prefix=False):
        vals = self.values(name, prefix=prefix)
        return vals[0] if vals else None

    def with_b64(self):
        """(name, value, base64 text) of each value traced with base64."""
        return [s for s in self.steps if s[2] is not None]


def settle_stray(lst):
    """A listener whose connector failed before the session listens on:
    its rc becomes STRAY if it still runs a moment later (it is then
    ended), else its exit status."""
    lst.rc = STRAY if lst.wait(0.5) is None else lst.rc


def run_pair(args_l, args_c, data_l, data_c, home_l, home_c, stray=False):
    """Two x25519chat processes talking; return (listener, connector)
    Procs after both ended (rc in .rc), or raise if one did not start.
    With stray, the connector is to fail before the session: see
    settle_stray()."""
    lst, port = listen(home_l, args_l, stdin=stdin_for(data_l))
    STARTED.append(lst)
    if port is None:
        raise RuntimeError("listener did not start: %r" % lst.err())
    con = Proc(["-c", "127.0.0.1:%d" % port] + args_c, home_c,
               stdin=stdin_for(data_c))
    STARTED.append(con)
    con.wait(WAIT)
    if stray:
        settle_stray(lst)
    else:
        lst.wait(WAIT)
    return lst, con


def packet_plaintexts(packets, stream):
    """The plaintext of each sent packet, rebuilt from the sender's stdin
    (stream) and the traced lengths: a DATA packet carries the next bytes
    of the stream, the others of a clean session only their type byte."""
    out, off = [], 0
    for p in packets:
        body_len = p["length"] - OVERHEAD - 1
        body = stream[off:off + body_len] if p["type"] == "DATA" else b""
        off += len(body)
        out.append(bytes([TYPES.get(p["type"], 255)]) + body)
    return out


def check_packets(label, sender, receiver, key, suite, stream):
    """The traced packets one side sent: nonces encode n in the suite's
    byte order, n counts from 0, lengths fit, the other side traced the
    same packets, and each tag is the one the suite's AEAD (pyca) gives
    for the rebuilt plaintext."""
    sent = [p for p in sender.packets if p["dir"] == "send"]
    recv = [p for p in receiver.packets if p["dir"] == "recv"]
    why = []
    for i, p in enumerate(sent):
        if p["n"] != i:
            why.append("packet %d traced as n=%d" % (i, p["n"]))
        if p["nonce"] != nonce(p["n"], suite):
            why.append("n=%d nonce %s" % (p["n"], p["nonce"].hex()))
        if not OVERHEAD < p["length"] <= OVERHEAD + MAXPLAIN:
            why.append("n=%d length %d" % (p["n"], p["length"]))
    check(label + ": every sent nonce is 4 zero bytes || n (%s), n = 0, 1, "
          "2..." % ("big-endian" if suite == AES else "little-endian"),
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
        tag = aead(suite, k).encrypt(nonce(p["n"], suite), plain, b"")[-16:]
        if tag != p["tag"]:
            bad.append(p["n"])
        if p["type"] == "REKEY":
            k = rekeyed(suite, k)
    check(label + ": every traced tag is %s's tag of the packet under the "
          "traced key" % SUITE_NAME[suite], sent and not bad,
          "wrong tags at n=%s" % bad[:10])


@test("trace truthfulness")
def trace_truth(psk, suite, largs, cargs, f1, f2):
    label = "trace (-vv, %s%s%s)" % (
        protocol_name(suite, psk), "".join(" listener " + a for a in largs
                                           if a.startswith("c")),
        "".join(" connector " + a for a in cargs if a.startswith("c")))
    home_l, home_c = Home(), Home()
    try:
        key_l, key_c = keypair(), keypair()
        data_l, data_c = os.urandom(100000), os.urandom(70000)
        args_l = ["-vv", "-n", "lis", "-i",
                  secret_file(home_l, key_l.private.data)] + largs
        args_c = ["-vv", "-n", "con", "-i",
                  secret_file(home_c, key_c.private.data)] + cargs
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
        prologue = PROLOGUE + f1 + f2
        for who, t in (("listener", tl), ("connector", tc)):
            first = t.lines[0] if t.lines else ""
            check(label + ": %s's trace starts with a secret-key warning" %
                  who, "WARNING" in first and "secret" in first,
                  "first trace line %r" % first)
            got = (t.value("hello: frame 1", prefix=True),
                   t.value("hello: frame 2", prefix=True),
                   t.value("prologue"))
            check(label + ": %s's trace shows hello frames %s and %s, and "
                  "the prologue 'x25519chat/2' || both" % (
                      who, f1.hex(), f2.hex()),
                  got == (f1, f2, prologue),
                  "traced %s" % [g.hex() if g is not None else None
                                 for g in got])
            want = [protocol_name(suite, psk), "-> e", "<- e, ee, s, es",
                    "-> s, se, psk" if psk else "-> s, se", "Split()"]
            heads = [h for h in t.headings() if h in want]
            check(label + ": %s's trace has the protocol name and the "
                  "steps in order" % who,
                  heads == want, "headings %r" % t.headings())

        e_l, e_c = tl.value("e.private"), tc.value("e.private")
        if e_l is None or e_c is None:
            raise RuntimeError("no e.private traced")
        i = Handshake(True, key_c, psk=psk, ephemeral=e_c)
        r = Handshake(False, key_l, psk=psk, ephemeral=e_l)
        i.start(f1, f2)
        r.start(f1, f2)
        msgs = [i.write()]
        r.read(msgs[0])
        msgs.append(r.write(b"lis"))
        i.read(msgs[1])
        msgs.append(i.write(b"con"))
        r.read(msgs[2])
        if i.hash != r.hash or i.keys != r.keys or i.h2 != r.h2:
            raise RuntimeError("dissononce disagrees with itself")
        h, h2, (c1, c2) = i.hash, i.h2, i.keys

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
            shown = t.with_b64()
            named = sorted({name for name, _, _ in shown})
            bad = [name for name, value, text in shown
                   if text != b64(value)]
            check(label + ": %s's trace shows each public key (%s) also in "
                  "base64, and right" % (who, ", ".join(PUBLIC_KEYS)),
                  named == sorted(PUBLIC_KEYS) and not bad,
                  "base64 shown for %s, wrong for %s" % (named, bad))
            hs_ = t.values("h", before="Split()")
            check(label + ": %s's last traced h before Split() is the "
                  "handshake hash" % who, hs_ and hs_[-1] == h,
                  "traced %s, recomputed %s" %
                  (hs_[-1].hex() if hs_ else None, h.hex()))
            traced_h2 = t.value("h2", prefix=True)
            check(label + ": %s's traced h2 is the hash after message 2" %
                  who, traced_h2 == h2 and h2 in t.values("h"),
                  "traced %s, recomputed %s" % (
                      traced_h2.hex() if traced_h2 else None, h2.hex()))
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
        code = session_code(h2)
        for who, proc in (("listener", lst), ("connector", con)):
            m = CODE.search(proc.err())
            check(label + ": %s's session code is the one computed from h2 "
                  "(hashlib)" % who, m is not None and m.group(1) == code,
                  "shown %r, recomputed %r" % (m and m.group(1), code))
        check_packets(label + ", connector to listener", tc, tl, c1, suite,
                      data_c)
        check_packets(label + ", listener to connector", tl, tc, c2, suite,
                      data_l)
    finally:
        home_l.cleanup()
        home_c.cleanup()


TRACES = [
    # (psk, suite, listener args, connector args, frame 1, frame 2)
    (None, AES, [], [], bytes([2, 3, 0]), bytes([AES])),
    (os.urandom(32), AES, [], ["--cipher", "aesgcm"], bytes([2, 1, 1]),
     bytes([AES])),
    (None, CHACHA, ["--cipher", "chachapoly"], [], bytes([2, 3, 0]),
     bytes([CHACHA])),
    (os.urandom(32), CHACHA, [], ["--cipher", "chachapoly"],
     bytes([2, 2, 1]), bytes([CHACHA])),
]


def wire(n, kind, pkt):
    """What a trace line should say of packet pkt (counter n, type kind)."""
    return dict(n=n, type=TYPE_NAMES.get(kind, "unknown"),
                length=len(pkt) - 4, nonce=pkt[4:16], tag=pkt[16:32])


def check_wire_trace(role, suite, trace, link):
    """x25519chat's packet trace lines describe the packets on the wire:
    the ones we sent (our REKEY and ACK included) and the ones we
    received."""
    ours = [wire(n, kind, pkt) for n, (kind, pkt) in enumerate(link.sent)]
    theirs = [wire(n, kind, raw) for n, kind, _, raw in link.packets]
    traced = {"send": [], "recv": []}
    for p in trace.packets:
        traced[p["dir"]].append({k: v for k, v in p.items() if k != "dir"})
    check("-vv against our peer, x25519chat as %s, %s: its recv and send "
          "trace lines match the packets on the wire" % (
              role, SUITE_NAME[suite]),
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
def no_secrets_peer(role, verbosity, suite):
    """Our peer knows the transport keys and DH outputs: they must not
    appear in x25519chat's stderr below -vv, and must appear with it (so
    that the search itself is shown to work)."""
    psk = os.urandom(32)
    rig = chat_rig(role, psk=psk, args=verbosity)
    try:
        hs = rig.peer_handshake(psk=psk, suite=suite)
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
            check("-vv against our peer, x25519chat as %s, %s: the same "
                  "search finds our transport keys, DH outputs and the psk"
                  % (role, SUITE_NAME[suite]),
                  not why and set(found) == want, why or "found %s" % found)
            check_wire_trace(role, suite, Trace(rig.err()), rig.link)
        else:
            check("no -vv (%s) against our peer, x25519chat as %s, %s: no "
                  "key, DH output or psk in stderr" % (
                      flags, role, SUITE_NAME[suite]),
                  not why and not found and "[trace]" not in rig.err(),
                  why or "found %s" % found)
    finally:
        rig.cleanup()


# ---------------------------------------------------------------- main

T0 = time.monotonic()
ROLES = ("listener", "connector")


def other(suite):
    return CHACHA if suite == AES else AES


def main():
    # H first: these wait about 15 and 30 s, in the background.
    bg = Background()
    for role, suite in (("listener", AES), ("connector", CHACHA)):
        bg.start("keepalive PING, x25519chat as %s" % role,
                 keepalive_ping, role, suite)
        bg.start("keepalive limit, x25519chat as %s" % role,
                 keepalive_limit, role, other(suite))
        bg.start("PINGs keep it alive, x25519chat as %s" % role,
                 pings_keep_alive, role, suite)
        bg.start("linger after ERROR, x25519chat as %s" % role,
                 linger, role, other(suite), True)
        bg.start("linger after a clean end, x25519chat as %s" % role,
                 linger, role, suite, False)

    # B.
    for role in ROLES:
        for suite in SUITES:
            for with_psk in (False, True):
                interop(role, suite, with_psk)
    for role in ROLES:
        for suite in SUITES:
            psk_mismatch(role, suite)
    for role, suite in (("listener", CHACHA), ("connector", AES)):
        names(role, suite)
        psk_match(role, suite)
    for right in (True, False):
        for role, suite in (("connector", AES), ("listener", CHACHA)):
            peer_pin(role, right, suite if right else other(suite))
    known_peers()
    for suite in SUITES:
        listener_refuses(suite)
    for role, suite in (("listener", AES), ("connector", CHACHA)):
        quiet(role, suite)

    # C.
    for reason in range(1, 10):
        refusal_words(reason)
    for case in LISTENER_REFUSALS:
        listener_refusal(*case)
    for case in PAIR_REFUSALS:
        pair_refusal(*case)
    for case in BAD_FRAME1:
        bad_frame1(*case)
    for case in BAD_FRAME2:
        bad_frame2(*case)
    for case in CONNECTOR_OFFERS:
        connector_offer(*case)
    for case in LISTENER_CHOICES:
        listener_choice(*case)

    # D.
    relay_control()
    for case in DOWNGRADES:
        downgrade(*case)

    # E.
    for role in ROLES:
        for suite in SUITES:
            for case in ATTACKS:
                attack(role, suite, *case)
            reset_after_data(role, suite)
    own_rekey("listener", AES)
    own_rekey("connector", CHACHA)

    # F.
    for role in ROLES:
        for suite in SUITES:
            for what, roles, stdin, script, out, words in ORDER:
                if roles in ("both", role):
                    order_rule(role, suite, what, stdin, script, out, words)
            for case in ENDS:
                cut_at_end(role, suite, *case)
            after_close(role, suite, False)
            after_close(role, suite, True)

    # G.
    for role in ROLES:
        for suite in SUITES:
            for what, reason, musts in PEER_ERRORS:
                peer_error(role, suite, what, reason, musts)
    busy_error(True, b"busy")
    busy_error(False, b"busy")
    busy_error(True, b"no room for you")
    for suite in SUITES:
        own_failure(suite)

    # I.
    for role, suite in (("listener", CHACHA), ("connector", AES)):
        ping_at_end(role, suite, 100)

    # J.
    for suite in SUITES:
        for role, what, script in HS_ATTACKS:
            hs_attack(role, suite, what, script)
    for case in TRACES:
        trace_truth(*case)
    no_secrets_pair()
    for role in ROLES:
        for verbosity in ([], ["-v"], ["-vv"]):
            for suite in SUITES:
                no_secrets_peer(role, verbosity, suite)

    bg.report(60)
    finish()


if __name__ == "__main__":
    main()
