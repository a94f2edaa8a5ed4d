"""Open the built book in headless Chromium and fail on what a reader would see as broken.

``python -m ddgan_core.browsercheck _build/html [--screenshot PAGE=OUT.png]``

Every page of the book is opened as it was built (``file://``, no copy, nothing injected) in
headless Chromium with the network switched off (``--host-resolver-rules``: every host name is
unknown), as a reader without internet would open it. The check waits for MathJax to finish and
reads the rendered page through the DevTools protocol. It fails when

- MathJax is not served by the book (a CDN URL), a math element was left untypeset (raw
  ``\\(...\\)`` or ``$$`` in the text included), or MathJax reports an error (``merror``, an
  undefined macro shown in red);
- an image is missing, does not decode, or is remote; a resource fails to load offline;
- an equation (MathJax container) or a table overflows horizontally at a viewport 1280 or 800
  px wide: its content is wider than its box with no scroll container to hold it, it is clipped
  by an ancestor, or it reaches beyond the content column;
- a figure image (in a figure or a cell output) is rendered less than 400 px wide at 1280 px;
- a cross-reference is unresolved: an ``.xref`` with no link, a link to a missing page or
  anchor, "undefined label" or ``??`` in the text;
- a chapter page with code cells has no "Show code cell source" toggle;
- a MyST role or directive was left unrendered, a Markdown table or a figure was rendered as
  text, a Python traceback or error output appears.

MathJax must come from the built book (``_static/mathjax``, see :mod:`ddgan_core.book`).
:class:`Browser` is a small DevTools-protocol client over a pipe (``--remote-debugging-pipe``),
also used by ``tools/print_pdf.py``.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-file-access-from-files", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the book must render offline
]
UNRENDERED = re.compile(r"\{(glue:text|glue:figure|glue|cite:p|cite:t|math|eq|numref|ref)\}`")
SKIP_PAGES = {"search.html", "genindex.html", "index.html"}
WIDTHS = (1280, 800)  # viewport widths checked for horizontal overflow
MIN_FIGURE_WIDTH = 400  # px, at a 1280 px viewport
MATHJAX_TIMEOUT = 90.0  # s for MathJax to typeset one page


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "headless Chromium not found: install it with `apt-get install chromium` (bash .ci/run "
        "does this)"
    )


class Browser:
    """Headless Chromium driven with the DevTools protocol over a pipe.

    ``with Browser() as browser: session = browser.open(url, width)``, then
    :meth:`evaluate`, :meth:`resize`, :meth:`screenshot`, :meth:`print_pdf` on that session.
    """

    def __init__(self, chromium: str | None = None, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="browsercheck-")
        to_chromium, self._write = os.pipe()
        self._read, from_chromium = os.pipe()

        def pipes_as_fd_3_and_4() -> None:  # Chromium reads commands on 3, answers on 4
            read_end = fcntl.fcntl(to_chromium, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_chromium, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        command = [chromium or find_chromium(), *CHROMIUM_FLAGS, "--remote-debugging-pipe",
                   f"--user-data-dir={self._profile.name}", "about:blank"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=pipes_as_fd_3_and_4)
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []
        self._targets: dict[str, str] = {}

    # -- protocol ---------------------------------------------------------------------------
    def _next_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium exited")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write, data):]
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._next_message(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            if "method" in answer:
                self.events.append(answer)

    def wait_for(self, method: str, session: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method and event.get("sessionId") == session:
                    return self.events.pop(index)
            answer = self._next_message(deadline)
            if "method" in answer:
                self.events.append(answer)

    # -- pages ------------------------------------------------------------------------------
    def open(self, url: str, width: int = 1280, height: int = 900) -> str:
        """A new tab showing ``url`` once loaded and typeset (MathJax); returns its session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        self._targets[session] = target
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=session)
        self.resize(session, width, height)
        self.events = [e for e in self.events if e.get("sessionId") != session]
        navigation = self.call("Page.navigate", {"url": url}, session)
        if navigation.get("errorText"):
            raise RuntimeError(f"{url}: {navigation['errorText']}")
        self.wait_for("Page.loadEventFired", session)
        return session

    def close_page(self, session: str) -> None:
        self.events = [e for e in self.events if e.get("sessionId") != session]
        target = self._targets.pop(session, None)
        if target:
            self.call("Target.closeTarget", {"targetId": target})

    def resize(self, session: str, width: int, height: int = 900) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session)

    def evaluate(self, session: str, expression: str, timeout: float | None = None) -> Any:
        """Evaluate JavaScript in the page (promises awaited); returns its JSON value."""
        result = self.call("Runtime.evaluate",
                           {"expression": expression, "awaitPromise": True,
                            "returnByValue": True}, session, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def wait_for_mathjax(self, session: str, timeout: float = MATHJAX_TIMEOUT) -> str:
        """Wait until MathJax has typeset the page (and fonts are loaded); returns its state."""
        return self.evaluate(session, WAIT_FOR_MATHJAX, timeout)

    def screenshot(self, session: str, path: Path, width: int = 1280,
                   height: int = 2000) -> Path:
        self.resize(session, width, height)
        data = self.call("Page.captureScreenshot", {"format": "png"}, session)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def print_pdf(self, session: str) -> bytes:
        """The page printed to PDF (A4, print style sheet, backgrounds)."""
        result = self.call("Page.printToPDF", {
            "printBackground": True, "paperWidth": 8.27, "paperHeight": 11.69,
            "marginTop": 0.4, "marginBottom": 0.4, "marginLeft": 0.4, "marginRight": 0.4,
        }, session)
        return base64.b64decode(result["data"])

    def failed_requests(self, session: str) -> list[str]:
        """URLs of the requests of a page that failed (offline: any remote resource)."""
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent" and e.get("sessionId") == session}
        return sorted({urls.get(e["params"]["requestId"], "?") for e in self.events
                       if e["method"] == "Network.loadingFailed"
                       and e.get("sessionId") == session
                       and not e["params"].get("canceled")})

    def console_errors(self, session: str) -> list[str]:
        messages = []
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            if event["method"] == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                messages.append(details.get("exception", {}).get("description")
                                or details.get("text", ""))
            elif (event["method"] == "Runtime.consoleAPICalled"
                  and event["params"].get("type") == "error"):
                messages.append(" ".join(str(a.get("value", a.get("description", "")))
                                         for a in event["params"].get("args", [])))
        return messages

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


WAIT_FOR_MATHJAX = r"""
(async () => {
  const mj = window.MathJax;
  let state = "absent";
  if (mj && mj.startup && mj.startup.promise) {
    try { await mj.startup.promise; state = "typeset"; }
    catch (err) { state = "error: " + err; }
  } else if (document.querySelector(".math")) {
    state = "not loaded";
  }
  if (document.fonts) { await document.fonts.ready; }
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return state;
})()
"""

# What a reader sees at the current viewport width, measured in the page.
MEASURE = r"""
(() => {
  const article = document.querySelector("article.bd-article")
    || document.querySelector("[role=main]") || document.querySelector("main") || document.body;
  const column = article.getBoundingClientRect();
  const slack = 1;
  const tex = new Map();  // MathJax container -> its TeX source
  const typeset = window.MathJax && MathJax.startup && MathJax.startup.document;
  for (const item of (typeset && typeset.math) || []) {
    if (item.typesetRoot) tex.set(item.typesetRoot, item.math);
  }
  const clean = (text) => (text || "").replace(/\s+/g, " ").trim();
  const short = (el) => {
    const table = el.tagName.toLowerCase() === "table";
    const text = clean(table ? el.textContent : tex.get(el) || el.textContent).slice(0, 60);
    return `${table ? "table" : "equation"} "${text}"`;
  };
  const overflowX = (el) => getComputedStyle(el).overflowX;
  const scrolls = (el) => ["auto", "scroll"].includes(overflowX(el));
  const clips = (el) => ["hidden", "clip"].includes(overflowX(el));
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 || r.height > 0;
  };
  const overflow = [];
  for (const el of article.querySelectorAll("mjx-container, table")) {
    if (!shown(el) || el.closest("mjx-assistive-mml")) continue;
    const rect = el.getBoundingClientRect();
    let scroller = scrolls(el) ? el : null;
    // the content's width: MathJax's rendered formula (its hidden assistive MathML, absolutely
    // positioned, would inflate scrollWidth), or the table's scroll width
    const math = el.tagName.toLowerCase() === "mjx-container" && el.querySelector("mjx-math");
    const width = math ? Math.round(math.getBoundingClientRect().width) : el.scrollWidth;
    const spills = !scroller && el.clientWidth > 0 && width > el.clientWidth + slack;
    if (spills && clips(el)) {
      overflow.push(`${short(el)}: content ${width} px wide clipped to its`
        + ` ${el.clientWidth} px box`);
      continue;
    }
    // the content's extent: the box, or what spills out of it
    const right = spills ? rect.left + width : Math.max(rect.right, rect.left + width);
    let clipper = null;
    for (let a = el.parentElement; !scroller && a && a !== article; a = a.parentElement) {
      if (scrolls(a)) scroller = a;
      else if (clips(a)) {
        const box = a.getBoundingClientRect();
        if (right > box.right + slack || rect.left < box.left - slack) { clipper = a; break; }
      }
    }
    if (clipper) {
      overflow.push(`${short(el)}: ${Math.round(right - rect.left)} px wide, clipped by a`
        + ` ${Math.round(clipper.getBoundingClientRect().width)} px`
        + ` <${clipper.tagName.toLowerCase()} class="${clipper.className}"> (no scroll bar)`);
      continue;
    }
    if (spills && !scroller) {
      overflow.push(`${short(el)}: content ${width} px wide spills out of its`
        + ` ${el.clientWidth} px box (no scroll container)`);
      continue;
    }
    const box = (scroller || el).getBoundingClientRect();
    if (box.right > column.right + slack || box.left < column.left - slack) {
      overflow.push(`${short(el)}: reaches ${Math.round(box.right - column.right)} px beyond`
        + ` the ${Math.round(column.width)} px content column`);
    }
  }
  const figures = [];
  for (const img of article.querySelectorAll("img")) {
    if (!img.closest("figure, .figure, .cell_output, .output")) continue;
    const source = img.getAttribute("src") || "";
    const src = source.startsWith("data:") ? `(inline ${source.slice(5, source.indexOf(";"))})`
      : source.split("/").pop().slice(0, 80);
    if (!shown(img)) continue;  // inside a closed toggle
    if (img.complete && img.naturalWidth === 0) {
      figures.push(`image ${src} did not load`);
      continue;
    }
    const width = img.getBoundingClientRect().width;
    figures.push({src, width: Math.round(width), natural: img.naturalWidth});
  }
  const xrefs = [];
  for (const el of article.querySelectorAll(".xref")) {
    const label = el.textContent.trim().slice(0, 50);
    if (!el.closest("a")) xrefs.push(`unresolved reference "${label}"`);
  }
  const links = [];
  for (const a of article.querySelectorAll("a.reference.internal[href]")) {
    const url = new URL(a.getAttribute("href"), location.href);
    const id = decodeURIComponent(url.hash.slice(1));
    if (url.protocol !== "file:") continue;
    if (url.pathname === location.pathname) {
      if (id && !document.getElementById(id)) xrefs.push(`link to a missing anchor #${id}`);
    } else {
      links.push([decodeURIComponent(url.pathname), id]);
    }
  }
  const text = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const skip = "pre, code, script, style, mjx-container, .math, .highlight, kbd, samp, textarea";
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement && !node.parentElement.closest(skip)) text.push(node.data);
  }
  const visible = text.join("");
  const questions = [...visible.matchAll(/.{0,30}\?\?.{0,30}/g)].map(m => m[0]);
  for (const q of questions.slice(0, 3)) {
    xrefs.push(`"??" in the text (an unresolved reference?): "${q.trim()}"`);
  }
  if (/undefined label/i.test(visible)) xrefs.push(`"undefined label" in the text`);
  const delimiters = /\\\(.{0,40}|\\\[.{0,40}|\$\$.{0,40}/g;  // \( \[ $$
  const dollarCommand = /\$[^$\n]{0,30}\\[a-zA-Z]+[^$\n]{0,30}\$/g;  // $ ... \alpha ... $
  const rawMath = [...visible.matchAll(delimiters), ...visible.matchAll(dollarCommand)]
    .map(m => m[0].trim());
  const red = [...article.querySelectorAll('mjx-container [style*="color: red"]')]
    .map(el => clean(tex.get(el.closest("mjx-container"))).slice(0, 60));
  const cells = [...article.querySelectorAll("div.cell")];
  const toggles = [...article.querySelectorAll("details summary")]
    .filter(s => /code cell (source|content)/i.test(s.textContent)).length;
  const codeShown = cells.filter(c => c.querySelector(":scope > .cell_input")).length;
  const codeRemoved = cells.filter(c => !c.querySelector(".cell_input")).length;
  return {overflow, figures, xrefs, links, rawMath, red,
          cells: cells.length, toggles, codeShown, codeRemoved,
          scripts: [...document.scripts].map(s => s.getAttribute("src") || "").filter(Boolean)};
})()
"""


class _PageParser(HTMLParser):
    """Images, math elements, the prose text (code excluded) and error outputs of a DOM."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.math: list[dict] = []
        # open elements: (tag, flags), flags among math, error, code, output, skip
        self._stack: list[tuple[str, frozenset[str]]] = []
        self.errors_in_output: list[str] = []
        self._text: list[str] = []

    def _inside(self, flag: str) -> bool:
        return any(flag in flags for _, flags in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "img" and attributes.get("src"):
            self.images.append(attributes["src"])
        if tag in self.VOID:
            return
        flags = set()
        if tag in {"script", "style", "button", "template"}:
            flags.add("skip")
        if "math" in classes and tag in {"div", "span"}:
            flags.add("math")
            self.math.append({"typeset": False, "error": False, "text": ""})
        if tag.startswith("mjx-") and self.math and self._inside("math"):
            self.math[-1]["typeset"] = True
            if tag == "mjx-merror":
                self.math[-1]["error"] = True
        if "traceback" in classes or ("stderr" in classes and "output" in classes):
            flags.add("error")
        if "output" in classes or "cell_output" in classes:
            flags.add("output")
        # source code (a code cell's input, a code block, inline code) is not prose
        if tag == "code" or "cell_input" in classes or (
                any(c.startswith("highlight-") for c in classes) and "output" not in flags
                and not self._inside("output")):
            flags.add("code")
        self._stack.append((tag, frozenset(flags)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or not any(open_tag == tag for open_tag, _ in self._stack):
            return
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._inside("skip"):
            return
        if self.math and self._inside("math") and len(self.math[-1]["text"]) < 80:
            self.math[-1]["text"] += data
        if self._inside("error") and data.strip():
            self.errors_in_output.append(data.strip()[:200])
        if not self._inside("code"):
            self._text.append(data)

    @property
    def text(self) -> str:
        """The page's text without source code (outputs included)."""
        return "".join(self._text)


def _check_image(page: Path, src: str) -> str | None:
    from PIL import Image

    try:
        if src.startswith("data:"):
            payload = base64.b64decode(src.split(",", 1)[1])
        else:
            parsed = urlparse(src)
            if parsed.scheme in {"http", "https"}:
                return f"remote image {src} (the book must not depend on the network)"
            path = (page.parent / unquote(parsed.path)).resolve()
            if not path.is_file():
                return f"missing image {src}"
            if path.suffix == ".svg":
                return None if path.stat().st_size > 0 else f"empty image {src}"
            payload = path.read_bytes()
        with Image.open(io.BytesIO(payload)) as image:
            image.verify()
    except Exception as err:  # noqa: BLE001 - any decoding failure is a broken image
        return f"broken image {src[:80]} ({err})"
    return None


_IDS: dict[Path, set[str]] = {}


def _ids(path: Path) -> set[str]:
    if path not in _IDS:
        _IDS[path] = set(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))
    return _IDS[path]


