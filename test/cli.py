"""Command-line, key-file and trust tests of x25519chat.

Every check runs the real program: option errors (exit 2, one line on
stderr, nothing on stdout), listening and connecting addresses, the
identity and key files (--keygen, --pubkey, modes, strict parsing), and
the trust rules of the default protocol between a real listener and a
real connector: known_peers, --peer, --allow, --psk, --cipher and -n, the
session code, and the words of each refusal in the hello (the ones no
real listener sends come from a small fake one).  Each test gets its
own configuration directory; every process is started with a time limit
and killed by its own pid.  Output: one line "PASS: what" or "FAIL:
what: why" per check.
"""

import base64
import os
import pty
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harness import (LISTENING, TOP, Home, Proc, check, feed, finish,
                     listen)

PROG = "x25519chat: "
LDATA = b"hi from the listener\n"
CDATA = b"hi from the connector\n"
B64 = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
       "0123456789+/")
KEYTEXT = re.compile(r"^[A-Za-z0-9+/]{43}=$")
# The whole line, so that a shorter or longer code, or other words, fail.
CODE = re.compile(r"^Session code: ([0-9a-f]{4}(?:-[0-9a-f]{4}){3})  Compare "
                  r"this code with your peer's: if it differs, someone is "
                  r"in the middle\.$", re.M)
# The lines x25519chat prints on stderr besides its errors.
STATUS = ("Server listening on ", "Client ", "Connected to ",
          "Created a new identity in ", "First contact with ", "Peer key: ",
          "Session code: ", "Peer finished sending.", "Peer left.",
          "Left the chat.", "Cipher: ", "Listening for the next peer.",
          "Wrote a new private key to ", "Shared secret (hex) -> ",
          "Connection from ", "Session with ", "Turned ")
# What judge() expects of a listener whose connector failed before the
# session: it listens on (see pair()).
STRAY = "listening on"

# Every wait is cut short near this point, so the whole file stays bounded.
DEADLINE = time.monotonic() + 80
homes = []
procs = []          # every process started, to be killed if left running


def left(seconds):
    """seconds, or less when the file's time is running out."""
    return max(0.5, min(seconds, DEADLINE - time.monotonic()))


def track(p):
    procs.append(p)
    return p


def new_home():
    h = Home()
    homes.append(h)
    return h


def run(args, home, stdin=b"", timeout=15):
    """Run x25519chat to its end; the Proc, with rc None if it overran."""
    p = track(Proc(args, home, stdin=feed(stdin)))
    p.wait(left(timeout))
    return p


def closed_port():
    """A local TCP port that nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def have_hardware_aes():
    """Whether libsodium can run AES-256-GCM here (AES-NI and PCLMUL)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(re.findall(r"^flags\s*:(.*)$", f.read(), re.M)[0]
                        .split())
    except (OSError, IndexError):
        return False
    return {"aes", "pclmulqdq"} <= flags


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


# Keys, computed independently of x25519chat.

def pub_of(priv_text):
    """The public key of a private key's text, or None if it is not one."""
    try:
        raw = base64.b64decode(priv_text.strip(), validate=True)
        pub = X25519PrivateKey.from_private_bytes(raw).public_key()
    except ValueError:
        return None
    return base64.b64encode(pub.public_bytes(Encoding.Raw,
                                            PublicFormat.Raw)).decode()


def new_priv():
    return base64.b64encode(os.urandom(32)).decode()


def write_file(path, data, mode=0o600):
    """Write data (str or bytes) to path with exactly this mode."""
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def key_file(home, name):
    """A new private key file in home; (path, public key)."""
    priv = new_priv()
    return write_file(home.path(name), priv + "\n"), pub_of(priv)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def text_of(path):
    """The text of path, or None if there is no such file."""
    return read(path).decode() if os.path.exists(path) else None


# Judging how a process ended.

def errors(p):
    return [ln for ln in p.err().splitlines() if ln.startswith(PROG)]


def judge(p, who, codes, out=None, words=()):
    """What is wrong with how p ended: its exit status (one of codes), its
    stdout (when out is given), its stderr (status lines, and exactly one
    error line holding every word when it failed).  A list of problems."""
    if isinstance(codes, (int, str)):
        codes = (codes,)
    bad = []
    if p is None:
        return ["%s never ran" % who]
    errs = errors(p)
    if codes == (STRAY,):
        return judge_stray(p, who, out, words)
    if p.rc not in codes:
        bad.append("%s exited %s, expected %s (%r)" % (
            who, p.rc, " or ".join(map(str, codes)), errs))
    if out is not None and p.out() != out:
        bad.append("%s stdout %r, expected %r" % (who, p.out()[:80], out))
    stray = [ln for ln in p.err().splitlines()
             if not ln.startswith(PROG) and not ln.startswith(STATUS)]
    if stray:
        bad.append("%s stderr has stray lines %r" % (who, stray[:3]))
    # The original protocol is no cure for a failure of the default one.
    if (not any(str(a).startswith("--classic") for a in p.p.args) and
            any("--classic" in e for e in errs)):
        bad.append("%s points to --classic: %r" % (who, errs))
    if 0 in codes and p.rc == 0:
        if errs:
            bad.append("%s reported %r" % (who, errs))
    elif len(errs) != 1:
        bad.append("%s printed %d error lines %r" % (who, len(errs), errs))
    else:
        for w in words:
            # A tuple of words: any one of them will do.
            if not any(x in errs[0] for x in (w if isinstance(w, tuple)
                                               else (w,))):
                bad.append("%s error %r lacks %r" % (who, errs[0], w))
    return bad


def judge_stray(p, who, out, words):
    """A listener whose connector failed before its session (a stray) must
    listen on, having printed one line holding every word: an error line
    for a refused key, which is always told, else a status line, which
    only -v shows (without -v, no line at all)."""
    bad = []
    if p.rc != STRAY:
        bad.append("%s exited %s instead of listening on (%r)" % (
            who, p.rc, errors(p)))
    if out is not None and p.out() != out:
        bad.append("%s stdout %r, expected %r" % (who, p.out()[:80], out))
    errs = errors(p)
    verbose = "-v" in p.p.args
    refused = [w for w in words if "--peer" in w or "--allow" in w]
    if refused:
        lines = errs
    else:
        lines = [ln for ln in p.err().splitlines() if all(
            w in ln for w in words)] if verbose else []
        if errs:
            bad.append("%s reported a stray as an error: %r" % (who, errs))
    if words and (verbose or refused) and (
            len(lines) != 1 or not all(w in lines[0] for w in words)):
        bad.append("%s: expected one line holding %r, stderr %r" % (
            who, words, p.err()[-400:]))
    if not words and not verbose and p.err().count("\n") > 3:
        bad.append("%s said more than its start: %r" % (who, p.err()))
    return bad


def fails_with(what, args, code, words, home=None, stdin=b""):
    """Check that x25519chat args fails at once with exit code and one
    error line holding every word, and nothing on stdout."""
    p = run(args, home or new_home(), stdin)
    bad = judge(p, "it", code, b"", words)
    if not bad and p.err().count("\n") != 1:
        bad.append("stderr is not one line: %r" % p.err())
    return check(what, not bad, "; ".join(bad))


