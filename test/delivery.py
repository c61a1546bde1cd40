"""How a session of x25519chat/2 ends, judged by what reached the
receiver's output.

The promise: on the peer's CLOSE a side writes out all it received,
fsyncs a regular file, closes its stdout and only then sends ACK; a side
exits 0 only once it sent CLOSE and got ACK, and got CLOSE and sent ACK;
a failure of its output goes to the peer at once as an ERROR (status 5
there).  Every scenario runs a real listener and a real connector on
127.0.0.1:

  full     the receiver's stdout is a file on a full 1 MiB tmpfs (root
           only: the suite mounts one), or /dev/full: the receiver exits
           1, the sender 5 with the receiver's reason;
  killed   the receiver is killed after the sender's CLOSE went out
           and reached it (a small relay in this file counts the packets,
           the receiver's -vv trace shows the CLOSE opened) and before it
           could ACK (its stdout is a full pipe nobody reads): the sender
           exits 4, never 0;
  normal   a few MB: both exit 0, the bytes arrive whole;
  typed    '-l PORT > file' with stdin a terminal: the download ends by
           itself, and the file is whole when the connector exits (and,
           under strace once, fsync and close come before the ACK);
  keepalive  a relay that stops forwarding after the handshake: the side
           with --keepalive 30 exits 4 after 29 to 31 s of silence;
  slow     the receiver's stdout is a pipe nobody reads for 40 s, both
           with --keepalive 30: nobody times out, and all arrives.

The first four run DELIVERY_REPS times each (default 20), in two lanes
side by side (full; killed, normal and typed); the last two once, in
threads beside the lanes.  After every run: a sender that exited 0
means the receiver exited 0 with all of it.  Each check is one line
"PASS: what" or "FAIL: what: why", a repeated scenario reporting each of
its checks once with the number of runs it held in.
"""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

from harness import BIN, LISTENING, Home, check, finish, sanitizer, whole

REPS = int(os.environ.get("DELIVERY_REPS", "20"))
PROG = "x25519chat: "
ENOSPC = "write to stdout: No space left on device"
MIB = 1 << 20
# The handshake's frames before the packets: 3 from the connector (the
# hello, messages 1 and 3); 2 from the listener (its answer, message 2),
# then its empty DATA, which is no control packet.
LEADING = {"c->l": 3, "l->c": 3}
# A packet whose plaintext is the type byte alone (CLOSE, ACK, PING or
# REKEY) has a length of 12 + 16 + 1.
CONTROL_LEN = 29



# Every wait is cut short near this point, so the whole file stays
# bounded: 85 s, twice that for a sanitizer build, which runs slower.
BUDGET = 85 * (2 if sanitizer() else 1)
DEADLINE = time.monotonic() + BUDGET
procs = []
procs_lock = threading.Lock()


def left(seconds):
    """seconds, or less when the file's time is running out."""
    return max(0.5, min(seconds, DEADLINE - time.monotonic()))


# Processes.

class Side:
    """One x25519chat, its stderr in a file; stdin and stdout as given."""

    def __init__(self, args, home, stdin, stdout, cmd=None, env=None):
        self.errf = tempfile.TemporaryFile()
        self.p = subprocess.Popen((cmd or []) + [BIN] + list(args),
                                  stdin=stdin, stdout=stdout,
                                  stderr=self.errf,
                                  env=dict(home.env, **(env or {})))
        with procs_lock:
            procs.append(self.p)
        self.rc = None
        self.hung = False

    def wait(self, timeout):
        """Exit status; None, after killing it, if it overran."""
        try:
            self.rc = self.p.wait(timeout=left(timeout))
        except subprocess.TimeoutExpired:
            self.hung = True
            self.p.kill()
            self.p.wait()
            self.rc = None
        return self.rc

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def err(self):
        return whole(self.errf).decode("utf-8", "replace")

    def errors(self):
        return [ln for ln in self.err().splitlines() if ln.startswith(PROG)]

    def said(self):
        """How it ended, for a FAIL message."""
        if self.hung:
            return "hung (killed); errors %r" % self.errors()
        return "exit %s, errors %r" % (self.rc, self.errors())


