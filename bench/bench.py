"""x25519chat beside plain TCP, socat/OpenSSL TLS 1.3, ncat --ssl and spiped,
measured in one run under the same conditions, and printed as one table.

- Bulk: BENCH_BYTES (default 1 GiB) of text lines (65535 bytes each and a
  newline, so that --classic carries them unchanged) from a file in memory
  (/dev/shm) on the sender's stdin, over loopback, into a pipe to cmp,
  which checks every byte against that file.  Each tool runs
  BENCH_ROUNDS times (default 5), the tools taking turns; the table shows
  the median.
- Small messages: BENCH_LINES short lines through x25519chat --classic, and
  through a Python program that does what the original X25519-TCP-Chat
  does for each message (a new GCM context, a random nonce, one sendall;
  recv of the length, then of the packet, then decrypt and print).
- Handshake: connect, handshake, one line echoed back, whole client
  process, BENCH_HANDSHAKES times (default 31); the median.
- CPU seconds and peak RSS of the two processes of each tool (for spiped,
  its two tunnel ends), from wait4().
- Both suites: x25519chat forced to --cipher chachapoly beside socat TLS
  1.3 forced (through an OpenSSL configuration file) to
  TLS_CHACHA20_POLY1305_SHA256; the cipher each TLS run used is read from
  socat's log, not assumed.
- The AEADs alone: how fast libsodium's AES-256-GCM and ChaCha20-Poly1305
  seal and open 64 KiB packets on one core (bench/aead.c), beside
  OpenSSL's (openssl speed), and the CPU time those rates put under any
  bulk transfer of ours.

Only ratios measured in the same run mean anything on a shared machine."""

import fcntl
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(TOP, "x25519chat")
SIZE = int(os.environ.get("BENCH_BYTES", str(1 << 30)))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LINES = int(os.environ.get("BENCH_LINES", "200000"))
SHAKES = int(os.environ.get("BENCH_HANDSHAKES", "31"))
LINE = b"x" * 65535
F_SETPIPE_SZ = 1031
WORK = tempfile.mkdtemp(prefix="x25519chat-bench.")
ENV = dict(os.environ, XDG_CONFIG_HOME=WORK, LC_ALL="C")
def port():
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A process started with Popen: its CPU time comes from wait4(), and
    its peak RSS from VmHWM, sampled while it runs (wait4's maxrss would
    count the Python process it was forked from)."""

    def __init__(self, argv, **kw):
        kw.setdefault("env", ENV)
        self.p = subprocess.Popen(argv, **kw)
        self.rc = None
        self.cpu = 0.0
        self.rss = 0
        self.done = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self):
        path = "/proc/%d/status" % self.p.pid
        while not self.done.is_set():
            try:
                with open(path) as f:
                    status = f.read()
            except OSError:
                return
            # Until exec, the child is still a copy of this Python.
            m = re.search(r"^VmHWM:\s+(\d+)", status, re.M)
            if m and not re.search(r"^Name:\s+python", status, re.M):
                self.rss = max(self.rss, int(m.group(1)))
            self.done.wait(0.02)

    def wait(self, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid == self.p.pid:
                self.done.set()
                self.p.returncode = self.rc = os.waitstatus_to_exitcode(
                    status)
                self.cpu = ru.ru_utime + ru.ru_stime
                return self.rc
            if time.monotonic() > deadline:
                self.p.kill()
            time.sleep(0.001)


def wait_listening(pattern, proc_err, timeout=5):
    """Wait until a file (a listener's stderr) or a port says it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(pattern, int):
            if subprocess.run(["ss", "-Hltn", "sport = :%d" % pattern],
                              capture_output=True).stdout.strip():
                return True
        else:
            with open(proc_err) as f:
                if re.search(pattern, f.read()):
                    return True
        time.sleep(0.01)
    return False


def source():
    """A file in memory holding the bytes to send: LINE and a newline,
    repeated, SIZE bytes."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else WORK
    path = os.path.join(shm, "x25519chat-bench.%d" % os.getpid())
    if not os.path.exists(path):
        with open(path, "wb") as f:
            chunk = (LINE + b"\n") * 16
            left = SIZE
            while left > 0:
                f.write(chunk[:left])
                left -= len(chunk[:left])
    return path


def sink():
    """A pipe for the receiver's stdout, 1 MiB deep for every tool alike
    (pipes are slow here at their default 64 KiB), read by cmp, which
    checks what arrives against the source.  (write end, cmp)"""
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    check = subprocess.Popen(["cmp", "-", source()], stdin=r,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.close(r)
    return w, check


def arrived(check):
    """How many bytes arrived intact, from what cmp says."""
    said = check.communicate()[0].decode()
    if check.returncode == 0:
        return SIZE
    m = re.search(r"EOF on - after byte (\d+)", said) or \
        re.search(r"differ: byte (\d+)", said)
    return int(m.group(1)) - (0 if "EOF" in said else 1) if m else 0


# Each tool: (name, receiver argv, sender argv, extra processes), built
# for a port.  The receiver writes to stdout, the sender reads stdin.

CHACHA_CONF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = TLS_CHACHA20_POLY1305_SHA256
"""


def tls_env(name):
    """The environment of socat for a TLS row: ChaCha20 alone for the
    ChaCha20 row, OpenSSL's own choice otherwise."""
    if "ChaCha20" not in name:
        return ENV
    conf = os.path.join(WORK, "chacha.cnf")
    with open(conf, "w") as f:
        f.write(CHACHA_CONF)
    return dict(ENV, OPENSSL_CONF=conf)


def tls_files():
    pem = os.path.join(WORK, "tls.pem")
    if not os.path.exists(pem):
        key, crt = pem + ".key", pem + ".crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", key, "-out", crt, "-days", "2", "-subj",
                        "/CN=localhost"], check=True, capture_output=True)
        with open(pem, "wb") as out:
            for f in (key, crt):
                with open(f, "rb") as part:
                    out.write(part.read())
    return pem