def pair(home_l, home_c, largs=(), cargs=(), lin=LDATA, cin=CDATA,
         laddr="127.0.0.1:0", chost="127.0.0.1", stray=False):
    """One listener and one connector, each fed a small stdin; wait for
    both.  (listener, connector); the connector is None and the listener
    killed if the listener never said where it listens.  With stray, the
    connector is to fail before its session: the listener must then be
    listening still (its rc is then STRAY), and is ended."""
    lp, port = listen(home_l, list(largs), stdin=feed(lin), addr=laddr)
    track(lp).port = port
    if port is None:
        lp.kill()
        return lp, None
    cp = track(Proc(["-c", "%s:%d" % (chost, port)] + list(cargs), home_c,
                    stdin=feed(cin)))
    cp.wait(left(15))
    if stray:
        # Not at once: a listener about to exit must be seen doing so.
        if lp.wait(0.3) is None and lp.p.returncode == -signal.SIGKILL:
            lp.rc = STRAY
        return lp, cp
    lp.wait(left(15))
    return lp, cp


def check_pair(what, lp, cp, lcode=0, ccode=0, lwords=(), cwords=()):
    """Judge both ends of pair(); on success each got the other's data,
    on failure neither got anything."""
    if cp is None:
        return check(what, False, "listener did not start: %r" % lp.err())
    lout = CDATA if lcode == 0 else b""
    cout = LDATA if ccode == 0 else b""
    bad = (judge(lp, "listener", lcode, lout, lwords) +
           judge(cp, "connector", ccode, cout, cwords))
    return check(what, not bad, "; ".join(bad))


def peer_key_line(p):
    """(key, rest of the line) of p's 'Peer key:' status line."""
    m = p and re.search(r"^Peer key: (\S+)(.*)$", p.err(), re.M)
    return (m.group(1), m.group(2)) if m else (None, None)


def session_code(p):
    m = p and CODE.search(p.err())
    return m.group(1) if m else None


# 1. Usage.

def test_help_version():
    p = run(["--help"], new_home())
    check("--help prints the usage on stdout and exits 0",
          p.rc == 0 and p.out().startswith(b"usage: x25519chat") and
          b"--known-peers" in p.out() and p.err() == "",
          "exit %s, stdout %r, stderr %r" % (p.rc, p.out()[:60], p.err()))
    m = re.search(r"^VERSION\s*=\s*(\S+)", read(os.path.join(TOP, "Makefile"))
                  .decode(), re.M)
    want = ("x25519chat %s\n" % (m.group(1) if m else "?")).encode()
    p = run(["--version"], new_home())
    check("--version prints 'x25519chat VERSION' and exits 0",
          p.rc == 0 and p.out() == want and p.err() == "",
          "exit %s, stdout %r, expected %r" % (p.rc, p.out(), want))


def test_usage_errors():
    c = "127.0.0.1:1"
    cases = [
        ("no -l or -c", [], ["-l", "-c"]),
        ("-l with -c", ["-l", "0", "-c", c], ["-l", "-c", "combined"]),
        ("-k without -l", ["-k", "-c", c], ["-k needs -l"]),
        ("--known-peers with -l", ["-l", "0", "--known-peers", "f"],
         ["--known-peers"]),
        ("--allow with -c", ["-c", c, "--allow", "f"], ["--allow"]),
        ("-4 with -6", ["-4", "-6", "-c", c], ["-4", "-6"]),
        ("-q with -v", ["-q", "-v", "-c", c], ["-q", "-v"]),
        ("-w twice", ["-w", "5", "-w", "6", "-c", c], ["-w given twice"]),
        ("-l twice", ["-l", "0", "-l", "0"], ["-l given twice"]),
        ("-k twice", ["-k", "-k", "-l", "0"], ["-k given twice"]),
        ("-i twice", ["-i", "a", "-i", "b", "-c", c], ["-i given twice"]),
        ("--classic twice", ["--classic", "--classic", "-c", c],
         ["--classic given twice"]),
        ("unknown short option", ["-x", "-c", c], ["unknown", "-x"]),
        ("unknown long option", ["--bogus", "-c", c], ["unknown", "--bogus"]),
        ("argument to a flag (--classic=1)", ["--classic=1", "-c", c],
         ["--classic"]),
        ("-c without its argument", ["-c"], ["-c", "argument"]),
        ("-w without its argument", ["-c", c, "-w"], ["-w", "argument"]),
        ("--peer without its argument", ["-c", c, "--peer"],
         ["--peer", "argument"]),
        ("an extra operand", ["-c", c, "surplus-word"], ["surplus-word"]),
        ("--keygen with two files", ["--keygen", "a", "surplus-file"],
         ["surplus-file"]),
        ("--keygen with -l", ["--keygen", "-l", "0"], ["--keygen"]),
        ("--keygen and --pubkey", ["--keygen", "--pubkey"],
         ["--keygen", "--pubkey"]),
    ]
    for opt, val in (("-i", "f"), ("-n", "me"), ("--peer", "k"),
                     ("--known-peers", "f"), ("--allow", "f"),
                     ("--psk", "f")):
        role = ["-l", "0"] if opt == "--allow" else ["-c", c]
        cases.append(("--classic with %s" % opt,
                      ["--classic", opt, val] + role, [opt, "--classic"]))
    for w in ("0", "-1", "abc", "86401", "5s"):
        cases.append(("-w %s" % w, ["-w", w, "-c", c], ["-w", w]))
    # --keepalive: 0, or 30 to 86400, in plain decimal digits.
    for w in ("29", "1", "86401", "-1", "x", "", " 30", "30 ", "+30", "30s",
              "99999999999999999999"):
        cases.append(("--keepalive %r" % w, ["--keepalive", w, "-c", c],
                      ["--keepalive", w, "30 to 86400"]))
    # --cipher: one of two words, exactly as written.
    for w in ("AESGCM", "aesgcm ", " aesgcm", "ChaChaPoly", "chacha", "aes",
              "", "aesgcm,chachapoly"):
        cases.append(("--cipher %r" % w, ["--cipher", w, "-c", c],
                      ["--cipher", w, "aesgcm or chachapoly"]))
    cases += [
        ("--keepalive twice", ["--keepalive", "30", "--keepalive", "30",
                               "-c", c], ["--keepalive given twice"]),
        ("--cipher twice", ["--cipher", "aesgcm", "--cipher", "aesgcm",
                            "-c", c], ["--cipher given twice"]),
        ("--keepalive with --classic", ["--classic", "--keepalive", "30",
                                        "-c", c],
         ["--keepalive", "--classic"]),
        ("--keepalive 0 with --classic", ["--keepalive", "0", "--classic",
                                          "-l", "0"],
         ["--keepalive", "--classic"]),
        ("--cipher with --classic", ["--classic", "--cipher", "aesgcm",
                                     "-c", c], ["--cipher", "--classic"]),
        ("--keepalive without its argument", ["-c", c, "--keepalive"],
         ["--keepalive", "argument"]),
        ("--cipher without its argument", ["-c", c, "--cipher"],
         ["--cipher", "argument"]),
        ("--keygen with --cipher", ["--keygen", "f", "--cipher", "aesgcm"],
         ["--keygen"]),
        ("--pubkey with --keepalive", ["--pubkey", "--keepalive", "30"],
         ["--pubkey"]),
    ]
    for addr, word in (("127.0.0.1:0", "port"), ("127.0.0.1:65536", "port"),
                       ("127.0.0.1:abc", "port"), ("127.0.0.1:", "port"),
                       ("localhost", "HOST:PORT"), ("::1:80", "brackets"),
                       ("[::1]", "HOST:PORT"), (":80", "HOST:PORT")):
        cases.append(("-c %s" % addr, ["-c", addr], [addr, word]))
    for addr in ("65536", "127.0.0.1:70000", "x"):
        cases.append(("-l %s" % addr, ["-l", addr], [addr, "port"]))
    for name, label in (("a" * 65, "65 bytes"),
                        ("\u00e9" * 33, "66 UTF-8 bytes"),
                        ("a\x01b", "a control character"),
                        ("\x1b[31mred", "an escape"),
                        ("a\u202eb", "a bidi override")):
        cases.append(("-n with %s" % label, ["-n", name, "-c", c],
                      ["-n", "name"]))
    for key, label in (("abc", "short"), ("*" * 44, "not base64"),
                       (new_priv()[:43] + "x", "44 chars, no padding")):
        cases.append(("--peer %s" % label, ["--peer", key, "-c", c],
                      ["--peer"]))
    for what, args, words in cases:
        fails_with("usage: %s -> exit 2" % what, args, 2, words)