def wait_port(side, timeout=10):
    """The port a listener says it listens on, or None."""
    deadline = time.monotonic() + left(timeout)
    while time.monotonic() < deadline:
        m = LISTENING.search(side.err())
        if m:
            return int(m.group(2))
        if not side.alive():
            return None
        time.sleep(0.01)
    return None


class Keys:
    """A listener and a connector, each with its own identity, each
    pinning the other's key (so known_peers is never touched)."""

    def __init__(self):
        self.lhome, self.chome = Home(), Home()
        self.lkey, lpub = self.keygen(self.lhome)
        self.ckey, cpub = self.keygen(self.chome)
        self.largs = ["-i", self.lkey, "--peer", cpub]
        self.cargs = ["-i", self.ckey, "--peer", lpub]

    @staticmethod
    def keygen(home):
        path = home.path("key")
        r = subprocess.run([BIN, "--keygen", path], env=home.env,
                           capture_output=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError("--keygen failed: %r" % r.stderr)
        return path, r.stdout.decode().strip()

    def listener(self, args=(), stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, cmd=None, env=None):
        """(listener, port); the port None if it never said."""
        lp = Side(["-l", "127.0.0.1:0"] + self.largs + list(args),
                  self.lhome, stdin, stdout, cmd, env)
        return lp, wait_port(lp)

    def connector(self, port, args=(), stdin=subprocess.DEVNULL,
                  stdout=subprocess.DEVNULL):
        return Side(["-c", "127.0.0.1:%d" % port] + self.cargs + list(args),
                    self.chome, stdin, stdout)

    def cleanup(self):
        self.lhome.cleanup()
        self.chome.cleanup()


def pipe_full(fd):
    """(bytes held, capacity, whether it is full) of the pipe whose read
    end is fd.  Full is within a packet of the capacity: whoever writes
    into it in pieces that large is blocked then."""
    n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    size = fcntl.fcntl(fd, 1032)            # F_GETPIPE_SZ
    return n, size, n >= size - 65536


def read_all(fd, timeout):
    """Everything from the read end fd until its end, or None if it did
    not end within timeout seconds."""
    out = bytearray()
    deadline = time.monotonic() + left(timeout)
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            b = os.read(fd, MIB)
            if not b:
                return bytes(out)
            out += b
    return None


def file_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# The record of a repeated scenario.

class Tally:
    """Each property of a scenario, over its runs: how many runs it was
    judged in, how many it failed, and the first failure's story."""

    def __init__(self, title, runs):
        self.title = title
        self.runs = runs
        self.props = {}
        self.started = time.monotonic()
        self.took = None

    def note(self, prop, ok, why=""):
        n, bad, first = self.props.get(prop, (0, 0, ""))
        if not ok and not first:
            first = "run %d: %s" % (n + 1, why)
        self.props[prop] = (n + 1, bad + (not ok), first)
        return ok

    def done(self):
        """The runs are over: note how long they took."""
        if self.started is not None:
            self.took = time.monotonic() - self.started
        return self

    def report(self):
        if self.took is not None:
            sys.stderr.write("%s: %d runs in %.1f s\n" % (
                self.title, self.runs, self.took))
        for prop, (n, bad, first) in self.props.items():
            what = "%s: %s (%d runs)" % (self.title, prop, self.runs)
            if bad:
                check(what, False, "failed in %d of %d runs; first %s"
                      % (bad, n, first))
            else:
                check(what, n == self.runs, "judged in only %d runs: the "
                      "others stopped before it" % n)


def one_error(side, code, text):
    """Whether side exited code with exactly one error line, text."""
    errs = side.errors()
    return side.rc == code and errs == [PROG + text]


def truth(tally, sender, receiver, whole):
    """The sender's 0 must never be a lie: if it exited 0, the receiver
    exited 0 and its output is complete (whole)."""
    tally.note("a sender's 0 means the receiver exited 0 with all of it",
               sender.rc != 0 or (receiver.rc == 0 and whole),
               "sender 0, receiver %s, output whole: %s"
               % (receiver.said(), whole))


# A relay between connector and listener that reads the packets.

class Relay:
    """Forwards a connector's connection to the listener at port, one
    'u32 length | body' unit at a time (the frames of the hello and the
    handshake, then packets), and counts what passes each way: units,
    control packets (29 bytes after the leading ones) and DATA bytes.

    limits: a direction given a number of units forwards that many and
    then swallows everything, as a dead network would, noting the time
    and length of each unit that falls in.  hold: a direction
    given a number of control packets keeps its packets back until that
    many have come, then sends them on in one piece.  The first end of
    either side (EOF or a reset) is passed on to the other, in kind,
    unless that direction has a limit."""

    def __init__(self, port, limits=None, hold=None):
        self.target = port
        self.limits = limits or {}
        self.hold = hold or {}
        self.cond = threading.Condition()
        self.count = {d: {"units": 0, "controls": 0, "data": 0, "last": None,
                          "released": False, "end": None, "swallowed": []}
                      for d in LEADING}
        self.ended = False
        self.error = None
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(left(15))
        self.port = self.srv.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            a, _ = self.srv.accept()
            b = socket.create_connection(("127.0.0.1", self.target),
                                         timeout=left(10))
            a.settimeout(None)
            b.settimeout(None)
        except OSError as e:
            self.error = e
            return
        finally:
            self.srv.close()
        self.socks = [a, b]
        for src, dst, d in ((a, b, "c->l"), (b, a, "l->c")):
            threading.Thread(target=self._pump, args=(src, dst, d),
                             daemon=True).start()

    def _units(self, buf):
        """The whole units at the start of buf, and the rest."""
        units = []
        while len(buf) >= 4:
            n = struct.unpack(">I", buf[:4])[0]
            if len(buf) < 4 + n:
                break
            units.append(buf[:4 + n])
            buf = buf[4 + n:]
        return units, buf

    def _pump(self, src, dst, d):
        c = self.count[d]
        limit = self.limits.get(d)
        hold = self.hold.get(d)
        buf = held = b""
        end = None
        while end is None:
            try:
                chunk = src.recv(1 << 16)
                end = None if chunk else "eof"
            except OSError:
                chunk, end = b"", "reset"
            units, buf = self._units(buf + chunk)
            for i, unit in enumerate(units):
                if limit is not None and c["units"] >= limit:
                    # A black hole, that notes what falls in.
                    with self.cond:
                        c["swallowed"] += [(time.monotonic(), len(u) - 4)
                                           for u in units[i:]]
                    break
                with self.cond:
                    c["units"] += 1
                    packet = c["units"] > LEADING[d]
                    if packet and len(unit) == 4 + CONTROL_LEN:
                        c["controls"] += 1
                    elif packet:
                        c["data"] += len(unit) - 4 - CONTROL_LEN
                    keep = hold is not None and packet
                    if keep and c["controls"] >= hold:
                        hold, keep = None, False
                        unit, held = held + unit, b""
                        c["released"] = True
                if keep:
                    held += unit
                    continue
                try:
                    dst.sendall(unit)
                except OSError:
                    break
                with self.cond:
                    c["last"] = time.monotonic()
                    self.cond.notify_all()
        with self.cond:
            c["end"] = end
            first, self.ended = not self.ended, True
            self.cond.notify_all()
        if limit is not None or not first:
            return
        # Pass the end on, as the dead side's kernel did.  SHUT_RD wakes
        # the other direction's recv() on dst without a word to its peer.
        try:
            if end == "reset":
                dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               struct.pack("ii", 1, 0))
                dst.shutdown(socket.SHUT_RD)
                dst.close()
            else:
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait_for(self, cond, timeout):
        """Wait until cond(count) holds; return whether it did."""
        deadline = time.monotonic() + left(timeout)
        with self.cond:
            while not cond(self.count):
                rest = deadline - time.monotonic()
                if rest <= 0:
                    return False
                self.cond.wait(rest)
            return True

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


