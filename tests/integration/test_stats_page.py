"""The stats page (GET /stats): what it is made of, and what it does in a browser.

test_stats_page_self_contained needs only lb: the page's structure, that it
fetches nothing from outside and runs nothing from its data, and that its
Content-Security-Policy admits its own script and style.

The others load the page into headless Chromium (browser.py: the DevTools
protocol over a pipe) against a running lb, and look at it the way an
operator does: rows and their colours, charts, events, the drain button with
the admin token, the dark theme, 1,000 backends and the filter. A test is
skipped (a `skip` line, neither passed nor failed) only when Chromium cannot
run here at all.

Screenshots go to screenshots/ in the test's directory (kept with --keep).
LB_SCREENSHOTS=DIR copies them to DIR as well. The README's picture is the
browser test's stats-page.png, remade so:

    LB_README_SCREENSHOT=docs/stats-page.png tests/integration/run.py -k stats_page_browser
"""

import base64
import hashlib
import html.parser
import json
import os
import re
import shutil
import threading
import time

from harness import HttpConn, Skip, check, eq, fail, timeout, wait_until

TOKEN = "page-test-token"
PAGE_MAX = 60 * 1024


def _needs_lb_backend(t):
    if t.use_py_backend():
        fail("these tests need bin/lb-backend (/__control); build it with make")


def _control(t, b, query):
    c = HttpConn(t, b.port)
    try:
        r = c.request("GET", "/__control?" + query, headers=[("Connection", "close")], host="127.0.0.1")
    finally:
        c.close()
    eq(r.status, 200, "lb-backend %s /__control?%s" % (b.name, query))


def _browser(t, **kw):
    import browser
    try:
        return browser.Browser(t, **kw)
    except browser.Unavailable as e:
        raise Skip("headless Chromium cannot run here: %s" % e)


def _shot(t, page, name, readme=False):
    page.eval("window.scrollTo(0, 0); new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))")
    path = page.screenshot(os.path.join(t.tmp, "screenshots", name))
    dest = os.environ.get("LB_SCREENSHOTS")
    if dest:
        os.makedirs(dest, exist_ok=True)
        shutil.copy(path, os.path.join(dest, name))
    readme_path = os.environ.get("LB_README_SCREENSHOT")
    if readme and readme_path:
        shutil.copy(path, readme_path)
    return path


def _page_problems(page, allow=()):
    """Script exceptions, console errors and refusals (CSP) on the page, but those ALLOW matches."""
    return [p for p in page.problems() if not any(a in p for a in allow)]


# --------------------------------------------------------------------------
# the page's make-up, without a browser