def test_accepted_limits():
    """Values at the edge of what is allowed pass parsing (the connection
    to a closed port then fails with 1, not 2)."""
    h = new_home()
    ident, _ = key_file(h, "id")
    port = closed_port()
    for what, extra in (("-w 1", ["-w", "1"]), ("-w 86400", ["-w", "86400"]),
                        ("-n of 64 bytes", ["-n", "a" * 64]),
                        ("-n of 64 UTF-8 bytes", ["-n", "\u00e9" * 32]),
                        ("--keepalive 0 (no limit)", ["--keepalive", "0"]),
                        ("--keepalive 30", ["--keepalive", "30"]),
                        ("--keepalive 86400", ["--keepalive", "86400"]),
                        ("--cipher chachapoly", ["--cipher", "chachapoly"])):
        fails_with("%s is accepted" % what,
                   extra + ["-i", ident, "-c", "127.0.0.1:%d" % port], 1,
                   ["cannot connect"], home=h)
    # Without hardware AES, libsodium has no AES-256-GCM: refused at once.
    words = ["cannot connect"] if have_hardware_aes() else [
        "--cipher aesgcm", "hardware AES"]
    fails_with("--cipher aesgcm is accepted%s" % (
        "" if have_hardware_aes() else " (and refused: no hardware AES)"),
        ["--cipher", "aesgcm", "-i", ident, "-c", "127.0.0.1:%d" % port], 1,
        words, home=h)


# 2. Addresses.

def test_addresses():
    h_l, h_c = new_home(), new_home()
    lp, cp = pair(h_l, h_c)
    m = LISTENING.search(lp.err())
    check("-l 127.0.0.1:0 says 'Server listening on 127.0.0.1:PORT'",
          m is not None and m.group(1) == "127.0.0.1" and
          int(m.group(2)) > 0, "stderr %r" % lp.err())
    check_pair("127.0.0.1: data goes through both ways", lp, cp)

    if have_ipv6_loopback():
        lp, cp = pair(h_l, h_c, laddr="[::1]:0", chost="[::1]")
        m = LISTENING.search(lp.err())
        check("-l [::1]:0 says 'Server listening on [::1]:PORT'",
              m is not None and m.group(1) == "[::1]", "stderr %r" % lp.err())
        check_pair("[::1]: data goes through both ways", lp, cp)
    else:
        print("SKIP: IPv6 checks: ::1 is not available here", flush=True)

    hosts = ["127.0.0.1"] + (["[::1]"] if have_ipv6_loopback() else [])
    for host in hosts:
        lp, cp = pair(h_l, h_c, laddr="0", chost=host)
        check_pair("-l 0 (all interfaces) accepts %s" % host, lp, cp)

    lp, port = listen(h_l, ["-4"], addr="0")
    track(lp)
    m = LISTENING.search(lp.err())
    lp.kill()
    check("-4 -l 0 listens on 0.0.0.0",
          m is not None and m.group(1) == "0.0.0.0", "stderr %r" % lp.err())

    if have_ipv6_loopback():
        # Hold an IPv4 port without listening on it: a -6 listener can
        # take the same port only if it leaves IPv4 alone, and an IPv4
        # connect to it must then be refused.
        v4 = socket.socket()
        v4.bind(("127.0.0.1", 0))
        port = v4.getsockname()[1]
        lp, got = listen(h_l, ["-6"], addr=str(port))
        track(lp)
        m = LISTENING.search(lp.err())
        bad = [] if m and m.group(1) == "[::]" and got == port else [
            "listener: %r" % lp.err()]
        cp = run(["-c", "127.0.0.1:%d" % port, "-w", "3"], h_c)
        v4.close()
        lp.kill()
        bad += judge(cp, "connector", 1, b"", ["cannot connect"])
        check("-6 -l PORT listens on [::] only: an IPv4 connect fails with 1",
              not bad, "; ".join(bad))

    port = closed_port()
    fails_with("connecting to a closed port -> exit 1",
               ["-c", "127.0.0.1:%d" % port], 1,
               ["cannot connect", str(port)], home=h_c)
    fails_with("connecting to no-such-host.invalid -> exit 1",
               ["-c", "no-such-host.invalid:1"], 1,
               ["no-such-host.invalid"], home=h_c)


# 3. Identity and key files.

def test_default_identity():
    h_l, h_c = new_home(), new_home()
    lp, cp = pair(h_l, h_c)
    check_pair("first run with a new identity works", lp, cp)
    d = h_l.path("x25519chat")
    ident = os.path.join(d, "identity")
    if not check("first use creates $XDG_CONFIG_HOME/x25519chat/identity",
                 os.path.isfile(ident), "no file %s" % ident):
        return
    check("the x25519chat directory has mode 0700", mode_of(d) == 0o700,
          "mode %04o" % mode_of(d))
    check("the identity has mode 0600", mode_of(ident) == 0o600,
          "mode %04o" % mode_of(ident))
    text = read(ident).decode("ascii", "replace")
    check("the identity is 44 base64 characters and a newline",
          text.endswith("\n") and text.count("\n") == 1 and
          KEYTEXT.match(text[:-1]) is not None, "content %r" % text)
    pub = pub_of(text)
    notes = [ln for ln in lp.err().splitlines()
             if ln.startswith("Created a new identity in ")]
    check("one notice 'Created a new identity in PATH' naming its key",
          len(notes) == 1 and ident in notes[0] and pub is not None and
          pub in notes[0],
          "notices %r, expected path %s and key %s" % (notes, ident, pub))
    check("the peer is shown the new identity's public key",
          peer_key_line(cp)[0] == pub,
          "connector shows %r, expected %s" % (peer_key_line(cp)[0], pub))

    lp, cp = pair(h_l, h_c)
    check_pair("second run with the same identity works", lp, cp)
    check("second run reuses the identity silently",
          "Created a new identity" not in lp.err() and read(ident).decode()
          == text, "stderr %r" % lp.err())
    check("second run shows the peer the same public key",
          peer_key_line(cp)[0] == pub,
          "connector shows %r, expected %s" % (peer_key_line(cp)[0], pub))
    p = run(["--pubkey"], h_l)
    check("--pubkey without FILE prints the default identity's key",
          p.rc == 0 and pub is not None and p.out() == (pub + "\n").encode(),
          "exit %s, stdout %r, expected %s" % (p.rc, p.out(), pub))