# The repeated scenarios: one run each.

def full_run(tally, keys, data_path, data, out_path, prefix_check):
    """The receiver (listener) writes into out_path, which has no room
    for data; the sender (connector) must hear why."""
    if prefix_check and os.path.exists(out_path):
        os.unlink(out_path)
    with open(out_path, "wb") as out, tempfile.TemporaryFile() as cout, \
            open(data_path, "rb") as cin:
        lp, port = keys.listener(stdout=out)
        if port is None:
            lp.kill()
            tally.note("the listener starts", False, lp.err())
            return
        cp = keys.connector(port, stdin=cin, stdout=cout)
        cp.wait(20)
        lp.wait(10)
        cout.seek(0)
        got_back = cout.read()
    tally.note("the receiver exits 1, its one error '%s'" % ENOSPC,
               one_error(lp, 1, ENOSPC), lp.said())
    tally.note("the sender exits 5, its one error 'peer failed: %s'"
               % ENOSPC, one_error(cp, 5, "peer failed: " + ENOSPC),
               cp.said())
    tally.note("the sender's stdout stays empty", got_back == b"",
               "%d bytes" % len(got_back))
    whole = False
    if prefix_check:
        got = file_bytes(out_path) or b""
        whole = got == data
        tally.note("the file holds a true prefix of what was sent",
                   len(got) < len(data) and got == data[:len(got)],
                   "%d bytes of %d, a prefix: %s" % (
                       len(got), len(data), got == data[:len(got)]))
    truth(tally, cp, lp, whole)


