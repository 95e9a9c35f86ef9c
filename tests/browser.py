"""Open a report page in real headless Chromium: a screenshot, the load state of every <img>, console messages."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by .ci/run
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",  # wait for every image before the screenshot or the DOM dump
)
# Runs first in a copy of the page: records failed loads and script errors, and on load writes what every
# <img> got into the DOM, for --dump-dom to carry out.
_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? "cannot load " + (t.getAttribute("src") || t.getAttribute("href")) : e.message);
}, true);
window.addEventListener("load", function () {
  var images = Array.from(document.images).map(function (i) {
    return {src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
  });
  var pre = document.createElement("pre");
  pre.id = "__probe";
  pre.textContent = JSON.stringify({images: images, errors: window.__errors, title: document.title});
  document.body.appendChild(pre);
});
</script>"""


@dataclass
class Rendered:
    """What Chromium made of a page."""

    screenshot: Path
    images: list[dict]  # src, complete, width, height (natural size: 0 if it did not load)
    errors: list[str]  # failed loads and uncaught script errors seen by the page
    console: list[str]  # every console message Chromium logged (the pages have no scripts: any is a defect)
    title: str

    def ink(self) -> float:
        """Share of the screenshot's pixels that differ from its most common colour (0: a blank page)."""
        with Image.open(self.screenshot) as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        colours, counts = np.unique(pixels, axis=0, return_counts=True)
        return float(1.0 - counts.max() / len(pixels))


def _run(url: str, *arguments: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
        return subprocess.run(
            [*command, *arguments, url], capture_output=True, text=True, timeout=timeout_s, check=True, env=os.environ
        )


def render(page: Path, screenshot: Path, width: int = 1280, height: int = 2400) -> Rendered:
    """Screenshot ``page`` from disk (file://, no server) and probe a copy of it beside the original."""
    _run(page.resolve().as_uri(), f"--screenshot={screenshot}", f"--window-size={width},{height}")
    probe = page.with_name(".probe-" + page.name)
    text = page.read_text()
    probe.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
    try:
        completed = _run(probe.resolve().as_uri(), "--dump-dom", f"--window-size={width},{height}")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="__probe">(.*?)</pre>', completed.stdout, re.S)
    assert found, f"the probe did not run in {page}: {completed.stderr[-2000:]}"
    state = json.loads(html.unescape(found.group(1)))
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(screenshot, state["images"], state["errors"], console, state["title"])