def test_keygen_pubkey():
    h = new_home()
    path = h.path("id")
    p = run(["--keygen", path], h)
    out = p.out().decode("ascii", "replace")
    ok = (p.rc == 0 and out.endswith("\n") and out.count("\n") == 1 and
          KEYTEXT.match(out[:-1]) is not None)
    check("--keygen FILE prints one public key (44 characters)", ok,
          "exit %s, stdout %r, stderr %r" % (p.rc, out, p.err()))
    if not os.path.isfile(path):
        check("--keygen FILE writes FILE", False, "no file")
        return
    check("--keygen FILE writes it with mode 0600", mode_of(path) == 0o600,
          "mode %04o" % mode_of(path))
    text = read(path)
    check("--keygen FILE writes 44 base64 characters and a newline",
          len(text) == 45 and text.endswith(b"\n") and
          KEYTEXT.match(text[:-1].decode("ascii", "replace")) is not None,
          "content %r" % text)
    check("--keygen's printed key is the file's public key",
          pub_of(text.decode("ascii", "replace")) == out.strip(),
          "printed %r, computed %s" % (out, pub_of(text.decode("ascii",
                                                               "replace"))))
    p = run(["--pubkey", path], h)
    check("--pubkey FILE prints what --keygen printed",
          p.rc == 0 and p.out().decode() == out,
          "exit %s, stdout %r, expected %r" % (p.rc, p.out(), out))
    p = run(["--pubkey", "-"], h, stdin=text)
    check("--pubkey - reads the private key from stdin",
          p.rc == 0 and p.out().decode() == out,
          "exit %s, stdout %r, expected %r" % (p.rc, p.out(), out))
    fails_with("--pubkey - with a bad key on stdin -> exit 1",
               ["--pubkey", "-"], 1, ["not a valid"], home=h,
               stdin=b"not a key\n")

    fails_with("--keygen refuses to overwrite an existing file",
               ["--keygen", path], 1, [path, "overwrite"], home=h)
    check("the refused --keygen left the file unchanged",
          read(path) == text and mode_of(path) == 0o600, "file changed")
    target = h.path("target")
    os.symlink(target, h.path("link"))
    fails_with("--keygen refuses a symlink (even a dangling one)",
               ["--keygen", h.path("link")], 1, ["link"], home=h)
    check("the refused --keygen created nothing through the symlink",
          not os.path.exists(target), "%s exists" % target)
    fails_with("--keygen - is a usage error", ["--keygen", "-"], 2,
               ["--keygen"], home=h)

    h2 = new_home()
    p = run(["--keygen"], h2)
    ident = h2.path("x25519chat", "identity")
    ok = (p.rc == 0 and os.path.isfile(ident) and
          mode_of(ident) == 0o600 and
          mode_of(h2.path("x25519chat")) == 0o700)
    check("--keygen without FILE writes the default identity (0600 in 0700)",
          ok, "exit %s, stderr %r" % (p.rc, p.err()))
    if ok:
        check("--keygen without FILE prints the default identity's key",
              p.out().decode() == "%s\n" % pub_of(read(ident).decode()),
              "stdout %r" % p.out())
        fails_with("--keygen without FILE refuses to replace the identity",
                   ["--keygen"], 1, ["overwrite"], home=h2)


def test_wireguard_format():
    h = new_home()
    priv = new_priv()
    path = write_file(h.path("wg.key"), priv + "\n")
    p = run(["--pubkey", path], h)
    check("--pubkey of WireGuard-style key text gives the X25519 public key",
          p.rc == 0 and p.out() == (pub_of(priv) + "\n").encode(),
          "exit %s, stdout %r, expected %s" % (p.rc, p.out(), pub_of(priv)))
    if shutil.which("wg") is None:
        return
    wg = subprocess.run(["wg", "pubkey"], input=(priv + "\n").encode(),
                        capture_output=True, timeout=5)
    check("--pubkey agrees with wg pubkey", wg.returncode == 0 and
          wg.stdout == p.out(), "wg said %r, x25519chat %r" %
          (wg.stdout, p.out()))
    gen = subprocess.run(["wg", "genkey"], capture_output=True, timeout=5)
    path = write_file(h.path("wg2.key"), gen.stdout)
    p = run(["--pubkey", path], h)
    wg = subprocess.run(["wg", "pubkey"], input=gen.stdout,
                        capture_output=True, timeout=5)
    check("--pubkey reads a wg genkey file as wg pubkey does",
          p.rc == 0 and gen.returncode == 0 and p.out() == wg.stdout,
          "wg said %r, x25519chat %r (%s)" % (wg.stdout, p.out(), p.err()))