def fits_run(tally, keys, data_path, data, out_path):
    """The near miss of full_run: less than the tmpfs holds arrives."""
    if os.path.exists(out_path):
        os.unlink(out_path)
    with open(out_path, "wb") as out, open(data_path, "rb") as cin:
        lp, port = keys.listener(stdout=out)
        if port is None:
            lp.kill()
            tally.note("the listener starts", False, lp.err())
            return
        cp = keys.connector(port, stdin=cin)
        cp.wait(20)
        lp.wait(10)
    got = file_bytes(out_path)
    tally.note("both exit 0 without an error", one_clean(lp) and
               one_clean(cp), "receiver %s, sender %s" % (lp.said(),
                                                         cp.said()))
    tally.note("the file is what was sent", got == data,
               "%s bytes of %d" % (None if got is None else len(got),
                                   len(data)))
    truth(tally, cp, lp, got == data)


def one_clean(side):
    return side.rc == 0 and not side.errors()


def filled_pipe():
    """A pipe of 1 MiB that is already full: (read end, write end).  A
    writer into it blocks at its first byte."""
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, MIB)               # F_SETPIPE_SZ
    os.set_blocking(w, False)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(w, chunk)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    return r, w


def killed_run(tally, keys, data_path, data):
    """The receiver's stdout is a full pipe that nobody reads, so it can
    never ACK.  The relay holds the sender's packets back until its
    CLOSE has come, then hands them on in one piece (one segment on the
    loopback), so the receiver reads that CLOSE before it blocks.  Then
    the receiver dies."""
    r, w = filled_pipe()
    try:
        lp, port = keys.listener(["-vv"], stdout=w)
    finally:
        os.close(w)
    relay = None
    try:
        if port is None:
            lp.kill()
            tally.note("the listener starts", False, lp.err())
            return
        relay = Relay(port, hold={"c->l": 2})
        with open(data_path, "rb") as cin:
            cp = keys.connector(relay.port, stdin=cin)
        # The sender sends two control packets: its ACK of the
        # receiver's CLOSE (stdin /dev/null: at once), and its CLOSE
        # after all the data.  Both in hand means its CLOSE went out.
        out = relay.wait_for(lambda c: c["c->l"]["released"], 15)
        sent = relay.count["c->l"]["data"]
        # The receiver's trace shows each packet it opens.
        deadline = time.monotonic() + left(10)
        while (not re.search(r"^\[trace\] recv n=\d+ type=CLOSE ", lp.err(),
                             re.M) and time.monotonic() < deadline):
            time.sleep(0.01)
        read_close = re.search(r"^\[trace\] recv n=\d+ type=CLOSE ",
                               lp.err(), re.M) is not None
        # Time for an ACK that should not come.
        relay.wait_for(lambda c: c["l->c"]["controls"] >= 2, 0.2)
        full = pipe_full(r)
        acks = relay.count["l->c"]["controls"] - 1
        lp.p.send_signal(signal.SIGKILL)
        lp.wait(10)
        cp.wait(20)
        traced_ack = re.search(r"^\[trace\] send n=\d+ type=ACK ",
                               lp.err(), re.M) is not None
        tally.note("the sender's CLOSE went out after all its data, and "
                   "the receiver opened it", out and sent == len(data) and
                   read_close, "CLOSE passed on: %s, %d data bytes of %d, "
                   "the receiver's trace shows it: %s" % (
                       out, sent, len(data), read_close))
        tally.note("the receiver, its output blocked, sent no ACK before "
                   "it died", acks == 0 and not traced_ack and full[2],
                   "%d ACK passed on, one traced: %s, pipe %r" % (
                       acks, traced_ack, full))
        tally.note("the sender exits 4 (never 0), one error line",
                   cp.rc == 4 and len(cp.errors()) == 1, cp.said())
        # It had ACKed the receiver's CLOSE: the receiver's (empty)
        # stream had reached it whole.  Only its own data is in doubt.
        tally.note("the sender, which had the receiver's whole stream, "
                   "does not call it incomplete",
                   not any("stream is incomplete" in e
                           for e in cp.errors()), cp.said())
        truth(tally, cp, lp, False)
    finally:
        if relay is not None:
            relay.close()
        os.close(r)


