"""Headless Chromium over the DevTools protocol (a pipe, no network port): load a local HTML
file with page scripts disabled, record every request the page makes, and return the page's
text, a screenshot and a PDF printed from it.

The browser is found as `$AFFECT_CHROMIUM`, then `chromium`, `chromium-browser`,
`google-chrome` on PATH (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    """Chromium is missing, failed to start, or did not answer."""


def find_chromium() -> str | None:
    """The Chromium executable, or None when there is none."""
    env = os.environ.get("AFFECT_CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            # Debian's /usr/bin/chromium is a shell wrapper; the binary behind it takes the pipe fds
            real = Path("/usr/lib/chromium/chromium")
            return str(real) if name == "chromium" and real.exists() else path
    return None


@dataclass
class Rendered:
    """What a page load produced."""

    text: str
    requests: list[str] = field(default_factory=list)
    screenshot: bytes | None = None
    pdf: bytes | None = None
    seconds: float = 0.0

    @property
    def external_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file: and data: URLs)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]


class _Text(HTMLParser):
    SKIP = {"style", "script", "head", "title"}
    BLOCK = {"p", "div", "section", "tr", "li", "h1", "h2", "h3", "h4", "br", "table", "figcaption", "td", "th"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n" if tag not in ("td", "th") else " ")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The visible text of an HTML document (without styles or scripts), whitespace tidied."""
    p = _Text()
    p.feed(html)
    lines = (" ".join(line.split()) for line in "".join(p.parts).splitlines())
    return "\n".join(line for line in lines if line)


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int, timeout: float) -> None:
        self.proc, self.w, self.r, self.timeout = proc, write_fd, read_fd, timeout
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        import select

        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"Chromium {method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and ev.get("sessionId") == session:
                return self.events.pop(i)
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
            self.events.append(ev)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The same pipe ends moved to descriptors ≥ 10, clear of the 3 and 4 the child needs."""
    import fcntl

    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out  # type: ignore[return-value]


class Browser:
    """One headless Chromium for several pages: `with Browser() as b: b.render(path)`.

    Raises:
        BrowserError: Chromium not found, not starting, or not answering within `timeout`.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self.exe = find_chromium()
        if self.exe is None:
            raise BrowserError("no Chromium found (set AFFECT_CHROMIUM or install it: apt-get install chromium); "
                               "the HTML report was written, the PDF needs a browser to print it")
        self.timeout = timeout

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="affect-chromium-")
        to_child_r, self._w = _high(os.pipe())
        self._r, from_child_w = _high(os.pipe())
        # Chromium reads commands on fd 3 and writes replies on fd 4
        shell = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        bash = shutil.which("bash") or "/bin/bash"
        self.proc = subprocess.Popen(
            [bash, "-c", shell, "bash", self.exe, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pipe = _Pipe(self.proc, self._w, self._r, self.timeout)
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.pipe.call("Browser.close")
        os.close(self._w)
        os.close(self._r)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._profile.cleanup()

    def render(self, html_path: str | Path, *, pdf: bool = True, screenshot: bool = False,
               width: int = 1000) -> Rendered:
        """Open `html_path` in a new tab with page scripts disabled; record the page's
        requests; return its text and, as asked, a PNG of the whole page and an A4 PDF."""
        t0 = time.perf_counter()
        pipe = self.pipe
        path = Path(html_path).resolve()
        target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
        s = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        pipe.call("Network.enable", s)
        pipe.call("Page.enable", s)
        pipe.call("Emulation.setScriptExecutionDisabled", s, value=True)
        pipe.call("Emulation.setDeviceMetricsOverride", s, width=width, height=1400, deviceScaleFactor=1,
                  mobile=False)
        pipe.call("Page.navigate", s, url=path.as_uri())
        pipe.wait_event("Page.loadEventFired", s)
        root = pipe.call("DOM.getDocument", s, depth=-1)["root"]["nodeId"]
        out = Rendered(text=html_text(pipe.call("DOM.getOuterHTML", s, nodeId=root)["outerHTML"]))
        if screenshot:
            out.screenshot = base64.b64decode(pipe.call("Page.captureScreenshot", s, format="png",
                                                        captureBeyondViewport=True)["data"])
        if pdf:
            out.pdf = base64.b64decode(pipe.call("Page.printToPDF", s, printBackground=True,
                                                 preferCSSPageSize=True, displayHeaderFooter=False)["data"])
        out.requests = [ev["params"]["request"]["url"] for ev in pipe.events
                        if ev.get("method") == "Network.requestWillBeSent" and ev.get("sessionId") == s]
        pipe.events = [ev for ev in pipe.events if ev.get("sessionId") != s]
        pipe.call("Target.closeTarget", targetId=target)
        out.seconds = time.perf_counter() - t0
        return out


def render(html_path: str | Path, *, pdf: bool = True, screenshot: bool = False, width: int = 1000,
           timeout: float = 60.0) -> Rendered:
    """`Browser.render` in a browser started for this one page."""
    t0 = time.perf_counter()
    with Browser(timeout) as browser:
        out = browser.render(html_path, pdf=pdf, screenshot=screenshot, width=width)
    out.seconds = time.perf_counter() - t0
    return out