def test_key_file_checks():
    h = new_home()
    port = closed_port()
    conn = ["-c", "127.0.0.1:%d" % port, "-w", "2"]
    ident, _ = key_file(h, "ident")
    priv = new_priv()

    for mode in (0o640, 0o644, 0o604, 0o620, 0o602):
        f = write_file(h.path("open%o" % mode), priv + "\n", mode)
        # Say what the others can do with it.
        can = "read" if mode & 0o044 else "change"
        for what, args in (("-i", ["-i", f] + conn),
                           ("--pubkey", ["--pubkey", f]),
                           ("--psk", ["-i", ident, "--psk", f] + conn)):
            fails_with("%s refuses a key file with mode %04o: others can %s"
                       % (what, mode, can), args, 1,
                       [f, "permissions", "others can %s" % can], home=h)

    good = pub_of(priv) + "\n"
    f = write_file(h.path("nonl"), priv)
    p = run(["--pubkey", f], h)
    check("a key file of 44 characters without a newline is accepted",
          p.rc == 0 and p.out() == good.encode(),
          "exit %s, stdout %r, stderr %r" % (p.rc, p.out(), p.err()))
    raw = base64.b64decode(priv)
    bad = [("trailing garbage", priv + "\nextra\n"),
           ("a trailing space", priv + " \n"),
           ("a leading space", " " + priv + "\n"),
           ("43 characters", priv[:43] + "\n"),
           ("two newlines", priv + "\n\n"),
           ("CRLF", priv + "\r\n"),
           ("URL-safe base64",
            base64.urlsafe_b64encode(b"\xfb\xff" + raw[2:]).decode() + "\n"),
           ("unused low bits set in the last character",
            priv[:42] + B64[B64.index(priv[42]) | 1] + "=\n"),
           ("an empty file", ""),
           ("64 hex digits", raw.hex() + "\n")]
    # Text longer than a key line may be refused for its size instead.
    invalid = ("not a valid", "too large")
    for i, (label, text) in enumerate(bad):
        f = write_file(h.path("bad%d" % i), text)
        fails_with("--pubkey refuses a key file with %s" % label,
                   ["--pubkey", f], 1, [f, invalid], home=h)
    f = write_file(h.path("bad-i"), priv + "\nextra\n")
    fails_with("-i refuses a key file with trailing garbage",
               ["-i", f] + conn, 1, [f, invalid], home=h)
    f = write_file(h.path("bad-psk"), priv + "\r\n")
    fails_with("--psk refuses a key file with CRLF",
               ["-i", ident, "--psk", f] + conn, 1, [f, "not a valid"],
               home=h)
    fails_with("-i with a missing file -> exit 1",
               ["-i", h.path("missing")] + conn, 1,
               [h.path("missing"), "No such file"], home=h)
    os.mkdir(h.path("dir"), 0o700)
    fails_with("-i with a directory -> exit 1",
               ["-i", h.path("dir")] + conn, 1, [h.path("dir"), "regular"],
               home=h)
    fails_with("--psk with a missing file -> exit 1",
               ["-i", ident, "--psk", h.path("nopsk")] + conn, 1,
               [h.path("nopsk")], home=h)


# 4. Trust.

def test_known_peers():
    h_l, h_c = new_home(), new_home()
    lkey, lpub = key_file(h_l, "listener.key")
    lp, cp = pair(h_l, h_c, ["-i", lkey])
    check_pair("known_peers: first contact works", lp, cp)
    if cp is None:
        return
    port = lp.port
    known = h_c.path("x25519chat", "known_peers")
    entry = "127.0.0.1:%d %s\n" % (port, lpub)
    got = text_of(known)
    check("first contact records 'HOST:PORT KEY' in known_peers",
          got == entry, "known_peers %r, expected %r" % (got, entry))
    check("first contact is announced, naming the file",
          "First contact with 127.0.0.1:%d" % port in cp.err() and
          known in cp.err(), "stderr %r" % cp.err())

    lp, cp = pair(h_l, h_c, ["-i", lkey], laddr="127.0.0.1:%d" % port)
    check_pair("known_peers: the same key again works", lp, cp)
    check("the next contact is silent and adds no line",
          cp is not None and "First contact" not in cp.err() and
          text_of(known) == entry,
          "stderr %r, known_peers %r" % (cp and cp.err(), text_of(known)))

    other, opub = key_file(h_l, "other.key")
    lp, cp = pair(h_l, h_c, ["-i", other, "-v"], laddr="127.0.0.1:%d" % port,
                  stray=True)
    bad = judge(cp, "connector", 3, b"", ["CHANGED", lpub, opub])
    bad += judge(lp, "listener", STRAY, b"", ["closed during the handshake"])
    if "Peer key:" in lp.err():
        bad.append("the listener completed the handshake: %r" % lp.err())
    check("a changed key on the same HOST:PORT -> connector 3, 'CHANGED', "
          "no data either way", cp is not None and not bad, "; ".join(bad))
    check("the changed key left known_peers unchanged",
          text_of(known) == entry, "known_peers %r" % text_of(known))

    # The same with an edited file: a different recorded key.
    kp = h_c.path("kp")
    _, fake = key_file(h_l, "fake.key")
    lines = "# mine\n10.0.0.1:22 %s\n" % fake
    lp, cp = pair(h_l, h_c, ["-i", lkey], ["--known-peers", kp])
    check_pair("--known-peers FILE: first contact works", lp, cp)
    if cp is not None:
        rec = "127.0.0.1:%d %s\n" % (lp.port, lpub)
        check("--known-peers FILE gets the entry, the default file not",
              text_of(kp) == rec and text_of(known) == entry,
              "FILE %r, default %r" % (text_of(kp), text_of(known)))
        write_file(kp, lines + "127.0.0.1:%d %s\n" % (lp.port, fake))
        before = read(kp)
        lp, cp = pair(h_l, h_c, ["-i", lkey], ["--known-peers", kp],
                      laddr="127.0.0.1:%d" % lp.port, stray=True)
        bad = judge(cp, "connector", 3, b"", ["CHANGED", "%s line 3" % kp])
        bad += judge(lp, "listener", STRAY, b"", [])
        check("an edited known_peers line with another key -> 3 naming "
              "the line", cp is not None and not bad, "; ".join(bad))
        check("that refusal left the file unchanged", read(kp) == before,
              "file %r" % read(kp))

    # A file edited by hand may lack its last newline: the new entry
    # must still get a line of its own.
    nonl = h_c.path("nonl")
    write_file(nonl, "10.0.0.1:22 %s" % fake)
    lp, cp = pair(h_l, h_c, ["-i", lkey], ["--known-peers", nonl])
    check_pair("--known-peers FILE without a last newline: first contact "
               "works", lp, cp)
    if cp is not None:
        want = "10.0.0.1:22 %s\n127.0.0.1:%d %s\n" % (fake, lp.port, lpub)
        check("the entry goes on a line of its own after a last line "
              "without newline", text_of(nonl) == want,
              "file %r, expected %r" % (text_of(nonl), want))
        lp, cp = pair(h_l, h_c, ["-i", lkey], ["--known-peers", nonl],
                      laddr="127.0.0.1:%d" % lp.port)
        check_pair("that file still works for the next contact", lp, cp)

    write_file(kp, lines + "this is not a line\n")
    # The file is read before connecting: the listener never hears of it.
    lp, port = listen(h_l, ["-i", lkey], stdin=feed(LDATA))
    track(lp)
    cp = track(Proc(["-c", "127.0.0.1:%d" % port, "--known-peers", kp],
                    h_c, stdin=feed(CDATA)))
    cp.wait(left(15))
    time.sleep(0.2)
    bad = judge(cp, "connector", 1, b"", ["%s:3" % kp])
    if not lp.alive() or "connected" in lp.err():
        bad.append("the connector reached the listener: %r" % lp.err())
    lp.kill()
    check("a malformed known_peers line -> connector 1 naming FILE:LINE "
          "in one error line, before connecting", port is not None and
          not bad, "; ".join(bad))