def normal_run(tally, keys, data_path, data, tmp):
    out_path = os.path.join(tmp, "normal.out")
    with open(out_path, "wb") as out, tempfile.TemporaryFile() as cout, \
            open(data_path, "rb") as cin:
        lp, port = keys.listener(stdout=out)
        if port is None:
            lp.kill()
            tally.note("the listener starts", False, lp.err())
            return
        cp = keys.connector(port, stdin=cin, stdout=cout)
        cp.wait(20)
        lp.wait(10)
        cout.seek(0)
        back = cout.read()
    got = file_bytes(out_path)
    os.unlink(out_path)
    tally.note("both exit 0 without an error", one_clean(lp) and
               one_clean(cp), "receiver %s, sender %s" % (lp.said(),
                                                         cp.said()))
    tally.note("the receiver's output is the sender's input, byte for "
               "byte", got == data, "%s bytes of %d" % (
                   None if got is None else len(got), len(data)))
    tally.note("the sender's stdout stays empty", back == b"",
               "%d bytes" % len(back))
    truth(tally, cp, lp, got == data)


def typed_run(tally, keys, data_path, data, tmp, strace_log=None):
    """'x25519chat -l PORT > file' typed at a shell: stdin a terminal,
    stdout a regular file.  It ends by itself once the peer is done."""
    out_path = os.path.join(tmp, "typed.out")
    master, slave = pty.openpty()
    try:
        cmd = env = None
        if strace_log:
            cmd = ["strace", "-f", "-qq", "-o", strace_log, "-e",
                   "trace=accept,accept4,fsync,close,dup,dup2,dup3,write,"
                   "writev"]
            # LeakSanitizer cannot run under ptrace: an ASan build's
            # leak check would fail the exit status.
            env = {"ASAN_OPTIONS": "detect_leaks=0"}
        with open(out_path, "wb") as out, tempfile.TemporaryFile() as cout, \
                open(data_path, "rb") as cin:
            lp, port = keys.listener(stdin=slave, stdout=out, cmd=cmd,
                                     env=env)
            if port is None:
                lp.kill()
                tally.note("the listener starts", False, lp.err())
                return
            cp = keys.connector(port, stdin=cin, stdout=cout)
            cp.wait(20)
            # The ACK vouches for the file: it must be whole already.
            at_exit = file_bytes(out_path)
            lp.wait(10)
            cout.seek(0)
            back = cout.read()
        got = file_bytes(out_path)
        os.unlink(out_path)
        shown = b""
        while select.select([master], [], [], 0)[0]:
            shown += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    tally.note("both exit 0 without an error, nobody pressing a key",
               one_clean(lp) and one_clean(cp),
               "receiver %s, sender %s" % (lp.said(), cp.said()))
    tally.note("the file is whole the moment the sender exits",
               cp.rc is not None and at_exit == data,
               "sender %s; %s bytes of %d then" % (
                   cp.said(), None if at_exit is None else len(at_exit),
                   len(data)))
    tally.note("the file is the sender's input, byte for byte",
               got == data, "%s bytes of %d" % (
                   None if got is None else len(got), len(data)))
    tally.note("nothing is written to the terminal, nothing comes back",
               shown == b"" and back == b"",
               "terminal %r, sender's stdout %d bytes" % (shown[:60],
                                                          len(back)))
    truth(tally, cp, lp, got == data)


