"""Resource bounds and memory hygiene of whole sessions.

- One full session, both processes under valgrind --leak-check=full:
  no error and no leak.  The same for a session that fails: the
  receiver's stdout is /dev/full, so it sends ERROR and exits 1, and the
  sender exits 5.
- A long transfer: the resident memory of both processes stays flat (and
  under 4 MiB) from the first second to the last byte.
- Many sequential sessions on one -k listener: it ends with the same file
  descriptors and (within a page or two) the same memory as it started.
- SIGTERM ends a pipe-mode session promptly even while its threads are
  blocked on the socket or on a stdout nobody reads.

BOUNDS_GIB (default 1) and BOUNDS_SESSIONS (default 200) size the last two;
'make bounds' runs them at 10 GiB and 1,000 sessions.  Figures go to
stdout as lines starting with "figure:"."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import (BIN, LISTENING, Home, Proc, check, finish, listen,
                     sanitizer, whole)

GIB = int(os.environ.get("BOUNDS_GIB", "1"))
SESSIONS = int(os.environ.get("BOUNDS_SESSIONS", "200"))
RSS_LIMIT_KIB = 4096
# Growth tolerated once warm: a few pages of allocator bookkeeping.
SLACK_KIB = 64


def memory_checked(what):
    """Whether memory figures mean anything for this build; say so if not
    (a sanitizer's shadow memory and quarantine swamp them)."""
    if sanitizer() is None:
        return True
    sys.stderr.write("not run (a %s build's memory is the sanitizer's): "
                     "%s\n" % (sanitizer(), what))
    return False


def status_kib(pid, field):
    """A 'kB' field of /proc/PID/status, or None once the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def valgrind_session():
    """Both ends of a session with data both ways under valgrind."""
    what = "one full session under valgrind: no error, no leak, both ends"
    valgrind = shutil.which("valgrind")
    if sanitizer() is not None:
        sys.stderr.write("not run (valgrind cannot run a sanitizer build): "
                         "%s\n" % what)
        return
    if valgrind is None:
        check(what, False, "valgrind is not installed")
        return
    cmd = [valgrind, "-q", "--leak-check=full", "--errors-for-leak-kinds=all",
           "--error-exitcode=99", BIN]
    hl, hc = Home(), Home()
    ldata, cdata = os.urandom(300000), os.urandom(200000)
    lin, cin = stdin_with(hl, ldata), stdin_with(hc, cdata)
    lp = Proc(["-l", "127.0.0.1:0"], hl, stdin=lin, cmd=cmd)
    port = wait_port(lp, 30)
    cp = Proc(["-c", "127.0.0.1:%d" % port, "-w", "30"], hc, stdin=cin,
              cmd=cmd) if port else None
    crc = cp.wait(60) if cp else None
    lrc = lp.wait(60)
    ok = (port is not None and lrc == 0 and crc == 0 and
          lp.out() == cdata and cp.out() == ldata)
    check(what, ok, "listener %s, connector %s; %s" % (
        lrc, crc, (lp.err() + (cp.err() if cp else ""))[-600:]))
    lin.close()
    cin.close()
    hl.cleanup()
    hc.cleanup()


def valgrind_peer_failure():
    """The ERROR path under valgrind: a receiver whose writes fail, and
    the sender that hears of it."""
    what = ("a failing session under valgrind (receiver's stdout "
            "/dev/full: exit 1, sender 5): no error, no leak, both ends")
    valgrind = shutil.which("valgrind")
    if sanitizer() is not None:
        sys.stderr.write("not run (valgrind cannot run a sanitizer build): "
                         "%s\n" % what)
        return
    if valgrind is None:
        check(what, False, "valgrind is not installed")
        return
    cmd = [valgrind, "-q", "--leak-check=full", "--errors-for-leak-kinds=all",
           "--error-exitcode=99", BIN]
    hl, hc = Home(), Home()
    cin = stdin_with(hc, os.urandom(1500000))
    full = open("/dev/full", "wb")
    errf = tempfile.TemporaryFile()
    lp = subprocess.Popen(cmd + ["-l", "127.0.0.1:0"], env=hl.env,
                          stdin=subprocess.DEVNULL, stdout=full, stderr=errf)

    def lerr():
        return whole(errf).decode("utf-8", "replace")
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline and lp.poll() is None:
        m = LISTENING.search(lerr())
        port = int(m.group(2)) if m else None
        time.sleep(0.05)
    cp = Proc(["-c", "127.0.0.1:%d" % port, "-w", "30"], hc, stdin=cin,
              cmd=cmd) if port else None
    crc = cp.wait(60) if cp else None
    try:
        lrc = lp.wait(60)
    except subprocess.TimeoutExpired:
        lp.kill()
        lrc = lp.wait()
    err = lerr() + (cp.err() if cp else "")
    ok = (port is not None and lrc == 1 and crc == 5 and
          "x25519chat: write to stdout: No space left on device" in err and
          "x25519chat: peer failed: write to stdout: No space left on "
          "device" in err)
    check(what, ok, "listener %s, connector %s; %s" % (lrc, crc, err[-600:]))
    full.close()
    errf.close()
    cin.close()
    hl.cleanup()
    hc.cleanup()


def stdin_with(home, data):
    path = home.path("stdin")
    with open(path, "wb") as f:
        f.write(data)
    return open(path, "rb")


def wait_port(proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = LISTENING.search(proc.err())
        if m:
            return int(m.group(2))
        if not proc.alive():
            return None
        time.sleep(0.05)
    return None


def kids_of(pid):
    """The processes whose parent is pid."""
    found = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return found


class Sampler(threading.Thread):
    """Samples VmRSS of some pids every 100 ms while they run: of each,
    its largest process, as a listener runs its session in a process of
    its own."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.samples = {pid: [] for pid in pids}
        self.stop = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.stop.is_set():
            for pid, s in self.samples.items():
                kibs = [k for k in (status_kib(p, "VmRSS") for p in
                                    [pid] + kids_of(pid)) if k is not None]
                if kibs:
                    s.append((time.monotonic() - start, max(kibs)))
            self.stop.wait(0.1)


def flat_memory():
    """GIB GiB of zeros from connector to listener, like 'nc < file'."""
    home_l, home_c = Home(), Home()
    size = GIB << 30
    errf = open(home_l.path("stderr"), "w+b")
    lp = subprocess.Popen([BIN, "-l", "127.0.0.1:0"], env=home_l.env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=errf)
    # cmp reads what arrives against zeros and says where it ended.
    drain = subprocess.Popen(["cmp", "-", "/dev/zero"], stdin=lp.stdout,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    lp.stdout.close()
    port = None
    deadline = time.monotonic() + 5
    while port is None and time.monotonic() < deadline:
        m = LISTENING.search(whole(errf).decode())
        port = int(m.group(2)) if m else None
        time.sleep(0.02)
    feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"],
                              stdout=subprocess.PIPE)
    cp = Proc(["-c", "127.0.0.1:%d" % port], home_c, stdin=feeder.stdout)
    feeder.stdout.close()
    sampler = Sampler([lp.pid, cp.p.pid])
    sampler.start()
    started = time.monotonic()
    crc = cp.wait(60 + 30 * GIB)
    try:
        lrc = lp.wait(30)
    except subprocess.TimeoutExpired:
        lp.kill()
        lrc = lp.wait()
    took = time.monotonic() - started
    sampler.stop.set()
    sampler.join()
    said = drain.communicate(timeout=10)[0].decode()
    feeder.wait()
    complete = "EOF on - after byte %d," % size in said
    check("%d GiB through one session arrive whole" % GIB,
          lrc == 0 and crc == 0 and complete,
          "listener %s, connector %s, cmp said %r" % (lrc, crc, said))
    print("figure: %d GiB in %.1f s (%.0f MB/s)" % (GIB, took,
                                                   size / took / 1e6))
    for who, pid in (("listener", lp.pid), ("connector", cp.p.pid)):
        s = sampler.samples[pid]
        # "Warm" is the first sample a second in (or the first at all).
        warm = next((kib for t, kib in s if t >= 1.0), s[0][1] if s else 0)
        peak = max((kib for _, kib in s), default=0)
        print("figure: %s RSS over %d GiB: %d KiB after 1 s, peak %d KiB, "
              "%d samples" % (who, GIB, warm, peak, len(s)))
        if not memory_checked("%s memory over %d GiB" % (who, GIB)):
            continue
        check("%s memory stays flat over %d GiB (peak within %d KiB of the "
              "first second)" % (who, GIB, SLACK_KIB),
              len(s) >= 3 and peak - warm <= SLACK_KIB,
              "after 1 s %d KiB, peak %d KiB" % (warm, peak))
        check("%s peak RSS at most %d KiB" % (who, RSS_LIMIT_KIB),
              0 < peak <= RSS_LIMIT_KIB, "peak %d KiB" % peak)
    errf.close()
    home_l.cleanup()
    home_c.cleanup()


def settled(pid, timeout=5):
    """Wait until the listener pid has reaped the process of each of its
    connections, which hold a descriptor of it while they run."""
    deadline = time.monotonic() + timeout
    while kids_of(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def many_sessions():
    """SESSIONS sessions, one after the other, on one -k listener."""
    if os.geteuid() != 0:
        # x25519chat makes itself non-dumpable (no core dumps), which
        # also closes its /proc/PID/fd to everyone but root.
        sys.stderr.write("not run (reading another process's /proc/PID/fd "
                         "needs root): sequential sessions\n")
        return
    home_l, home_c = Home(), Home()
    lp, port = listen(home_l, ["-k"])
    pid = lp.p.pid
    warm_at = min(20, SESSIONS // 2)
    before = fds_before = None
    failures = []
    started = time.monotonic()
    for i in range(SESSIONS):
        if i == warm_at:
            settled(pid)
            before, fds_before = status_kib(pid, "VmRSS"), fd_count(pid)
        cp = Proc(["-c", "127.0.0.1:%d" % port], home_c,
                  stdin=subprocess.DEVNULL)
        if cp.wait(10) != 0:
            failures.append((i, cp.rc, cp.err()[-200:]))
            if len(failures) > 3:
                break
    took = time.monotonic() - started
    settled(pid)
    after, fds_after = status_kib(pid, "VmRSS"), fd_count(pid)
    alive = lp.alive()
    lp.kill()
    print("figure: %d sequential sessions in %.1f s; listener RSS %s KiB "
          "after %d, %s KiB after all; fds %s then %s" % (
              SESSIONS, took, before, warm_at, after, fds_before, fds_after))
    check("%d sequential sessions on one -k listener all end cleanly"
          % SESSIONS, alive and not failures, "failures %r" % failures[:3])
    check("no file descriptor leaked over %d sessions" % SESSIONS,
          fds_before is not None and fds_before == fds_after,
          "fds %s then %s" % (fds_before, fds_after))
    if memory_checked("memory over %d sessions" % SESSIONS):
        check("no memory leaked over %d sessions (RSS within %d KiB)"
              % (SESSIONS, SLACK_KIB),
              before is not None and after is not None and
              after - before <= SLACK_KIB,
              "RSS %s then %s KiB" % (before, after))
    home_l.cleanup()
    home_c.cleanup()


def signals_when_blocked():
    """SIGTERM ends a pipe-mode session even while a thread is blocked:
    the connector in a socket write, the listener in a write to a stdout
    nobody reads.  Both report the signal (128+15), each within seconds."""
    home_l, home_c = Home(), Home()
    r, w = os.pipe()            # the listener's stdout; never read
    lp = subprocess.Popen([BIN, "-l", "127.0.0.1:0"], env=home_l.env,
                          stdin=subprocess.DEVNULL, stdout=w,
                          stderr=subprocess.PIPE)
    os.close(w)
    port = None
    line = lp.stderr.readline().decode()
    m = LISTENING.search(line)
    if m:
        port = int(m.group(2))
    feeder = subprocess.Popen(["head", "-c", str(64 << 20), "/dev/zero"],
                              stdout=subprocess.PIPE)
    cp = Proc(["-c", "127.0.0.1:%d" % port], home_c, stdin=feeder.stdout)
    feeder.stdout.close()
    time.sleep(1.5)             # both buffers fill up; everyone blocks
    results = []
    for who, proc, pid in (("connector", cp, cp.p.pid),
                           ("listener", lp, lp.pid)):
        os.kill(pid, signal.SIGTERM)
        started = time.monotonic()
        try:
            rc = proc.wait(10) if who == "connector" else lp.wait(10)
        except subprocess.TimeoutExpired:
            lp.kill()
            rc = lp.wait()
        took = time.monotonic() - started
        err = proc.err() if who == "connector" else \
            lp.stderr.read().decode()
        errs = [ln for ln in err.splitlines() if ln.startswith("x25519chat:")]
        check("SIGTERM ends a blocked %s: 143 within 5 s, one error line "
              "naming the signal" % who,
              rc == 143 and took < 5 and len(errs) == 1 and
              "signal 15" in errs[0],
              "exit %s after %.1f s, errors %r" % (rc, took, errs))
    feeder.wait()
    os.close(r)
    home_l.cleanup()
    home_c.cleanup()


def main():
    valgrind_session()
    valgrind_peer_failure()
    flat_memory()
    many_sessions()
    signals_when_blocked()
    finish()


if __name__ == "__main__":
    main()