def spiped_key():
    key = os.path.join(WORK, "spiped.key")
    if not os.path.exists(key):
        with open(key, "wb") as f:
            f.write(os.urandom(32))
    return key


def run_bulk(tool):
    """One bulk transfer with tool; (seconds, ok, [Child of each end])."""
    name = tool
    p = port()
    err = os.path.join(WORK, "err")
    extra = []
    if name == "plain TCP":
        rx = ["socat", "-b262144", "-u", "TCP-LISTEN:%d,reuseaddr" % p,
              "STDOUT"]
        tx = ["socat", "-b262144", "-u", "STDIN", "TCP:127.0.0.1:%d" % p]
        ready = p
    elif name.startswith("socat TLS 1.3"):
        pem = tls_files()
        # -d -d: socat logs the cipher suite the two ends agreed on.
        rx = ["socat", "-d", "-d", "-b262144", "-u",
              "OPENSSL-LISTEN:%d,reuseaddr,cert=%s,verify=0,"
              "min-version=TLS1.3" % (p, pem), "STDOUT"]
        tx = ["socat", "-b262144", "-u", "STDIN",
              "OPENSSL:127.0.0.1:%d,verify=0,min-version=TLS1.3" % p]
        ready = p
    elif name == "ncat --ssl":
        # Of the ways to end an ncat --ssl transfer, this one loses the
        # least; none here delivered every byte.
        rx = ["ncat", "--ssl", "-l", "127.0.0.1", str(p)]
        tx = ["ncat", "--ssl", "--send-only", "127.0.0.1", str(p)]
        ready = p
    elif name == "spiped":
        # socat -> spiped -e -> spiped -d -> socat: spiped is a tunnel.
        key = spiped_key()
        p2, p3 = port(), port()
        rx = ["socat", "-b262144", "-u", "TCP-LISTEN:%d,reuseaddr" % p3,
              "STDOUT"]
        tx = ["socat", "-b262144", "-u", "STDIN", "TCP:127.0.0.1:%d" % p]
        extra = [["spiped", "-F", "-d", "-s", "[127.0.0.1]:%d" % p2, "-t",
                  "[127.0.0.1]:%d" % p3, "-k", key],
                 ["spiped", "-F", "-e", "-s", "[127.0.0.1]:%d" % p, "-t",
                  "[127.0.0.1]:%d" % p2, "-k", key]]
        ready = p3
    else:
        flags = name.split()[1:]
        rx = [BIN, "-q", "-l", "127.0.0.1:%d" % p] + flags
        tx = [BIN, "-q", "-c", "127.0.0.1:%d" % p] + flags
        ready = p
    env = tls_env(name)
    with open(err, "w") as e:
        out, check = sink()
        recv = Child(rx, stdin=subprocess.DEVNULL, stdout=out, stderr=e,
                     env=env)
        os.close(out)
        ends = [Child(argv, stdin=subprocess.DEVNULL,
                      stdout=subprocess.DEVNULL, stderr=e) for argv in extra]
        if not wait_listening(ready, err) or not all(
                wait_listening(int(a[4].split(":")[1]), err) for a in extra
                if a[0] == "spiped"):
            raise SystemExit("bench: %s did not start: %s" % (
                name, open(err).read()))
        with open(source(), "rb") as src:
            start = time.monotonic()
            send = Child(tx, stdin=src, stdout=subprocess.DEVNULL,
                         stderr=e, env=env)
            send.wait()
            recv.wait()
            got = arrived(check)
            took = time.monotonic() - start
        for c in ends:
            c.p.terminate()
            c.wait()
        ok = got == SIZE and send.rc == 0 and recv.rc == 0
    if name.startswith("socat TLS 1.3"):
        with open(err) as f:
            m = re.search(r"SSL connection using (\S+)", f.read())
        SUITES.add(m.group(1) if m else "an unknown suite")
        if m is None or ("ChaCha20" in name) != ("CHACHA20" in m.group(1)):
            raise SystemExit("bench: %s used %s" % (
                name, m.group(1) if m else "an unknown suite"))
    if not ok:
        sys.stderr.write("bench: %s: %d of %d bytes arrived intact; sender "
                         "%s, receiver %s: %s\n" % (
                             name, got, SIZE, send.rc, recv.rc,
                             open(err).read()[-300:].strip()))
    return took, got, ([send, recv] if not ends else ends)