def test_peer_option():
    h_l, h_c = new_home(), new_home()
    lkey, lpub = key_file(h_l, "l.key")
    ckey, cpub = key_file(h_c, "c.key")
    _, wrong = key_file(h_c, "w.key")
    base_l, base_c = ["-i", lkey], ["-i", ckey]

    lp, cp = pair(h_l, h_c, base_l, base_c + ["--peer", lpub])
    check_pair("connector --peer with the right key works", lp, cp)

    lp, cp = pair(h_l, h_c, base_l, base_c + ["--peer", wrong], stray=True)
    bad = judge(cp, "connector", 3, b"", ["--peer", lpub])
    bad += judge(lp, "listener", STRAY, b"", [])
    if "Peer key:" in lp.err():
        bad.append("the listener completed the handshake: %r" % lp.err())
    check("connector --peer with a wrong key -> 3 before its third "
          "handshake message", cp is not None and not bad, "; ".join(bad))

    lp, cp = pair(h_l, h_c, base_l + ["--peer", cpub], base_c)
    check_pair("listener --peer with the right key works", lp, cp)

    lp, cp = pair(h_l, h_c, base_l + ["--peer", wrong], base_c, stray=True)
    check_pair("listener --peer with a wrong key -> connector 3, no data; "
               "the listener says so and listens on",
               lp, cp, STRAY, 3, ["--peer", cpub], ["refused"])


def test_allow():
    h_l, h_c = new_home(), new_home()
    lkey, _ = key_file(h_l, "l.key")
    ckey, cpub = key_file(h_c, "c.key")
    stranger, spub = key_file(h_c, "s.key")
    _, other = key_file(h_l, "o.key")
    allow = write_file(h_l.path("allow"),
                       "# who may connect\n\n%s   laptop\n  \t\n%s\n"
                       % (other, cpub), 0o644)

    lp, cp = pair(h_l, h_c, ["-i", lkey, "--allow", allow], ["-i", ckey])
    check_pair("--allow: a listed key works (comments, blank lines)", lp, cp)
    lp, cp = pair(h_l, h_c, ["-i", lkey, "--allow", allow],
                  ["-i", stranger], stray=True)
    check_pair("--allow: an unlisted key -> connector 3, no data; the "
               "listener says so and listens on", lp, cp, STRAY, 3,
               ["not in the --allow list", spub], ["refused"])

    # -k: a refused peer, then a listed one on the same listener.
    lp, port = listen(h_l, ["-k", "-i", lkey, "--allow", allow],
                      stdin=feed(LDATA))
    track(lp)
    if port is None:
        lp.kill()
        check("--allow -k: refused then served", False,
              "listener did not start: %r" % lp.err())
    else:
        c1 = track(Proc(["-c", "127.0.0.1:%d" % port, "-i", stranger],
                        h_c, stdin=feed(CDATA)))
        c1.wait(left(15))
        c2 = track(Proc(["-c", "127.0.0.1:%d" % port, "-i", ckey], h_c,
                        stdin=feed(b"second\n")))
        c2.wait(left(15))
        # The listed peer may leave before the listener has written its
        # data out: wait (bounded) for the end of that session.
        deadline = time.monotonic() + left(5)
        while ("Peer finished sending." not in lp.err() and lp.alive() and
               time.monotonic() < deadline):
            time.sleep(0.02)
        alive = lp.alive()
        lp.kill()
        bad = judge(c1, "refused connector", 3, b"", ["refused"])
        bad += judge(c2, "listed connector", 0, LDATA)
        if not alive:
            bad.append("-k listener exited (%s)" % lp.rc)
        if lp.out() != b"second\n":
            bad.append("listener stdout %r" % lp.out())
        if len(errors(lp)) != 1 or "--allow" not in lp.err():
            bad.append("listener errors %r" % errors(lp))
        check("--allow -k: after a refused peer the next is served",
              not bad, "; ".join(bad))

    f = write_file(h_l.path("allow-bad"), "# list\n%s\nnot-a-key x\n" % cpub)
    fails_with("--allow with a malformed line -> 1 naming FILE:LINE",
               ["-l", "127.0.0.1:0", "-i", lkey, "--allow", f], 1,
               ["%s:3" % f], home=h_l)
    # Names: the grammar's edges are accepted, in one file with CRLF
    # line ends and a comment after a name...
    keys = [key_file(h_l, "n%d.key" % i)[1] for i in range(4)]
    f = write_file(h_l.path("allow-names"), "\r\n".join([
        "%s _" % keys[0], "%s carol.b-2 # a comment" % keys[1],
        "%s\t0x\t# tabs around a name" % keys[2],
        "%s Z # the same key, the same name" % keys[3],
        "%s Z" % keys[3], "%s %s" % (cpub, "n" * 32)]) + "\r\n")
    lp, cp = pair(h_l, h_c, ["-i", lkey, "--allow", f], ["-i", ckey])
    check_pair("--allow: names of 1 and 32 characters, '_', '.', '-', a "
               "comment after a name, CRLF line ends, a key listed twice "
               "under one name", lp, cp)
    # ... and each near miss is refused, naming the file and its line.
    for bad, why in (("n" * 33, "a name of 33 characters"),
                     ("-carol", "a name starting with '-'"),
                     (".carol", "a name starting with '.'"),
                     ("carol]", "a name with ']'"),
                     ("car\u00f6l", "a name with a letter outside ASCII"),
                     ("carol\u2066", "a name with a bidi isolate"),
                     ("carol#x", "a name with '#' inside"),
                     ("carol x", "two words after the key"),
                     ("Z", "the first key again, its name in other case")):
        f = write_file(h_l.path("allow-bad-name"), "%s Z\n%s %s\n" % (
            cpub, cpub if bad == "Z" else keys[0], bad
            if bad != "Z" else "z"))
        fails_with("--allow with %s -> 1 naming FILE:LINE" % why,
                   ["-l", "127.0.0.1:0", "-i", lkey, "--allow", f], 1,
                   ["%s:2" % f], home=h_l)
    f = write_file(h_l.path("allow-empty"), "")
    fails_with("--allow with an empty file -> 1",
               ["-l", "127.0.0.1:0", "-i", lkey, "--allow", f], 1, [f],
               home=h_l)
    f = write_file(h_l.path("allow-comments"), "# nobody\n\n")
    fails_with("--allow with only comments -> 1",
               ["-l", "127.0.0.1:0", "-i", lkey, "--allow", f], 1, [f],
               home=h_l)
    fails_with("--allow with a missing file -> 1",
               ["-l", "127.0.0.1:0", "-i", lkey, "--allow",
                h_l.path("nope")], 1, [h_l.path("nope")], home=h_l)


