"""
dnsserver.py - a small authoritative DNS server for the discovery tests
(Python 3 standard library only; UDP on 127.0.0.1).

It answers A, AAAA and SRV questions from a table the test changes while lb
runs, with the TTLs the test sets; SRV answers carry the targets' addresses
in the additional section unless told not to. A name can be made to answer
SERVFAIL, REFUSED or NXDOMAIN, or to give an empty answer (NOERROR, no
records); the whole server can go silent (it reads and drops every query)
or be stopped (the port then refuses). Every question is counted.

    dns = DnsServer(t.port())             # started; t.on_cleanup(dns.stop)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    dns.set("_http._tcp.api.test", "SRV", [(10, 5, 8080, "b1.api.test")], ttl=1)
    dns.fail("api.test", "servfail")      # or "refused", "nxdomain", "empty"; None to answer again
    dns.silent = True
    dns.no_additional.add("_http._tcp.api.test")   # its SRV answers without the targets' addresses

Unknown names are NXDOMAIN; a known name without records of the type asked
is NODATA (NOERROR, empty answer).
"""

import collections
import select
import socket
import struct
import threading

TYPES = {"A": 1, "AAAA": 28, "SRV": 33}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"servfail": 2, "nxdomain": 3, "refused": 5}


def _norm(name):
    return name.lower().rstrip(".")


def _encode_name(name):
    out = b""
    for label in _norm(name).split("."):
        if label:
            b = label.encode()
            out += bytes([len(b)]) + b
    return out + b"\x00"


def _read_name(msg, off):
    """The question's name (queries are never compressed); (name, offset after)."""
    labels = []
    for _ in range(128):
        if off >= len(msg):
            raise ValueError("truncated name")
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels), off
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    raise ValueError("name too long")


class DnsServer:
    def __init__(self, port, host="127.0.0.1"):
        self.host = host
        self.port = port
        self.addr = "%s:%d" % (host, port)
        self.lock = threading.Lock()
        self.records = {}  # name -> {"A": ([...], ttl), ...}
        self.failures = {}  # name -> "servfail" | "refused" | "nxdomain" | "empty"
        self.silent = False  # read and drop every query
        self.srv_additional = True  # targets' addresses in the additional section ...
        self.no_additional = set()  # ... except for these SRV names
        self.queries = collections.Counter()  # (name, type) -> count
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    # --- the table -----------------------------------------------------------

    def set(self, name, rtype, values, ttl=1):
        """A/AAAA: a list of addresses; SRV: a list of (priority, weight, port, target)."""
        with self.lock:
            self.records.setdefault(_norm(name), {})[rtype] = (list(values), ttl)

    def remove(self, name):
        with self.lock:
            self.records.pop(_norm(name), None)

    def fail(self, name, how):
        with self.lock:
            if how is None:
                self.failures.pop(_norm(name), None)
            else:
                self.failures[_norm(name)] = how

    def count(self, name, rtype):
        with self.lock:
            return self.queries[(_norm(name), rtype)]

    def stop(self):
        if not self._stop.is_set():
            self._stop.set()
            self._t.join(2)
            self.sock.close()

    # --- answering -----------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():  # bounded by stop()
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                msg, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            try:
                resp = self._answer(msg)
            except (ValueError, IndexError, struct.error):
                continue
            if resp is not None:
                try:
                    self.sock.sendto(resp, peer)
                except OSError:
                    pass

    def _rr(self, name_bytes, rtype, ttl, rdata):
        return name_bytes + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata

    def _rdata(self, rtype, value):
        if rtype == "A":
            return socket.inet_pton(socket.AF_INET, value)
        if rtype == "AAAA":
            return socket.inet_pton(socket.AF_INET6, value)
        prio, weight, port, target = value
        return struct.pack("!HHH", prio, weight, port) + _encode_name(target)

    def _answer(self, msg):
        ident, flags, qd = struct.unpack("!HHH", msg[:6])
        if flags & 0x8000 or qd != 1:
            return None
        qname, off = _read_name(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        name = _norm(qname)
        tname = TYPE_NAMES.get(qtype, str(qtype))
        with self.lock:
            self.queries[(name, tname)] += 1
            if self.silent:
                return None
            how = self.failures.get(name)
            entry = self.records.get(name)
            answers, extra = [], []
            rcode = 0
            if how in RCODES:
                rcode = RCODES[how]
            elif how == "empty":
                pass
            elif entry is None:
                rcode = 3
            elif tname in entry:
                values, ttl = entry[tname]
                for v in values:
                    answers.append(self._rr(b"\xc0\x0c", qtype, ttl, self._rdata(tname, v)))
                    if tname == "SRV" and self.srv_additional and name not in self.no_additional:
                        target = self.records.get(_norm(v[3]), {})
                        for t in ("A", "AAAA"):
                            tvals, tttl = target.get(t, ([], 0))
                            for a in tvals:
                                extra.append(self._rr(_encode_name(v[3]), TYPES[t], tttl, self._rdata(t, a)))
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
        head = struct.pack("!HHHHHH", ident, rflags, 1, len(answers), 0, len(extra))
        return head + question + b"".join(answers) + b"".join(extra)