TOOLS = ["x25519chat", "x25519chat --cipher chachapoly",
         "x25519chat --classic", "plain TCP", "socat TLS 1.3",
         "socat TLS 1.3 ChaCha20", "ncat --ssl", "spiped"]
SUITES = set()          # what the TLS runs really used


def bulk():
    results = {t: [] for t in TOOLS}
    for r in range(ROUNDS):
        for t in TOOLS:
            took, got, ends = run_bulk(t)
            results[t].append((took, got, sum(c.cpu for c in ends),
                               max(c.rss for c in ends)))
    return results


# Small messages.

PY_ORIGINAL = r'''
import os, socket, struct, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey, X25519PublicKey)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

def key_from(priv, peer):
    shared = priv.exchange(X25519PublicKey.from_public_bytes(peer))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"handshake data").derive(shared)

def raw(k):
    return k.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)

def exactly(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

role, port = sys.argv[1], int(sys.argv[2])
priv = X25519PrivateKey.generate()
if role == "server":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    print("ready", flush=True)
    s, _ = ls.accept()
    s.sendall(raw(priv))
    key = key_from(priv, exactly(s, 32))
    out = sys.stdout
    while True:
        try:
            n, = struct.unpack("!I", exactly(s, 4))
            blob = exactly(s, n)
        except EOFError:
            break
        d = Cipher(algorithms.AES(key), modes.GCM(blob[:12], blob[12:28])
                   ).decryptor()
        out.write((d.update(blob[28:]) + d.finalize()).decode() + "\n")
    out.flush()
else:
    s = socket.create_connection(("127.0.0.1", port))
    peer = exactly(s, 32)
    s.sendall(raw(priv))
    key = key_from(priv, peer)
    for line in sys.stdin:
        msg = line.rstrip("\n").encode()
        nonce = os.urandom(12)
        e = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        ct = e.update(msg) + e.finalize()
        pkt = nonce + e.tag + ct
        s.sendall(struct.pack("!I", len(pkt)) + pkt)
    s.close()
'''