def _dom_problems(page: Path, dom: str) -> list[str]:
    """What the rendered DOM shows: images, typeset math, leftovers of the source, errors."""
    parser = _PageParser()
    parser.feed(dom)
    problems = []
    for src in parser.images:
        problem = _check_image(page, src)
        if problem:
            problems.append(problem)
    for what, bad in (("were not typeset by MathJax",
                       [m for m in parser.math if not m["typeset"]]),
                      ("have a MathJax error", [m for m in parser.math if m["error"]])):
        if bad:
            first = " ".join(bad[0]["text"].split())[:60]
            problems.append(f"{len(bad)} of {len(parser.math)} math elements {what} "
                            f"(the first: {first})")
    leftovers = sorted(set(m.group(0) for m in UNRENDERED.finditer(parser.text)))
    if leftovers:
        problems.append(f"unrendered MyST roles: {leftovers}")
    if re.search(r"\|\s*(?:-{3,}|[\u2013\u2014]-*):?\s*\|", parser.text):  # smartquotes: ---
        problems.append("a Markdown table was rendered as text")
    if re.search(r"<Figure size \d+x\d+", parser.text):
        problems.append("a figure was rendered as text (<Figure size ...>), not as an image")
    if "Traceback (most recent call last)" in parser.text:
        problems.append("a Python traceback is shown in the page")
    problems += [f"error output: {text}" for text in parser.errors_in_output[:3]]
    return problems