def test_psk():
    h_l, h_c = new_home(), new_home()
    lkey, _ = key_file(h_l, "l.key")
    ckey, _ = key_file(h_c, "c.key")
    psk_l, _ = key_file(h_l, "psk")
    psk_c = write_file(h_c.path("psk"), read(psk_l))
    psk_x, _ = key_file(h_c, "psk-other")
    base_l, base_c = ["-i", lkey], ["-i", ckey]

    lp, cp = pair(h_l, h_c, base_l + ["--psk", psk_l],
                  base_c + ["--psk", psk_c])
    check_pair("--psk: the same PSK on both sides works", lp, cp)
    lp, cp = pair(h_l, h_c, base_l + ["--psk", psk_l, "-v"],
                  base_c + ["--psk", psk_x], stray=True)
    check_pair("--psk: different PSKs -> connector 3, no data; the "
               "listener says so with -v and listens on", lp, cp, STRAY, 3,
               ["psk"], ["pre-shared key"])
    # The hello refuses before any cryptography, and says why on both sides.
    for side, largs, cargs, cwords, lwords in (
            ("listener", ["--psk", psk_l], [],
             "the listener requires a pre-shared key (--psk)",
             "it has no pre-shared key, and we require one"),
            ("connector", [], ["--psk", psk_c],
             "the listener has no pre-shared key (leave out --psk)",
             "it offered a pre-shared key, and we have none")):
        lp, cp = pair(h_l, h_c, base_l + largs + ["-v"], base_c + cargs,
                      stray=True)
        bad = []
        if cp is None:
            bad.append("listener did not start")
        else:
            bad = (judge(lp, "listener", STRAY, b"", ["refused 127.0.0.1:",
                                                      lwords]) +
                   judge(cp, "connector", 3, b"", [
                       "127.0.0.1:%d refused the connection: %s"
                       % (lp.port, cwords)]))
            if "Peer key:" in lp.err() + cp.err():
                bad.append("a handshake was completed")
        check("--psk only on the %s -> connector 3, no data, refused in "
              "the hello: '%s'; the listener listens on" % (side, cwords),
              not bad, "; ".join(bad))


def cipher_shown(p):
    """The suite p says it uses with -v ("Cipher: NAME"), or None."""
    m = p and re.search(r"^Cipher: (\S+)$", p.err(), re.M)
    return m.group(1) if m else None


def test_ciphers():
    h_l, h_c = new_home(), new_home()
    lkey, _ = key_file(h_l, "l.key")
    ckey, _ = key_file(h_c, "c.key")
    aes = have_hardware_aes()
    # (listener --cipher, connector --cipher, the suite both must use);
    # AESGCM whenever both sides may and can run it.
    cases = [(None, "chachapoly", "ChaChaPoly"),
             ("chachapoly", None, "ChaChaPoly"),
             ("chachapoly", "chachapoly", "ChaChaPoly")]
    if aes:
        cases += [(None, None, "AESGCM"), ("aesgcm", None, "AESGCM"),
                  (None, "aesgcm", "AESGCM"), ("aesgcm", "aesgcm", "AESGCM")]
    else:
        cases += [(None, None, "ChaChaPoly")]
        print("SKIP: --cipher aesgcm sessions: this CPU has no AES-NI",
              flush=True)

    def opt(c):
        return ["--cipher", c] if c else []

    for lc, cc, suite in cases:
        lp, cp = pair(h_l, h_c, ["-v", "-i", lkey] + opt(lc),
                      ["-v", "-i", ckey] + opt(cc))
        what = "listener %s, connector %s: both use %s" % (
            "--cipher " + lc if lc else "without --cipher",
            "--cipher " + cc if cc else "without --cipher", suite)
        if check_pair(what + ": data goes through", lp, cp) and cp:
            check(what + ": -v says 'Cipher: %s' on both sides" % suite,
                  cipher_shown(lp) == suite and cipher_shown(cp) == suite,
                  "listener %r, connector %r" % (cipher_shown(lp),
                                                 cipher_shown(cp)))
    if not aes:
        return
    for lc, cc in (("chachapoly", "aesgcm"), ("aesgcm", "chachapoly")):
        lp, cp = pair(h_l, h_c, ["-i", lkey, "--cipher", lc, "-v"],
                      ["-i", ckey, "--cipher", cc], stray=True)
        bad = ["listener did not start"] if cp is None else (
            judge(lp, "listener", STRAY, b"", ["refused 127.0.0.1:",
                                           "it offers no cipher we may use"]) +
            judge(cp, "connector", 3, b"", [
                "127.0.0.1:%d refused the connection: the listener has no "
                "cipher in common with us" % lp.port]))
        check("listener --cipher %s, connector --cipher %s -> connector 3, "
              "refused in the hello, no data; the listener listens on"
              % (lc, cc), not bad,
              "; ".join(bad))


class FakeListener:
    """Accepts one connection, reads the connector's hello (frame 1) and
    answers with reply, then reads until the connector closes."""

    def __init__(self, reply):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(left(10))
        self.port = self.srv.getsockname()[1]
        self.reply = reply
        self.hello = b""
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        finally:
            self.srv.close()
        with conn:
            conn.settimeout(left(10))
            try:
                while len(self.hello) < 7:
                    b = conn.recv(7 - len(self.hello))
                    if not b:
                        return
                    self.hello += b
                conn.sendall(self.reply)
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    def join(self):
        self.t.join(left(10))


def test_refusals():
    """Each reason a listener may give in frame 2, with the words the
    connector must print and its exit status (1 only for busy)."""
    h = new_home()
    ident, _ = key_file(h, "id")
    reasons = {
        1: "the listener does not speak this version of the protocol",
        2: "the listener has no cipher in common with us",
        3: "the listener requires a pre-shared key (--psk)",
        4: "the listener has no pre-shared key (leave out --psk)",
        5: "the listener is busy",
        6: "the listener does not know the mode we asked for",
        7: "the listener requires a short code",
        8: "the listener has no short code",
        9: "this short code was already used",
    }
    for reason, words in sorted(reasons.items()):
        fake = FakeListener(struct.pack(">IBB", 2, 0, reason))
        p = run(["-i", ident, "-w", "5", "-c", "127.0.0.1:%d" % fake.port],
                h)
        fake.join()
        code = 1 if reason == 5 else 3
        bad = judge(p, "connector", code, b"", [
            "127.0.0.1:%d refused the connection: %s" % (fake.port, words)])
        if not bad and not errors(p)[0].endswith(words):
            bad.append("error %r has more words after the reason"
                       % errors(p)[0])
        if fake.hello[:5] != b"\x00\x00\x00\x03\x02":
            bad.append("the hello was %r" % fake.hello)
        check("a refusal with reason %d in frame 2 -> connector %d, '%s'"
              % (reason, code, words), not bad, "; ".join(bad))
    # Near misses: not a refusal the connector knows, or no refusal at all.
    for label, reply in (("reason 0", struct.pack(">IBB", 2, 0, 0)),
                         ("reason 10", struct.pack(">IBB", 2, 0, 10)),
                         ("reason 255", struct.pack(">IBB", 2, 0, 255)),
                         ("3 bytes", struct.pack(">IBBB", 3, 0, 5, 0))):
        fake = FakeListener(reply)
        p = run(["-i", ident, "-w", "5", "-c", "127.0.0.1:%d" % fake.port],
                h)
        fake.join()
        bad = judge(p, "connector", 3, b"", ["malformed hello"])
        if any("refused the connection" in e for e in errors(p)):
            bad.append("it took that for a refusal: %r" % errors(p))
        check("a frame 2 of %s is a malformed hello -> connector 3" % label,
              not bad, "; ".join(bad))

    # The original protocol's listener speaks first, with its raw key.
    lp, port = listen(h, ["--classic"])
    track(lp)
    cp = run(["-i", ident, "-w", "5", "-c", "127.0.0.1:%d" % port], h)
    lp.wait(left(10))
    bad = judge(cp, "connector", 3, b"", ["malformed hello"])
    check("a default connector meeting a --classic listener -> 3, "
          "'malformed hello', no hint at --classic", port is not None and
          not bad, "; ".join(bad))