def small_messages():
    """Lines per second, x25519chat --classic and the original's loop."""
    text = "".join("message %07d from the sender\n" % i
                   for i in range(LINES)).encode()
    src = os.path.join(WORK, "lines")
    with open(src, "wb") as f:
        f.write(text)
    script = os.path.join(WORK, "original.py")
    with open(script, "w") as f:
        f.write(PY_ORIGINAL)
    rates = {}
    for name in ("x25519chat --classic", "Python original"):
        p = port()
        err = os.path.join(WORK, "err")
        with open(err, "w") as e:
            if name == "Python original":
                rx = ["/usr/bin/python3", script, "server", str(p)]
                tx = ["/usr/bin/python3", script, "client", str(p)]
            else:
                rx = [BIN, "--classic", "-l", "127.0.0.1:%d" % p]
                tx = [BIN, "--classic", "-q", "-c", "127.0.0.1:%d" % p]
            outf = os.path.join(WORK, "out")
            with open(outf, "wb") as out:
                recv = Child(rx, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=e)
                wait_listening(p, err)
                with open(src, "rb") as inp:
                    start = time.monotonic()
                    send = Child(tx, stdin=inp, stdout=subprocess.DEVNULL,
                                 stderr=e)
                    send.wait()
                    recv.wait()
                    took = time.monotonic() - start
        with open(outf, "rb") as f:
            got = f.read()
        if got.endswith(text) and got[:-len(text)] in (b"", b"ready\n"):
            rates[name] = LINES / took
        else:
            sys.stderr.write("bench: %s lost lines: %d bytes of %d\n" % (
                name, len(got), len(text)))
            rates[name] = 0.0
    return rates


# Handshake latency: connect, handshake, one line echoed, whole client.

def echo_once(name):
    """Seconds the client takes; the listener's stdout is echoed back to
    its stdin by this script."""
    p = port()
    err = os.path.join(WORK, "err")
    with open(err, "w") as e:
        if name == "plain TCP":
            rx = ["socat", "TCP-LISTEN:%d,reuseaddr" % p, "STDIO"]
            tx = ["socat", "STDIO", "TCP:127.0.0.1:%d" % p]
            ready = p
        elif name == "socat TLS 1.3":
            pem = tls_files()
            rx = ["socat", "OPENSSL-LISTEN:%d,reuseaddr,cert=%s,verify=0,"
                  "min-version=TLS1.3" % (p, pem), "STDIO"]
            tx = ["socat", "STDIO", "OPENSSL:127.0.0.1:%d,verify=0,"
                  "min-version=TLS1.3" % p]
            ready = p
        else:
            rx = [BIN, "-q", "-l", "127.0.0.1:%d" % p]
            tx = [BIN, "-q", "-c", "127.0.0.1:%d" % p]
            ready = p
        recv = Child(rx, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=e)
        if not wait_listening(ready, err):
            raise SystemExit("bench: %s echo server did not start" % name)

        def echo():
            line = recv.p.stdout.readline()
            recv.p.stdin.write(line)
            recv.p.stdin.close()
            recv.p.stdout.read()
        glue = threading.Thread(target=echo, daemon=True)
        glue.start()
        start = time.monotonic()
        send = Child(tx, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=e)
        send.p.stdin.write(b"ping\n")
        send.p.stdin.close()
        got = send.p.stdout.read()
        send.wait(30)
        took = time.monotonic() - start
        recv.wait()
        glue.join(5)
    if got != b"ping\n":
        sys.stderr.write("bench: %s echo returned %r\n" % (name, got))
        return None
    return took


def handshakes():
    times = {n: [] for n in ("x25519chat", "plain TCP", "socat TLS 1.3")}
    for i in range(SHAKES):
        for n in times:
            t = echo_once(n)
            if t is not None:
                times[n].append(t)
    return {n: statistics.median(v) if v else None for n, v in times.items()}


def openssl_rate(evp, label):
    """MB/s of OpenSSL's evp cipher on one core for 64 KiB, 0 if unknown."""
    out = subprocess.run(["openssl", "speed", "-mr", "-evp", evp,
                          "-bytes", "65536", "-seconds", "1"],
                         capture_output=True, text=True).stdout
    m = re.search(r"^\+F:\d+:%s:([\d.]+)" % re.escape(label), out, re.M)
    return float(m.group(1)) / 1e6 if m else 0.0


