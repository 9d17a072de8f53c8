"""
browser.py - headless Chromium driven over the DevTools protocol, for the
stats page tests (Python standard library only).

Chromium runs with --remote-debugging-pipe: the protocol travels over two
pipes, its fd 3 (commands in) and fd 4 (answers and events out), one JSON
text per message, each ended by a NUL byte. No port is opened, so tests
running side by side cannot meet, and nothing else on the machine can drive
the browser.

    b = Browser(t)                       # Unavailable if chromium cannot run here
    page = b.page("http://127.0.0.1:%d/stats" % port)
    page.wait("document.querySelectorAll('tr.be').length == 6", 10, "rows")
    page.click("tr[data-key='api/b1'] button[data-act=drain]")
    page.type("#token", "secret")
    page.screenshot(path)

The browser is closed by the test's cleanup (Browser.close, then SIGKILL if
it lingers). Every wait here has a deadline.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from harness import TestFailure, fail

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class Unavailable(Exception):
    """Chromium is not installed or cannot start in this environment."""


def find_chromium():
    exe = os.environ.get("LB_CHROMIUM")
    if exe:
        return exe if os.access(exe, os.X_OK) else None
    for n in NAMES:
        p = shutil.which(n)
        if p:
            return p
    return None


class ProtocolError(Exception):
    pass


class Browser:
    def __init__(self, ctx, width=1500, height=1000, start_timeout=30.0):
        exe = find_chromium()
        if not exe:
            raise Unavailable("no chromium on PATH (Debian: apt-get install chromium; `make test` installs it)")
        self.ctx = ctx
        self.width, self.height = width, height
        self.log_path = os.path.join(ctx.tmp, "chromium.stderr")
        profile = os.path.join(ctx.tmp, "chromium-profile")
        os.makedirs(profile, exist_ok=True)
        # high fds, so that moving them to 3 and 4 in the child cannot clobber one another
        cmd_r, cmd_w = os.pipe()
        ev_r, ev_w = os.pipe()
        hi_r = _fd_above(cmd_r, 20)
        hi_w = _fd_above(ev_w, 20)
        os.close(cmd_r)
        os.close(ev_w)
        self._w = cmd_w
        self._r = ev_r
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            "--user-data-dir=" + profile, "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--disable-features=Translate,MediaRouter",
            "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1",
            "--window-size=%d,%d" % (width, height), "about:blank",
        ]
        # bash (dash takes one-digit fds only) moves the pipes to the fds chromium expects, then becomes chromium
        script = 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (hi_r, hi_w, hi_r, hi_w)
        env = dict(os.environ, HOME=ctx.tmp, DBUS_SESSION_BUS_ADDRESS="disabled:")
        env.pop("DISPLAY", None)
        self._log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(["/bin/bash", "-c", script] + args, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=self._log, pass_fds=(hi_r, hi_w), env=env)
        except OSError as e:
            raise Unavailable("cannot start %s: %s" % (exe, e))
        finally:
            os.close(hi_r)
            os.close(hi_w)
        self._lock = threading.Condition()
        self._next = 0
        self._answers = {}
        self.events = []  # every event message, in order
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        ctx.on_cleanup(self.close)
        try:
            self.version = self.call("Browser.getVersion", timeout=start_timeout)
        except ProtocolError as e:
            self.close()
            raise Unavailable("%s started but does not answer over the DevTools pipe (%s); its stderr:\n%s"
                              % (exe, e, self.stderr_tail()))

    # ---- the protocol ---------------------------------------------------

    def _read_loop(self):
        buf = b""
        while True:  # ends when chromium closes its end
            try:
                chunk = os.read(self._r, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                try:
                    m = json.loads(msg)
                except ValueError:
                    continue
                with self._lock:
                    if "id" in m:
                        self._answers[m["id"]] = m
                    else:
                        self.events.append(m)
                    self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def call(self, method, params=None, session=None, timeout=10.0):
        with self._lock:
            self._next += 1
            mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise ProtocolError("%s: cannot write to chromium: %s" % (method, e))
        deadline = time.monotonic() + timeout * self.ctx.slow
        with self._lock:
            while mid not in self._answers:  # bounded by deadline
                left = deadline - time.monotonic()
                if self._closed:
                    raise ProtocolError("%s: chromium closed the pipe" % method)
                if left <= 0:
                    raise ProtocolError("%s: no answer within %.0fs" % (method, timeout * self.ctx.slow))
                self._lock.wait(min(left, 0.5))
            m = self._answers.pop(mid)
        if "error" in m:
            raise ProtocolError("%s: %s" % (method, m["error"]))
        return m.get("result", {})

    def page(self, url, width=None, height=None):
        return Page(self, url, width or self.width, height or self.height)

    def stderr_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def close(self):
        if getattr(self, "proc", None) is None or self.proc.poll() is not None:
            self._close_fds()
            return
        try:
            self.call("Browser.close", timeout=3)
        except ProtocolError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self._close_fds()

    def _close_fds(self):
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._w = self._r = -1
        if not self._log.closed:
            self._log.close()


def _fd_above(fd, low):
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


class Page:
    """One tab, attached in flat mode: its commands carry its session id."""

    def __init__(self, browser, url, width, height):
        self.b = browser
        tid = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.call(m)
        self.resize(width, height)
        self.goto(url)

    def call(self, method, params=None, timeout=10.0):
        return self.b.call(method, params, session=self.session, timeout=timeout)

    def resize(self, width, height):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def goto(self, url, timeout_s=15):
        """Navigate and wait until the document has loaded (its script has started)."""
        r = self.call("Page.navigate", {"url": url}, timeout=timeout_s)
        if r.get("errorText"):
            fail("loading %s: %s" % (url, r["errorText"]))
        self.wait("location.href === %s && document.readyState === 'complete'" % json.dumps(url), timeout_s,
                  "%s to load" % url)

    def eval(self, expr, timeout=10.0):
        """The value of a JavaScript expression (a promise is awaited); an exception fails the test."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            fail("JavaScript %r threw: %s" % (expr[:120], (d.get("exception") or {}).get("description") or d.get("text")))
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout_s, what, interval=0.1):
        """Bounded poll until EXPR is truthy in the page; returns its value. An
        exception counts as not yet (the page may be between documents)."""
        deadline = time.monotonic() + timeout_s * self.b.ctx.slow
        last = None
        while True:  # bounded by deadline
            try:
                last = self.eval(expr)
            except TestFailure as e:
                last = "(%s)" % e
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                fail("timed out after %.1fs waiting for %s (last value %r)" % (timeout_s * self.b.ctx.slow, what, last))
            time.sleep(interval)

    def _center(self, selector):
        pos = self.eval("""(() => {
            const e = document.querySelector(%s);
            if (!e) return null;
            e.scrollIntoView({block: 'center', inline: 'center'});
            const r = e.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        })()""" % json.dumps(selector))
        if not pos:
            fail("nothing on the page matches %s" % selector)
        return pos

    def click(self, selector):
        """A real mouse click (pressed and released) at the middle of the element."""
        x, y = self._center(selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            p = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                p.update(button="left", clickCount=1)
            self.call("Input.dispatchMouseEvent", p)

    def type(self, selector, text, clear=True):
        """Focus the element and type TEXT as keyboard input would (input events fire)."""
        self._center(selector)
        self.eval("(() => { const e = document.querySelector(%s); e.focus(); %s })()"
                  % (json.dumps(selector), "e.select && e.select();" if clear else ""))
        if clear:
            self.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Backspace", "code": "Backspace",
                                                 "windowsVirtualKeyCode": 8})
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Backspace", "code": "Backspace",
                                                 "windowsVirtualKeyCode": 8})
        if text:
            self.call("Input.insertText", {"text": text})

    def color_scheme(self, value):
        """Emulate prefers-color-scheme: 'light', 'dark' or '' (the default)."""
        self.call("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png"}, timeout=20)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def problems(self):
        """Script exceptions, console errors and browser-side errors (CSP refusals among them)."""
        out = []
        for m in list(self.b.events):
            if m.get("sessionId") != self.session:
                continue
            meth, p = m.get("method"), m.get("params", {})
            if meth == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % ((d.get("exception") or {}).get("description") or d.get("text")))
            elif meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description")))
                                                                  for a in p.get("args", []))))
            elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append("%s: %s %s" % (e.get("source"), e.get("text"), e.get("url", "")))
        return out