def _reader_problems(page: Path, seen: dict, width: int) -> list[str]:
    """What a reader sees at ``width``: overflow; at 1280 px also figures, references, toggles."""
    problems = [f"at {width} px: {text}" for text in seen["overflow"]]
    if width != WIDTHS[0]:
        return problems
    for figure in seen["figures"]:
        if isinstance(figure, str):
            problems.append(figure)
        elif figure["width"] < MIN_FIGURE_WIDTH:
            problems.append(
                f"figure {figure['src']} is rendered {figure['width']} px wide at {width} px "
                f"(at least {MIN_FIGURE_WIDTH}; its image is {figure['natural']} px)")
    problems += seen["xrefs"]
    for path, anchor in seen["links"]:
        target = Path(path)
        if not target.is_file():
            problems.append(f"link to a missing page {target.name}")
        elif anchor and anchor not in _ids(target):
            problems.append(f"link to a missing anchor {target.name}#{anchor}")
    problems += [f'math left as text (not typeset): "{text}"' for text in seen["rawMath"][:3]]
    problems += [f'MathJax shows an undefined macro (red): "{text}"' for text in seen["red"][:3]]
    remote = [src for src in seen["scripts"] if "mathjax" in src.lower() and "://" in src
              and not src.startswith("file:")]
    problems += [f"MathJax is loaded from {src}, not served by the book" for src in remote]
    if seen["cells"] and not seen["toggles"]:
        problems.append(f"a chapter page with {seen['cells']} code cells has no "
                        "'Show code cell source' toggle")
    return problems