def aead_rates():
    """MB/s on one core for 64 KiB: {suite: (libsodium seal, libsodium
    open, OpenSSL seal)}."""
    out = subprocess.run([os.path.join(TOP, "bench", "aead")],
                         capture_output=True, check=True, text=True).stdout
    r = [float(x) for x in out.split()]
    return {"AES-256-GCM": (r[0], r[1], openssl_rate("aes-256-gcm",
                                                     "AES-256-GCM")),
            "ChaCha20-Poly1305": (r[2], r[3], openssl_rate(
                "chacha20-poly1305", "ChaCha20-Poly1305"))}


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "%s, %d cores, %s %s" % (cpu, os.cpu_count(), os.uname().sysname,
                                    os.uname().release)


def main():
    for tool in ("socat", "ncat", "spiped", "openssl", "ss"):
        if shutil.which(tool) is None:
            raise SystemExit("bench: %s is not installed" % tool)
    # The identity both x25519chat ends use, made before any timing.
    subprocess.run([BIN, "--keygen"], env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("machine: %s" % machine())
    print("bulk: %d MiB per transfer, %d rounds, median shown"
          % (SIZE >> 20, ROUNDS))
    res = bulk()
    med = {}
    for t in TOOLS:
        took = statistics.median(r[0] for r in res[t])
        med[t] = (SIZE / took / 1e6,
                  statistics.median(r[2] for r in res[t]),
                  max(r[3] for r in res[t]), min(r[1] for r in res[t]))
    ours = med["x25519chat"][0]
    print()
    print("| tool | MB/s | ratio to x25519chat | CPU s (both ends) | "
          "peak RSS (KiB, one end) | intact |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for t in TOOLS:
        mbs, cpu, rss, got = med[t]
        print("| %s | %.0f | %.2f | %.2f | %d | %s |" % (
            t, mbs, mbs / ours if ours else 0, cpu, rss,
            "yes" if got == SIZE else "NO: %.2f%% lost" % (
                100.0 * (SIZE - got) / SIZE)))
    print()
    print("TLS cipher suites the socat runs used: %s" % ", ".join(
        sorted(SUITES)))
    rows = {"AES-256-GCM": "x25519chat",
            "ChaCha20-Poly1305": "x25519chat --cipher chachapoly"}
    for suite, (seal, open_, ossl) in aead_rates().items():
        if seal == 0:
            continue
        floor = SIZE / 1e6 / seal + SIZE / 1e6 / open_
        print("%s on one core, 64 KiB packets: libsodium seals %.0f MB/s "
              "and opens %.0f MB/s; OpenSSL seals %.0f MB/s.  At those rates "
              "libsodium's AEAD alone takes %.2f CPU s of the %.2f that "
              "%s's two ends used; plain TCP's whole transfer took %.2f." % (
                  suite, seal, open_, ossl, floor, med[rows[suite]][1],
                  rows[suite], med["plain TCP"][1]))
    rates = small_messages()
    shakes = handshakes()
    print()
    print("| small messages (--classic, one line each) | messages/s |")
    print("| --- | ---: |")
    for n, r in rates.items():
        print("| %s | %.0f |" % (n, r))
    print()
    print("| connect, handshake, one line echoed (whole client) | median ms |")
    print("| --- | ---: |")
    for n, t in shakes.items():
        print("| %s | %s |" % (n, "%.1f" % (t * 1000) if t else "FAILED"))
    print()
    tcp, tls = med["plain TCP"][0], med["socat TLS 1.3"][0]
    chacha = med["x25519chat --cipher chachapoly"][0]
    tls_chacha = med["socat TLS 1.3 ChaCha20"][0]
    py = rates.get("Python original") or 0
    print("targets: bulk %.2fx socat TLS (>= 1.15), ChaChaPoly %.2fx socat "
          "TLS ChaCha20 (>= 0.9), %.2fx plain TCP "
          "(>= 0.75); small messages %.1fx the Python original (>= 10); "
          "handshake %.2fx plain TCP (<= 2); peak RSS %d KiB (<= 4096)" % (
              ours / tls if tls else 0,
              chacha / tls_chacha if tls_chacha else 0,
              ours / tcp if tcp else 0,
              rates["x25519chat --classic"] / py if py else 0,
              shakes["x25519chat"] / shakes["plain TCP"]
              if shakes["x25519chat"] and shakes["plain TCP"] else 0,
              max(med["x25519chat"][2], med["x25519chat --classic"][2])))
    shutil.rmtree(WORK, ignore_errors=True)
    os.unlink(source())


if __name__ == "__main__":
    main()
