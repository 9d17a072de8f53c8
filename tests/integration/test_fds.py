"""Running out of file descriptors (EMFILE): lb pauses accepting instead of
spinning, says so in its log, and serves again as soon as descriptors free up."""
import os
import resource
import socket
import time

from harness import check, eq, wait_until


def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_emfile_pauses_accepting_without_spinning(t):
    b1 = t.backend("b1")
    lb = t.lb(t.config(backends=[b1], timeouts={"client_header": "10s", "client_idle": "10s"}))
    eq(lb.conn().request("GET", "/").status, 200, "before the limit")
    nfds = len(os.listdir("/proc/%d/fd" % lb.pid))
    # room for 4 more descriptors only (soft limit; the hard one stays)
    _, hard = resource.prlimit(lb.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(lb.pid, resource.RLIMIT_NOFILE, (nfds + 4, hard))
    socks = []
    for _ in range(30):  # far more than it can accept: the rest wait in the kernel's backlog
        s = socket.create_connection(("127.0.0.1", lb.port), timeout=2)
        socks.append(s)
    wait_until(lambda: "pausing accepts" in lb.stderr_text(), 5 * t.slow, interval=0.05,
               what="lb to log that it pauses accepting")
    cpu0, t0 = _cpu_s(lb.pid), time.monotonic()
    time.sleep(1.0)  # a fixed window: what is measured is the CPU spent in it
    cpu = _cpu_s(lb.pid) - cpu0
    spent = time.monotonic() - t0
    # spinning on accept() would burn the whole second; pausing 100 ms at a time costs little
    check(cpu < 0.25 * spent * t.slow, "lb used %.2fs of CPU in %.2fs while out of descriptors" % (cpu, spent))
    for s in socks:
        s.close()
    resource.prlimit(lb.pid, resource.RLIMIT_NOFILE, (1024, hard))

    def served():
        try:
            return lb.conn().request("GET", "/").status == 200
        except Exception:
            return False

    wait_until(served, 5 * t.slow, interval=0.1, what="lb to serve again once descriptors are free")
    st = lb.stats()
    check(st["connections"]["current"] <= 2, "connections left open: %d" % st["connections"]["current"])