class _Parsed(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []  # (tag, attrs dict)
        self.texts = {"script": [], "style": []}
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in self.texts:
            self._in = tag
            self.texts[tag].append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.texts[self._in][-1] += data


def _digest(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_stats_page_self_contained(t):
    b1 = t.backend("b1")
    cfg = t.config(backends=[b1])
    cfg["admin"]["token"] = TOKEN
    lb = t.lb(cfg)
    r = lb.admin_get("/stats")
    eq(r.status, 200, "GET /stats")
    eq(r.header("Content-Type"), "text/html; charset=utf-8", "Content-Type")
    eq(r.header("Cache-Control"), "no-store", "Cache-Control")
    check(len(r.body) < PAGE_MAX, "the page is %d bytes, over %d" % (len(r.body), PAGE_MAX))
    eq(lb.admin_get("/").body, r.body, "GET / is the page too")
    text = r.body.decode("utf-8")

    p = _Parsed()
    p.feed(text)
    p.close()
    tags = p.tags
    scripts = [a for tag, a in tags if tag == "script"]
    styles = [a for tag, a in tags if tag == "style"]
    eq((scripts, styles), ([{}], [{}]), "script and style elements (attributes of each)")
    for tag, a in tags:
        for k, v in a.items():
            check(not k.startswith("on"), "inline event handler %s on <%s>" % (k, tag))
            check(k != "style", "style attribute on <%s> (the CSP refuses it)" % tag)
            check(k != "src", "<%s src=%r>: the page must load nothing" % (tag, v))
            if k == "href":
                eq((tag, a.get("rel"), v), ("link", "icon", "data:,"), "the only href (an empty icon)")
    for bad in ("http://", "https://", "@import", "@font-face", "url(", "<iframe", "<object", "<embed"):
        check(bad not in text.lower(), "the page has %r" % bad)
    check(not re.search(r"""["'(=]\s*//[a-z0-9]""", text, re.I), "a protocol-relative URL in the page")
    for dangerous in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        check(dangerous not in p.texts["script"][0], "the script uses %s" % dangerous)

    ids = {a.get("id"): (tag, a) for tag, a in tags if a.get("id")}
    for want, tag, typ in [("filter", "input", "search"), ("token", "input", "password"), ("order", "input", "checkbox"),
                           ("theme", "button", "button"), ("events", "ol", None), ("results", "ol", None),
                           ("pools", "div", None), ("listeners", "table", None), ("summary", "div", None),
                           ("count", "span", None), ("evkind", "select", None), ("live", "span", None)]:
        check(want in ids, "no element with id %r" % want)
        eq(ids[want][0], tag, "element #%s" % want)
        if typ:
            eq(ids[want][1].get("type"), typ, "type of #%s" % want)
    eq(ids["token"][1].get("autocomplete"), "off", "autocomplete of the token field")
    acts = [(a.get("data-act")) for tag, a in tags if tag == "button" and "data-act" in a]
    eq(acts, ["drain", "active", "maint", "weight"], "action buttons of a backend row")
    check(re.search(r'data-act="drain">drain</button>.*data-act="active">activate</button>.*'
                    r'data-act="maint">maint</button>', text, re.S), "buttons labelled drain, activate, maint")

    csp = r.header("Content-Security-Policy")
    check(csp, "no Content-Security-Policy on the page")
    d = dict((part.strip().split(" ", 1) + [""])[:2] for part in csp.split(";"))
    eq(d.get("default-src"), "'none'", "default-src")
    eq(d.get("script-src"), _digest(p.texts["script"][0]), "script-src: the digest of the page's script")
    eq(d.get("style-src"), _digest(p.texts["style"][0]), "style-src: the digest of the page's style")
    eq(d.get("connect-src"), "'self'", "connect-src")
    eq(d.get("frame-ancestors"), "'none'", "frame-ancestors")
    eq(r.header("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    check(lb.admin_get("/stats.json").header("Content-Security-Policy") is None, "CSP on /stats.json too")


# --------------------------------------------------------------------------
# in a browser

# the backends' rows, as the page shows them: key -> what the test looks at
ROWS_JS = """(() => {
  const out = {};
  for (const tr of document.querySelectorAll('tr.be')) {
    const c = (n) => tr.querySelector('[data-c=' + n + ']');
    const svg = tr.querySelector('svg');
    out[tr.dataset.key] = {
      cls: tr.className, hidden: tr.hidden, state: c('state').textContent, err: c('err').textContent,
      lat: c('lat').textContent, check: c('check').textContent, weight: c('weight').textContent,
      bg: getComputedStyle(tr.cells[1]).backgroundColor,
      points: +(svg.dataset.points || 0), path: (svg.querySelectorAll('path')[2].getAttribute('d') || '').length,
      disabled: [...tr.querySelectorAll('button')].map((b) => b.disabled),
    };
  }
  return out;
})()"""


def _rows(page):
    return page.eval(ROWS_JS)


def _rgb(css):
    m = re.match(r"rgba?\((\d+), (\d+), (\d+)", css or "")
    return tuple(int(x) for x in m.groups()) if m else None


def _events_text(page):
    return page.eval("[...document.querySelectorAll('#events li')].map((li) => li.textContent).join('\\n')")


def _results_text(page):
    return page.eval("document.getElementById('results').textContent")


class _Traffic:
    """Requests to the listener from a thread until stopped: GET / (pool api)
    and GET /s/x (pool search), about 40 a second, errors ignored."""

    def __init__(self, t, lb):
        self.t, self.lb = t, lb
        self.stop_ev = threading.Event()
        self.n = 0
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()
        t.on_cleanup(self.stop)

    def _run(self):
        c = None
        for i in range(1000000):  # bounded; ends when stopped
            if self.stop_ev.is_set():
                break
            try:
                if c is None:
                    c = HttpConn(self.t, self.lb.port, timeout=5)
                c.request("GET", "/" if i % 3 else "/s/x")
                self.n += 1
            except Exception:
                if c:
                    c.close()
                c = None
            self.stop_ev.wait(0.025)
        if c:
            c.close()

    def stop(self):
        self.stop_ev.set()
        self.th.join(10)


@timeout(90)
def test_stats_page_browser(t):
    _needs_lb_backend(t)
    names = ["b1", "slow", "err", "down"]
    bs = {n: t.backend(n) for n in names}
    s1 = t.backend("s1", zone="zone-a")
    s2 = t.backend("s2", zone="zone-b")
    # "err" answers half its requests with 500s, failures that never trip its
    # breaker here, so it keeps serving (an outlier by its error rate). The
    # panic threshold 0.7 holds with 3 of 4 healthy, and puts the pool in
    # panic once b1 is drained (2 of the 3 active ones healthy)
    api = {"name": "api", "balance": "round-robin", "slow_start": "0s", "panic_threshold": 0.7,
           "health": {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "200ms",
                      "rise": 1, "fall": 2},
           "breaker": {"consecutive_failures": 0, "failure_rate": 1.0, "min_requests": 1000000},
           "backends": [{"name": n, "address": bs[n].addr} for n in names]}
    search = {"name": "search", "locality": "zone-aware", "slow_start": "0s",
              "backends": [{"name": "s1", "address": s1.addr, "zone": "zone-a"},
                           {"name": "s2", "address": s2.addr, "zone": "zone-b"}]}
    cfg = t.config(pools=[api, search], lb={"zone": "zone-a"},
                   listener={"pool": "api", "routes": [{"path_prefix": "/s/", "pool": "search"}]})
    cfg["admin"]["token"] = TOKEN
    _control(t, bs["slow"], "latency=150ms")
    _control(t, bs["err"], "error_rate=0.5")
    _control(t, bs["down"], "health=503")
    lb = t.lb(cfg)
    _Traffic(t, lb)

    br = _browser(t)
    page = br.page("http://127.0.0.1:%d/stats" % lb.admin_port, 1500, 1000)
    # rows are made at once and filled (cells, chart, buttons) when on screen, a frame later
    page.wait("document.querySelectorAll('tr.be').length === 6 && "
              "[...document.querySelectorAll('tr.be')].every((tr) => tr.querySelector('svg'))", 10,
              "the six backend rows, filled")
    keys = sorted(_rows(page))
    eq(keys, sorted(["api/" + n for n in names] + ["search/s1", "search/s2"]), "rows (pool/backend)")

    # states and whole-row colours
    page.wait("(() => { const r = document.querySelector('tr[data-key=\"api/down\"]');"
              " return r.classList.contains('st-down') && /^down \\d+s/.test(r.cells[2].textContent); })()",
              10, "api/down shown down, with its age")
    rows = _rows(page)
    down, b1 = rows["api/down"], rows["api/b1"]
    check("st-up" in b1["cls"], "api/b1 row class %r" % b1["cls"])
    check(b1["state"].startswith("up "), "api/b1 state cell %r" % b1["state"])
    red, plain = _rgb(down["bg"]), _rgb(b1["bg"])
    check(red and plain and red != plain and red[0] > red[1] + 20, "row colours: down %s, up %s" % (down["bg"], b1["bg"]))
    check(down["check"].startswith("✗"), "api/down last check %r" % down["check"])
    check(b1["check"].startswith("✓") and "ms" in b1["check"], "api/b1 last check %r" % b1["check"])

    # charts: the history is there at once, and grows
    page.wait("+document.querySelector('tr[data-key=\"api/b1\"] svg').dataset.points >= 3", 10,
              "api/b1's chart to have points")
    check(_rows(page)["api/b1"]["path"] > 20, "api/b1's chart has no line: %r" % _rows(page)["api/b1"])
    page.wait("[...document.querySelectorAll('section[data-pool=\"api\"] figure svg')]"
              ".every((s) => +s.dataset.points >= 3)", 5, "pool api's three charts")

    # the erroring and the slow backend, as figures and as an outlier badge
    page.wait("(() => { const r = document.querySelector('tr[data-key=\"api/err\"]');"
              " return parseFloat(r.querySelector('[data-c=err]').textContent) > 10 &&"
              " r.querySelector('.b.k-outlier') !== null; })()", 20, "api/err with errors and an outlier badge")
    lat = _rows(page)["api/slow"]["lat"]
    check(re.match(r"[\d.]+ / [\d.]+$", lat) and float(lat.split("/")[1]) >= 100, "api/slow p50 / p99: %r" % lat)
    check(page.eval("[...document.querySelectorAll('#summary .b')].some((b) => /outlier/.test(b.textContent))"),
          "no outlier badge in the summary")

    # events: the health transition
    page.wait("[...document.querySelectorAll('#events li')].some((li) => /api\\/down/.test(li.textContent)"
              " && /health down/.test(li.textContent))", 10, "the health event of api/down")
    _shot(t, page, "stats-page-light.png")

    # without a token the buttons are off; a wrong token is refused on the page
    check(all(_rows(page)["api/b1"]["disabled"]), "buttons enabled before a token is typed")
    page.type("#token", "wrong-token")
    page.wait("!document.querySelector('tr[data-key=\"api/b1\"] button[data-act=drain]').disabled", 5,
              "the buttons to be enabled")
    page.click("tr[data-key='api/b1'] button[data-act=drain]")
    page.wait("/drain api\\/b1: 403 Forbidden/.test(document.querySelector('#results li').textContent)", 5,
              "the 403 answer on the page")
    eq(lb.backend_stats("api", "b1")["admin_state"], "active", "api/b1 after a wrong token")

    # the right token: drain b1 from the page
    page.type("#token", TOKEN)
    eq(page.eval("sessionStorage.getItem('lb.admin.token')"), TOKEN, "the token in sessionStorage")
    check(TOKEN not in page.eval("JSON.stringify(localStorage) + location.href"), "the token in localStorage or the URL")
    page.click("tr[data-key='api/b1'] button[data-act=drain]")
    page.wait("/drain api\\/b1: 200 OK · now drain/.test(document.querySelector('#results li').textContent)", 5,
              "the confirmation of the drain on the page")
    wait_until(lambda: lb.backend_stats("api", "b1")["admin_state"] == "drain", 3 * t.slow, what="api/b1 drained")
    page.wait("[...document.querySelectorAll('#events li')].some((li) => /api\\/b1/.test(li.textContent)"
              " && /state active -> drain by 127\\.0\\.0\\.1/.test(li.textContent))", 5, "the admin event of the drain")
    page.wait("document.querySelector('tr[data-key=\"api/b1\"]').classList.contains('st-drain')", 5,
              "api/b1's row coloured as draining")

    # a weight from the page
    page.type("tr[data-key='search/s2'] input", "7")
    page.click("tr[data-key='search/s2'] button[data-act=weight]")
    page.wait("/weight 7 search\\/s2: 200 OK/.test(document.querySelector('#results li').textContent)", 5,
              "the confirmation of the weight")
    wait_until(lambda: lb.backend_stats("search", "s2")["weight"] == 7, 3 * t.slow, what="search/s2 weight 7")

    # b1 drained and down out: the pool is in panic, and "down" takes traffic
    page.wait("/serving in panic/.test(document.querySelector('section[data-pool=\"api\"] .pbadges').textContent)"
              " && document.querySelector('tr[data-key=\"api/down\"]').classList.contains('panic')"
              " && /serving in panic/.test(document.querySelector('tr[data-key=\"api/down\"]').textContent)",
              15, "serving in panic on pool api and on api/down")
    s = lb.backend_stats("api", "down")
    check(s["serving_in_panic"], "/stats.json: api/down not serving in panic: %r" % s)
    _shot(t, page, "stats-page.png", readme=True)

    # dark theme: from the system's preference, and kept by the toggle
    page.color_scheme("dark")
    page.wait("document.documentElement.dataset.theme === 'dark'", 3, "the dark theme")
    bg = _rgb(page.eval("getComputedStyle(document.body).backgroundColor"))
    fg = _rgb(page.eval("getComputedStyle(document.body).color"))
    check(bg and fg and sum(bg) < 120 and sum(fg) > 500, "dark theme colours: background %s, text %s" % (bg, fg))
    down_dark = _rgb(_rows(page)["api/down"]["bg"])
    check(down_dark and down_dark != red and sum(down_dark) < 300, "api/down row in the dark: %s" % (down_dark,))
    _shot(t, page, "stats-page-dark.png")
    page.click("#theme")  # auto -> dark
    page.click("#theme")  # dark -> light, whatever the system says
    eq(page.eval("[document.documentElement.dataset.theme, localStorage.getItem('lb.theme')]"), ["light", "light"],
       "theme after choosing light")

    bad = _page_problems(page, allow=["status of 403", "favicon"])
    check(not bad, "problems on the page: %s" % bad)


def _big_lb(t, n=1000):
    bs = [{"name": "b%d" % i, "address": "127.0.0.1:%d" % (1000 + i)} for i in range(n)]
    bs[500]["state"] = "drain"
    bs[700]["state"] = "maint"
    cfg = t.config(pools=[{"name": "big", "health": {"type": "off"}, "backends": bs}],
                   listener={"pool": "big"})
    return t.lb(cfg)


@timeout(90)
def test_stats_page_1000_backends(t):
    lb = _big_lb(t)
    br = _browser(t)
    t0 = time.monotonic()
    page = br.page("http://127.0.0.1:%d/stats" % lb.admin_port, 1500, 1000)
    page.wait("document.getElementById('count').dataset.total === '1000'", 20, "1,000 rows")
    loaded = time.monotonic() - t0
    limit = 20 * t.slow
    check(loaded < limit, "1,000 rows after %.1fs" % loaded)
    page.wait("document.querySelector('tr[data-key=\"big/b0\"] [data-c=addr]').textContent !== ''", 5,
              "the first rows written")

    # problems first: the drained and the maintained backend lead
    first = page.eval("[...document.querySelectorAll('tr.be')].slice(0, 3).map((r) => r.dataset.key)")
    eq(first, ["big/b500", "big/b700", "big/b0"], "first rows, problems first")
    # rows are written only near the screen: not a thousand every second
    painted = page.eval("[...document.querySelectorAll('tr.be [data-c=addr]')].filter((c) => c.textContent).length")
    check(0 < painted < 300, "%d of 1,000 rows written (only those near the screen should be)" % painted)
    # read-only: no token configured
    check("read-only" in page.eval("document.getElementById('adminnote').textContent"), "no read-only note")
    check(page.eval("[...document.querySelectorAll('tr.be button')].every((b) => b.disabled)"),
          "buttons enabled without admin.token")

    # the filter: a name leaves its rows
    page.type("#filter", "b99")
    page.wait("document.getElementById('count').dataset.shown === '11'", 5, "11 rows shown for 'b99'")
    shown = page.eval("[...document.querySelectorAll('tr.be')].filter((r) => !r.hidden).map((r) => r.dataset.key)")
    eq(sorted(shown), sorted(["big/b99"] + ["big/b99%d" % i for i in range(10)]), "rows shown for 'b99'")
    eq(page.eval("document.getElementById('count').textContent"), "showing 11 of 1,000 backends", "count")
    page.wait("document.querySelector('tr[data-key=\"big/b995\"] [data-c=addr]').textContent === '127.0.0.1:1995'",
              5, "a filtered row written")
    _shot(t, page, "stats-page-1000-filtered.png")
    page.type("#filter", "maint")
    page.wait("document.getElementById('count').dataset.shown === '1'", 5, "1 row shown for 'maint'")
    page.type("#filter", "")
    page.wait("document.getElementById('count').dataset.shown === '1000'", 5, "all rows again")

    # file order on request
    page.click("#order")
    page.wait("document.querySelector('tr.be').dataset.key === 'big/b0'", 5, "file order")

    # a tick with 1,000 backends stays cheap
    page.wait("+document.getElementById('live').dataset.polls >= 3", 10, "three polls")
    ms = float(page.eval("document.getElementById('live').dataset.renderMs"))
    check(ms < 1000, "a tick took %.0f ms to draw with 1,000 backends" % ms)
    bad = _page_problems(page, allow=["favicon"])
    check(not bad, "problems on the page: %s" % bad)
    with open(os.path.join(t.tmp, "timings.json"), "w") as f:
        json.dump({"rows_loaded_s": loaded, "first_draw_ms_after_open": page.eval("+document.getElementById('live').dataset.firstMs"),
                   "render_ms": ms, "rows_written": painted}, f)


@timeout(60)
def test_stats_page_marks_backends_from_dns(t):
    """A pool with discover shows its DNS name and how many addresses it gave; its backends
    carry a `dns` badge; a failing resolver turns the pool's badge to `dns stale`."""
    from dnsserver import DnsServer
    dns = DnsServer(t.port())
    t.on_cleanup(dns.stop)
    port = t.port()
    for i in (2, 3):
        t.backend("b%d" % i, host="127.0.0.%d" % i, port=port)
    dns.set("api.test", "A", ["127.0.0.2", "127.0.0.3"], ttl=1)
    lb = t.lb(t.config(pools=[{"name": "api", "health": {"type": "off"}, "slow_start": "0s",
                               "discover": {"name": "api.test", "port": port}}],
                       extra={"resolvers": [dns.addr]}))
    br = _browser(t)
    page = br.page("http://127.0.0.1:%d/stats" % lb.admin_port, 1500, 800)
    page.wait("document.querySelectorAll('tr.be').length === 2 && "
              "[...document.querySelectorAll('tr.be')].every((tr) => tr.querySelector('svg'))", 10,
              "the two discovered rows, filled")
    badges = "document.querySelector('section[data-pool=\"api\"] .pbadges').textContent"
    page.wait("/dns api\\.test A: 2/.test(%s)" % badges, 5, "the pool's dns badge")
    rows = page.eval("[...document.querySelectorAll('tr.be')].map((tr) => [tr.dataset.key, "
                     "[...tr.querySelectorAll('.b')].map((b) => b.textContent)])")
    eq(sorted(k for k, _ in rows), ["api/127.0.0.2:%d" % port, "api/127.0.0.3:%d" % port], "rows")
    for k, bs in rows:
        check("dns" in bs, "row %s has a dns badge: %r" % (k, bs))
    dns.fail("api.test", "servfail")
    page.wait("/dns stale/.test(%s)" % badges, 8 * t.slow, "dns stale on the pool")
    eq(page.eval("document.querySelectorAll('tr.be').length"), 2, "both rows kept while stale")
    bad = _page_problems(page, allow=["favicon"])
    check(not bad, "problems on the page: %s" % bad)
