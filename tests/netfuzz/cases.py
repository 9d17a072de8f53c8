"""
cases.py - the seed corpus, the case format and the deterministic mutator.

A case is one round of a lane: what a client sends to lb and what the
scripted backend answers to the requests lb forwards.

    {"index": N,                              position in the generator's sequence
     "client": {"writes": [[DATA, PAUSE_MS], ...],
                "end": "read" | "half-close" | "close" | "reset",
                "linger_ms": MS},             close/reset: how long to read first
     "backend": [PLAN, ...]}                  the k-th request the backend gets in
                                              this case is answered by PLAN k (the
                                              last plan answers any further ones)
    PLAN = {"after": "head" | "body",         answer once the head, or the whole
                                              request body, has arrived
            "writes": [[DATA, PAUSE_MS], ...],
            "end": "keep" | "close" | "reset" | "hang" | "echo"}

Every write waits PAUSE_MS before it goes out, so a split head reaches lb in
several reads. In memory DATA is bytes; in JSON it is the latin-1 decoding of
those bytes, so a reproducer holds the exact bytes and still reads as HTTP.

Case N of seed S depends on nothing but (S, N): it is drawn from its own PRNG
seeded with "S:N". The same seed gives the same sequence of cases however many
lanes play it and whatever happened to the cases before.
"""

import os
import random

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

CLIENT_ENDS = ("read", "half-close", "close", "reset")
BACKEND_ENDS = ("keep", "close", "reset", "hang", "echo")
AFTERS = ("head", "body")

# Bytes worth inserting: framing and line structure are where parsers go wrong.
TOKENS = (
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b" ", b"\t", b":", b";", b",", b"\x00", b"\x7f", b"\xff",
    b"0", b"-1", b"ffffffffffffffffff", b"chunked", b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n", b"Content-Length: 5\r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Connection: close\r\n", b"Connection: keep-alive\r\n", b"Connection: upgrade\r\n",
    b"Upgrade: websocket\r\n", b"Expect: 100-continue\r\n", b"Host: other\r\n", b";ext=\"v\"",
    b"\r\n0\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
)

# Header values are blown up to these sizes. Many sit near 15 KiB (15360,
# where lb stops waiting for a head) and 16 KiB (its buffer size): a limit is
# where the code paths that are rarely taken live.
BLOW_UP_SIZES = (1000, 4000, 8000, 14500, 15000, 15300, 15400, 15700, 16100, 16500, 17000, 24000)

# Nothing the mutator makes grows beyond this (a few limits over lb's buffers).
MAX_DATA = 64 * 1024


class Corpus:
    """The seed files: requests/*.http and responses/*.http, in name order so
    that a seed's number does not depend on the file system."""

    def __init__(self, root=SEEDS):
        self.requests = _load(os.path.join(root, "requests"))
        self.responses = _load(os.path.join(root, "responses"))
        # "bad-" requests are the ones lb refuses before any backend sees them
        self.good_requests = [s for s in self.requests if not s[0].startswith("bad-")]
        if not self.requests or not self.responses:
            raise SystemExit("netfuzz: no seeds under %s" % root)


def _load(d):
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".http"):
            with open(os.path.join(d, name), "rb") as f:
                out.append((name[:-5], f.read()))
    return out


# --------------------------------------------------------------------------
# JSON form of a case


def _writes_to_json(writes):
    return [[data.decode("latin-1"), pause] for data, pause in writes]


def _writes_from_json(writes):
    return [(data.encode("latin-1"), int(pause)) for data, pause in writes]


def to_json(case):
    c = case["client"]
    return {
        "index": case["index"],
        "client": {"writes": _writes_to_json(c["writes"]), "end": c["end"], "linger_ms": c["linger_ms"]},
        "backend": [{"after": p["after"], "writes": _writes_to_json(p["writes"]), "end": p["end"]}
                    for p in case["backend"]],
    }


def from_json(obj):
    """A case from its JSON form; ValueError when a field is missing or unknown."""
    try:
        c = obj["client"]
        case = {
            "index": int(obj.get("index", -1)),
            "client": {"writes": _writes_from_json(c["writes"]), "end": c["end"],
                       "linger_ms": int(c.get("linger_ms", 0))},
            "backend": [{"after": p["after"], "writes": _writes_from_json(p["writes"]), "end": p["end"]}
                        for p in obj["backend"]],
        }
    except (KeyError, TypeError) as e:
        raise ValueError("not a case: %r" % (e,))
    if case["client"]["end"] not in CLIENT_ENDS or not case["backend"] or \
            any(p["after"] not in AFTERS or p["end"] not in BACKEND_ENDS for p in case["backend"]):
        raise ValueError("not a case: unknown end or after, or no backend plan")
    return case


# --------------------------------------------------------------------------
# mutations: each takes (rng, data, other seeds of the same side) -> bytes


def _head_lines(data):
    """(start, end) of every header line (after the first line, before the
    blank line), terminators included; CRLF and bare LF both end a line."""
    lines = []
    pos = data.find(b"\n")
    if pos < 0:
        return lines
    pos += 1
    while pos < len(data):  # bounded: pos grows every turn
        nl = data.find(b"\n", pos)
        if nl < 0 or data[pos:nl].rstrip(b"\r") == b"":
            break
        lines.append((pos, nl + 1))
        pos = nl + 1
    return lines