def check_page(browser: Browser, page: Path, screenshot: Path | None = None) -> tuple[
        list[str], dict]:
    """Problems found on one page (empty when it renders correctly) and what was counted."""
    session = browser.open(page.resolve().as_uri(), WIDTHS[0])
    try:
        problems = []
        try:
            state = browser.wait_for_mathjax(session)
        except TimeoutError:
            state = "timeout"
            problems.append(f"MathJax did not finish typesetting in {MATHJAX_TIMEOUT:.0f} s")
        if state.startswith("error"):
            problems.append(f"MathJax failed: {state}")
        dom = browser.evaluate(session, "document.documentElement.outerHTML")
        if "<body" not in (dom or ""):
            return [f"{page.name}: Chromium returned no page"], {}
        problems += _dom_problems(page, dom)
        seen = {}
        for width in WIDTHS:
            browser.resize(session, width)
            seen[width] = browser.evaluate(session, MEASURE)
            problems += _reader_problems(page, seen[width], width)
        problems += [f"could not load {url} (" + ("missing file)" if url.startswith("file:")
                     else "offline: the book must not need the network)")
                     for url in browser.failed_requests(session)]
        problems += [f"MathJax error in the console: {text[:200]}"
                     for text in browser.console_errors(session) if "mathjax" in text.lower()]
        if screenshot is not None:
            browser.screenshot(session, screenshot)
    finally:
        browser.close_page(session)
    counted = {key: seen[WIDTHS[0]][key] for key in ("cells", "toggles", "codeShown",
                                                     "codeRemoved")}
    counted["figures"] = [f["width"] for f in seen[WIDTHS[0]]["figures"] if isinstance(f, dict)]
    counted["mathjax"] = state
    return [f"{page.name}: {p}" for p in problems], counted