def fsync_order(log):
    """From an strace -f log of the listener: whether fsync(1) and the
    closing of stdout both returned 0 before the next packet went to the
    socket, and why not.  Stdout is closed either by close(1), or by
    putting /dev/null in its place with dup2(..., 1) and closing a copy
    made with dup(1) before: then that copy's close() is the one that
    counts."""
    lines = log.splitlines()
    sock = None
    fsync = close = ack = None
    copy = replaced = None
    pending = {}
    for i, ln in enumerate(lines):
        words = ln.split(None, 1)
        if len(words) < 2:
            continue
        pid, call = words
        if call.startswith("<... "):
            name = call[5:].split()[0]
            start = pending.pop((pid, name), None)
            if start is None:
                continue
            call = start.rstrip() + call[call.index("resumed>") + 8:]
        elif "<unfinished ...>" in call:
            name = call.split("(")[0]
            pending[(pid, name)] = call.replace("<unfinished ...>", "")
            if name != "write":
                continue
        if call.startswith(("accept(", "accept4(")) and sock is None:
            try:
                sock = int(call.rsplit("=", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
        elif call.startswith("fsync(1)") and call.rstrip().endswith("= 0"):
            fsync = fsync if fsync is not None else i
        elif (call.startswith("close(1)") and call.rstrip().endswith("= 0")
              and fsync is not None and close is None):
            close = i
        elif call.startswith("dup(1)") and fsync is not None:
            try:
                copy = int(call.rsplit("=", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
        elif (call.startswith(("dup2(", "dup3(")) and copy is not None and
              call.split(",")[1].split(")")[0].strip() == "1" and
              call.rstrip().endswith("= 1")):
            replaced = i
        elif (copy is not None and replaced is not None and close is None
              and call.startswith("close(%d)" % copy)
              and call.rstrip().endswith("= 0")):
            close = i
        elif (sock is not None and fsync is not None and ack is None and
              call.startswith("write(%d," % sock)):
            ack = i
    ok = (sock is not None and fsync is not None and close is not None and
          ack is not None and fsync < close < ack)
    return ok, "socket %s; fsync(1) at line %s, close(1) at %s, the next " \
        "socket write at %s" % (sock, fsync, close, ack)


# The scenarios that run once, in threads.

def keepalive_scenario(keys, side, results):
    """A relay passes the hello, the handshake and the listener's first
    packet, then swallows everything: the side with --keepalive 30 must
    give up after 30 s of silence, the other (60 s) not yet."""
    title = "keepalive 30 on the %s, the network dead after the " \
        "handshake" % side
    hold_l, keep_l = os.pipe()      # stdins that never end
    hold_c, keep_c = os.pipe()
    lp = cp = relay = None
    try:
        extra = ["--keepalive", "30"]
        lp, port = keys.listener(extra if side == "listener" else [],
                                 stdin=hold_l)
        if port is None:
            results.append((title + ": the listener starts", False,
                            lp.err()))
            return
        relay = Relay(port, limits={"c->l": 3, "l->c": 3})
        cp = keys.connector(relay.port, extra if side == "connector" else
                            [], stdin=hold_c)
        quiet, other = (cp, lp) if side == "connector" else (lp, cp)
        d = "l->c" if side == "connector" else "c->l"
        if not relay.wait_for(lambda c: c["l->c"]["units"] >= 3 and
                              c["c->l"]["units"] >= 3, 15):
            results.append((title + ": the handshake passes the relay",
                            False, "relay %r; listener %s; connector %s" % (
                                relay.count, lp.err(), cp.err())))
            return
        # When it gives up is when it says so: exiting may take longer (a
        # sanitizer's checks at exit, a loaded machine).
        gave_up = None
        deadline = time.monotonic() + left(45)
        while gave_up is None and time.monotonic() < deadline:
            if "no word from the peer" in quiet.err() or not quiet.alive():
                gave_up = time.monotonic()
            else:
                time.sleep(0.05)
        still = other.alive()
        quiet.wait(15)
        took = (gave_up or time.monotonic()) - relay.count[d]["last"]
        results.append((
            title + ": it exits 4, 'no word from the peer in 30 s'",
            one_error(quiet, 4, "no word from the peer in 30 s"),
            quiet.said()))
        results.append((
            title + ": after 29 to 31 s of silence",
            gave_up is not None and 29 <= took <= 31,
            "it gave up %.1f s after the last byte reached it" % took))
        results.append((
            title + ": the other side (default 60 s) is still waiting",
            still, "it had ended: %s" % other.said()))
        # Neither side had anything to send: each PINGs after 15 s.
        pings = []
        for way in ("c->l", "l->c"):
            c = relay.count[way]
            first = c["swallowed"][0] if c["swallowed"] else None
            pings.append("%s: %s" % (way, "nothing" if first is None else
                                     "%d bytes after %.1f s" % (
                                         first[1], first[0] - c["last"])))
            if first is None or first[1] != CONTROL_LEN or \
                    not 14.5 <= first[0] - c["last"] <= 17:
                pings[-1] += " (wrong)"
        results.append((
            title + ": each side sends PING after 15 s of sending nothing",
            not any(p.endswith("(wrong)") for p in pings),
            "first packets into the silence: %s" % "; ".join(pings)))
    finally:
        for p in (lp, cp):
            if p is not None:
                p.kill()
        if relay is not None:
            relay.close()
        for fd in (hold_l, keep_l, hold_c, keep_c):
            os.close(fd)


def slow_scenario(keys, data_path, data, results):
    """The receiver's stdout is a pipe nobody reads for 40 s; both sides
    have --keepalive 30.  While its output blocks the receiver is not
    listening, so its limit must not run."""
    title = "a reader that stalls 40 s, --keepalive 30 on both sides"
    r, w = os.pipe()
    lp = cp = None
    try:
        lp, port = keys.listener(["--keepalive", "30"], stdout=w)
        os.close(w)
        w = None
        if port is None:
            results.append((title + ": the listener starts", False,
                            lp.err()))
            return
        with open(data_path, "rb") as cin:
            cp = keys.connector(port, ["--keepalive", "30"], stdin=cin)
        deadline = time.monotonic() + 40
        while (time.monotonic() < deadline and lp.alive() and cp.alive()
               and time.monotonic() < DEADLINE - 25):
            time.sleep(0.5)
        stalled = time.monotonic() - (deadline - 40)
        alive = lp.alive() and cp.alive()
        full = pipe_full(r)
        results.append((
            title + ": after %.0f s both still run, the receiver's pipe "
            "full" % stalled, alive and stalled >= 39.5 and full[2],
            "receiver %s, sender %s, pipe %r" % (
                "running" if lp.alive() else lp.said(),
                "running" if cp.alive() else cp.said(), full)))
        got = read_all(r, 30)
        cp.wait(20)
        lp.wait(10)
        results.append((
            title + ": then read, both exit 0 without an error",
            one_clean(lp) and one_clean(cp),
            "receiver %s, sender %s" % (lp.said(), cp.said())))
        results.append((
            title + ": and every byte arrives, in order", got == data,
            "%s bytes of %d" % (None if got is None else len(got),
                                len(data))))
        results.append((
            title + ": a sender's 0 means the receiver exited 0 with all "
            "of it", cp.rc != 0 or (lp.rc == 0 and got == data),
            "sender 0, receiver %s" % lp.said()))
    finally:
        for p in (lp, cp):
            if p is not None:
                p.kill()
        os.close(r)
        if w is not None:
            os.close(w)


def in_thread(fn, *args):
    """Run fn(*args, results) in a thread: (the thread, results)."""
    results = []
    t = threading.Thread(target=fn, args=args + (results,), daemon=True)
    t.start()
    return t, results


# The repeated scenarios, in two lanes that run side by side: each puts
# in results a Tally per scenario, or the line saying it did not run.

def disk_lane(keys, mnt, why, files, results):
    """The receiver's stdout full: a 1 MiB tmpfs, then /dev/full."""
    big_path, big = files["big"]
    fits_path, fits = files["fits"]
    if mnt is None:
        results.append("SKIP: full disk on a 1 MiB tmpfs: did not run "
                       "(%s); nothing counted" % why)
    else:
        t = Tally("receiver's stdout on a full 1 MiB tmpfs, 1.5 MB sent",
                  REPS)
        # The near miss shows that the tmpfs works, and the lack of room
        # fails: a few runs will do.
        near = min(REPS, 5)
        u = Tally("near miss: 700 kB into the same 1 MiB tmpfs", near)
        u.started = None            # its runs alternate with t's
        out = os.path.join(mnt, "out")
        for i in range(REPS):
            full_run(t, keys, big_path, big, out, True)
            if i < near:
                fits_run(u, keys, fits_path, fits, out)
        results += [t.done(), u.done()]
    if not os.path.exists("/dev/full"):
        results.append("SKIP: stdout /dev/full: did not run (no "
                       "/dev/full); nothing counted")
        return
    t = Tally("receiver's stdout /dev/full, 1.5 MB sent", REPS)
    for _ in range(REPS):
        full_run(t, keys, big_path, big, "/dev/full", False)
    results.append(t.done())


def ends_lane(keys, tmp, files, results):
    """A receiver killed before its ACK, a normal transfer, a download
    into a file from a terminal (once more under strace)."""
    kill_path, kill_data = files["kill"]
    norm_path, norm = files["norm"]
    t = Tally("receiver killed after the sender's CLOSE, before its ACK",
              REPS)
    for _ in range(REPS):
        killed_run(t, keys, kill_path, kill_data)
    results.append(t.done())

    t = Tally("a normal transfer of %d MB" % (len(norm) // 10**6), REPS)
    for _ in range(REPS):
        normal_run(t, keys, norm_path, norm, tmp)
    results.append(t.done())

    t = Tally("'-l PORT > file' with stdin a terminal, %d MB"
              % (len(norm) // 10**6), REPS)
    for _ in range(REPS):
        typed_run(t, keys, norm_path, norm, tmp)
    results.append(t.done())
    if shutil.which("strace") is None:
        results.append("SKIP: fsync and close before the ACK: did not run "
                       "(no strace); nothing counted")
        return
    log = os.path.join(tmp, "strace.log")
    t = Tally("'-l PORT > file' at a terminal, under strace", 1)
    typed_run(t, keys, norm_path, norm, tmp, strace_log=log)
    ok, why = fsync_order((file_bytes(log) or b"").decode("utf-8",
                                                          "replace"))
    t.note("fsync(1) and close(1) return 0 before the next packet (the "
           "ACK) goes out", ok, why)
    results.append(t.done())


# The suite.

def mount_tmpfs(tmp):
    """A 1 MiB tmpfs in tmp, or (None, why it could not be had)."""
    if os.geteuid() != 0:
        return None, "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return None, "no mount command"
    mnt = os.path.join(tmp, "tmpfs")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                        mnt], capture_output=True, timeout=10)
    if r.returncode != 0:
        return None, "mount failed: %s" % r.stderr.decode().strip()
    return mnt, ""


def data_file(tmp, name, size):
    data = os.urandom(size)
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def main():
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="x25519chat-delivery.")
    keys = mnt = None
    threads = []
    try:
        keys = Keys()
        files = {"big": data_file(tmp, "1.5MB", 1500000),
                 "fits": data_file(tmp, "700kB", 700000),
                 "kill": data_file(tmp, "32KiB", 32 << 10),
                 "norm": data_file(tmp, "3MB", 3000000)}
        slow_path, slow = data_file(tmp, "16MiB", 16 * MIB)
        mnt, why = mount_tmpfs(tmp)

        # The long waits first, in threads beside the rest.
        threads.append(in_thread(keepalive_scenario, keys, "connector"))
        threads.append(in_thread(keepalive_scenario, keys, "listener"))
        threads.append(in_thread(slow_scenario, keys, slow_path, slow))
        lanes = [in_thread(disk_lane, keys, mnt, why, files),
                 in_thread(ends_lane, keys, tmp, files)]

        for th, results in lanes + threads:
            th.join(left(80))
            if th.is_alive():
                check("a lane of scenarios ends in time", False,
                      "still running")
            for r in list(results):
                if isinstance(r, str):
                    print(r, flush=True)
                elif isinstance(r, Tally):
                    r.report()
                else:
                    check(*r)
    finally:
        with procs_lock:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if mnt is not None:
            subprocess.run(["umount", mnt], timeout=10)
        if keys is not None:
            keys.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stderr.write("delivery suite took %.1fs (budget %d s%s)\n" % (
        time.monotonic() - started, BUDGET,
        ", built with %s" % sanitizer() if sanitizer() else ""))
    finish()


if __name__ == "__main__":
    main()