def m_flip(rng, data, others):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def m_insert(rng, data, others):
    i = rng.randint(0, len(data))
    if rng.random() < 0.7:
        ins = rng.choice(TOKENS)
    else:
        ins = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return data[:i] + ins + data[i:]


def m_delete(rng, data, others):
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 16):]


def m_dup_line(rng, data, others):
    lines = _head_lines(data)
    if not lines:
        return m_insert(rng, data, others)
    a, b = rng.choice(lines)
    return data[:b] + data[a:b] * rng.randint(1, 3) + data[b:]


def m_drop_line(rng, data, others):
    lines = _head_lines(data)
    if not lines:
        return m_delete(rng, data, others)
    a, b = rng.choice(lines)
    return data[:a] + data[b:]


def m_blow_up(rng, data, others):
    """One header value grows to thousands of bytes."""
    lines = _head_lines(data)
    if not lines:
        return m_insert(rng, data, others)
    a, b = rng.choice(lines)
    end = b - 2 if data[a:b].endswith(b"\r\n") else b - 1
    size = rng.choice(BLOW_UP_SIZES) + rng.randint(-200, 200)
    fill = bytes([rng.choice(b"abcxyz09-")]) * max(0, size - (end - a))
    return data[:end] + fill + data[end:]


def m_many_headers(rng, data, others):
    lines = _head_lines(data)
    at = lines[-1][1] if lines else data.find(b"\n") + 1
    n = rng.choice((20, 60, 99, 101, 130))
    extra = b"".join(b"X-Fuzz-%d: v%d\r\n" % (i, i) for i in range(n))
    return data[:at] + extra + data[at:]


def m_splice(rng, data, others):
    _, other = rng.choice(others)
    return data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]


def m_truncate(rng, data, others):
    return data[:rng.randint(1, len(data))]


def m_line_ending(rng, data, others):
    """One CRLF becomes a bare LF or a bare CR."""
    spots = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\r\n"]
    if not spots:
        return m_insert(rng, data, others)
    i = rng.choice(spots)
    return data[:i] + rng.choice((b"\n", b"\r")) + data[i + 2:]


# (weight, mutation); blow-ups and line surgery are weighted up because byte
# noise alone mostly makes requests the parser rejects at once
MUTATIONS = (
    (3, m_flip), (3, m_insert), (2, m_delete), (2, m_dup_line), (2, m_drop_line),
    (4, m_blow_up), (1, m_many_headers), (2, m_splice), (2, m_truncate), (2, m_line_ending),
)


def _weighted(rng, table):
    total = sum(w for w, _ in table)
    x = rng.uniform(0, total)
    for w, v in table:
        x -= w
        if x <= 0:
            return v
    return table[-1][1]


def mutate(rng, data, others, rounds):
    for _ in range(rounds):
        if not data:
            break
        data = _weighted(rng, MUTATIONS)(rng, data, others)[:MAX_DATA]
    return data


# --------------------------------------------------------------------------
# scripts


def split_writes(rng, data):
    """Bytes cut into writes with small pauses: lb must resume a head or a
    chunk size line wherever a read ends."""
    r = rng.random()
    if r < 0.5 or len(data) < 2:
        return [(data, 0)]
    if r < 0.9:
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 6))))
    else:
        # the first bytes one at a time, then the rest
        cuts = list(range(1, min(len(data), rng.randint(2, 16))))
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    return [(p, 0 if i == 0 else rng.choice((0, 1, 5, 20, 40))) for i, p in enumerate(pieces)]


class Mutator:
    """Case generator over a corpus: case(i) is a pure function of (seed, i)."""

    def __init__(self, corpus, seed):
        self.corpus = corpus
        self.seed = seed

    def case(self, index):
        rng = random.Random("%d:%d" % (self.seed, index))
        reqs = self.corpus.requests
        # one request, or two or three pipelined on the connection; mostly
        # requests lb forwards, since a refused one never reaches the backend
        # script and its paths
        n = _weighted(rng, ((80, 1), (15, 2), (5, 3)))
        data = b"".join(rng.choice(self.corpus.good_requests if rng.random() < 0.75 else reqs)[1]
                        for _ in range(n))
        if rng.random() < 0.3:
            data = mutate(rng, data, reqs, rng.randint(1, 3))
        end = _weighted(rng, ((70, "read"), (8, "half-close"), (12, "close"), (10, "reset")))
        client = {"writes": split_writes(rng, data), "end": end,
                  "linger_ms": rng.choice((0, 10, 50, 150)) if end in ("close", "reset") else 0}
        plans = [self._plan(rng) for _ in range(n + rng.randint(0, 1))]
        return {"index": index, "client": client, "backend": plans}

    def _plan(self, rng):
        resps = self.corpus.responses
        name, data = rng.choice(resps)
        if rng.random() < 0.35:
            data = mutate(rng, data, resps, rng.randint(1, 3))
        if name.startswith("101") and rng.random() < 0.7:
            end = "echo"  # a tunnel: whatever comes next goes back
        else:
            end = _weighted(rng, ((60, "keep"), (15, "close"), (8, "reset"), (8, "hang"), (4, "echo")))
        return {"after": "head" if rng.random() < 0.25 else "body", "writes": split_writes(rng, data), "end": end}