def check_book(
    html_dir: Path, screenshots: dict[str, Path] | None = None, *,
    details: dict[str, dict] | None = None,
) -> tuple[list[str], list[str]]:
    """Check every page of a built book as it was built; returns (pages checked, problems).

    ``details`` (a dict), when given, receives per page what was counted: code cells, toggles,
    figure widths at 1280 px and MathJax's state.
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir}: no index.html; build the book first (make book)")
    chromium = find_chromium()
    checked, problems = [], []
    # the book's pages all live under book/ (see _toc.yml); stale pages elsewhere are skipped
    pages = sorted(p for p in (html_dir / "book").rglob("*.html") if p.name not in SKIP_PAGES)
    _IDS.clear()
    browser = Browser(chromium)
    try:
        for page in pages:
            relative = str(page.relative_to(html_dir))
            shot = (screenshots or {}).get(page.stem)
            checked.append(relative)
            try:
                found, counted = check_page(browser, page, shot)
            except (RuntimeError, TimeoutError, OSError) as err:  # the page hung or crashed
                found, counted = [f"{page.name}: could not be checked ({err})"], {}
                browser.close()
                browser = Browser(chromium)
            problems += [f"{relative}: {p.split(': ', 1)[1]}" for p in found]
            if details is not None:
                details[relative] = counted
    finally:
        browser.close()
    return checked, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddgan_core.browsercheck")
    parser.add_argument("html_dir", type=Path, nargs="?", default=Path("_build/html"))
    parser.add_argument("--screenshot", action="append", default=[], metavar="PAGE=OUT.png")
    args = parser.parse_args(argv)
    shots = dict(item.split("=", 1) for item in args.screenshot)
    details: dict[str, dict] = {}
    checked, problems = check_book(args.html_dir,
                                   {k: Path(v).resolve() for k, v in shots.items()},
                                   details=details)
    for page in checked:
        seen = details.get(page, {})
        line = f"checked {page}"
        if seen.get("cells"):
            line += (f" ({seen['cells']} code cells: {seen['codeShown']} shown, "
                     f"{seen['toggles']} behind a toggle, {seen['codeRemoved']} removed)")
        if seen.get("figures"):
            line += f" figures at 1280 px: {seen['figures']} px"
        print(line)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{len(checked)} pages, {len(problems)} problems")
    return 1 if problems or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