def test_names_and_codes():
    h_l, h_c = new_home(), new_home()
    lkey, lpub = key_file(h_l, "l.key")
    ckey, cpub = key_file(h_c, "c.key")
    lp, cp = pair(h_l, h_c, ["-i", lkey, "-n", "alice-box"],
                  ["-i", ckey, "-n", "bob's laptop \u00e9"])
    check_pair("-n on both sides works", lp, cp)
    if cp is None:
        return
    check("the connector shows 'Peer key: KEY (\"NAME\")' of the listener",
          peer_key_line(cp) == (lpub, ' ("alice-box")'),
          "got %r" % (peer_key_line(cp),))
    check("the listener shows 'Peer key: KEY (\"NAME\")' of the connector",
          peer_key_line(lp) == (cpub, ' ("bob\'s laptop \u00e9")'),
          "got %r" % (peer_key_line(lp),))
    a, b = session_code(lp), session_code(cp)
    check("both sides print the same session code xxxx-xxxx-xxxx-xxxx on "
          "a line that says to compare it", a is not None and a == b,
          "listener %r, connector %r; stderr %r" % (
              a, b, [ln for ln in lp.err().splitlines()
                     if ln.startswith("Session code")]))
    first = a
    lp, cp = pair(h_l, h_c, ["-i", lkey], ["-i", ckey])
    check_pair("without -n it works too", lp, cp)
    if cp is not None:
        check("without -n the peer's key line has no name",
              peer_key_line(cp) == (lpub, "") and
              peer_key_line(lp) == (cpub, ""),
              "got %r / %r" % (peer_key_line(cp), peer_key_line(lp)))
        a, b = session_code(lp), session_code(cp)
        check("each session has its own code", a is not None and a == b
              and a != first, "first %r, then %r / %r" % (first, a, b))
    # -q prints no status, so the code is not even computed.  A quiet
    # listener does not say where it listens: give it a port.
    port = closed_port()
    lp = track(Proc(["-q", "-i", lkey, "-l", "127.0.0.1:%d" % port], h_l,
                    stdin=feed(LDATA)))
    deadline = time.monotonic() + left(5)
    while not listening_on(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    cp = track(Proc(["-q", "-i", ckey, "-c", "127.0.0.1:%d" % port], h_c,
                    stdin=feed(CDATA)))
    cp.wait(left(15))
    lp.wait(left(15))
    if check_pair("with -q on both sides it works", lp, cp):
        check("with -q neither side prints anything on stderr",
              lp.err() == "" and cp.err() == "",
              "listener %r, connector %r" % (lp.err(), cp.err()))


def listening_on(port):
    """Whether a TCP socket listens on 127.0.0.1 or 0.0.0.0 at port."""
    try:
        with open("/proc/net/tcp") as f:
            rows = [ln.split() for ln in f.readlines()[1:]]
    except OSError:
        return False
    return any(r[1] in ("0100007F:%04X" % port, "00000000:%04X" % port) and
               r[3] == "0A" for r in rows)


# 5. Terminals and closed descriptors.

def test_terminal_stdin():
    """stdin a terminal, stdout not: a pipe, not a chat ("-l PORT > file"
    typed at a shell); it ends when the peer is done, no Ctrl-D needed."""
    h_l, h_c = new_home(), new_home()
    master, slave = pty.openpty()
    try:
        lp, port = listen(h_l, stdin=slave)
        track(lp)
        data = os.urandom(300000)
        cp = track(Proc(["-c", "127.0.0.1:%d" % port], h_c,
                        stdin=feed(data)))
        cp.wait(left(15))
        lp.wait(left(15))
        bad = judge(lp, "listener", 0, data) + judge(cp, "connector", 0, b"")
        check("'-l PORT > file' at a terminal: the file gets the bytes "
              "exactly, no prompt, and it exits 0 when the peer is done",
              port is not None and not bad, "; ".join(bad))

        # Typed lines go out as typed, and the peer's end ends it.
        lp, port = listen(h_l, stdin=slave)
        track(lp)
        os.write(master, b"typed at the terminal\n")
        cp = track(Proc(["-c", "127.0.0.1:%d" % port], h_c,
                        stdin=subprocess.PIPE))
        deadline = time.monotonic() + left(10)
        while cp.out() == b"" and time.monotonic() < deadline:
            time.sleep(0.05)
        cp.p.stdin.close()
        cp.wait(left(15))
        lp.wait(left(15))
        bad = (judge(lp, "listener", 0, b"") +
               judge(cp, "connector", 0, b"typed at the terminal\n"))
        check("stdin a terminal, stdout a file: typed lines reach the peer "
              "as bytes, and the peer's end ends the session", not bad,
              "; ".join(bad))
    finally:
        os.close(master)
        os.close(slave)


def closed_stdout(args, home, stdin):
    """x25519chat args started with its stdout closed."""
    return track(Proc(args, home, stdin=stdin, preexec=lambda: os.close(1)))


def test_closed_stdout():
    """What the peer sends must not vanish into a closed stdout."""
    h_l, h_c = new_home(), new_home()
    lp, port = listen(h_l)
    track(lp)
    cp = closed_stdout(["-c", "127.0.0.1:%d" % port], h_c, feed(b""))
    cp.wait(left(15))
    lp.wait(left(15))
    bad = judge(cp, "connector", 0) + judge(lp, "listener", 0, b"")
    check("stdout closed and nothing arrives: exit 0", port is not None and
          not bad, "; ".join(bad))

    lp, port = listen(h_l, stdin=feed(LDATA))
    track(lp)
    cp = closed_stdout(["-c", "127.0.0.1:%d" % port], h_c, feed(b""))
    cp.wait(left(15))
    lp.wait(left(15))
    bad = judge(cp, "connector", 1, None, ["write to stdout: Bad file "
                                           "descriptor"])
    check("stdout closed and data arrives: exit 1, 'write to stdout: Bad "
          "file descriptor'", port is not None and not bad, "; ".join(bad))
    # The failure goes to the peer at once, as an ERROR with its reason.
    bad = judge(lp, "listener", 5, b"", ["peer failed: write to stdout: "
                                         "Bad file descriptor"])
    check("and the peer that sent the data exits 5, 'peer failed: write "
          "to stdout: Bad file descriptor'", port is not None and not bad,
          "; ".join(bad))


def main():
    try:
        test_help_version()
        test_usage_errors()
        test_accepted_limits()
        test_addresses()
        test_default_identity()
        test_keygen_pubkey()
        test_wireguard_format()
        test_key_file_checks()
        test_known_peers()
        test_peer_option()
        test_allow()
        test_psk()
        test_ciphers()
        test_refusals()
        test_names_and_codes()
        test_terminal_stdin()
        test_closed_stdout()
    finally:
        for p in procs:
            p.kill()
        for h in homes:
            h.cleanup()
    finish()


if __name__ == "__main__":
    main()
