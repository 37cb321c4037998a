"""report.html as a reader sees it: inline markup rendered (no literal ``**``), checked in the renderer and in the
page of a real run as headless Chromium renders it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

from densebench_core.report.render import Doc, _inline_html
from densebench_core.testing import run_densebench

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]  # fmt: skip
WINDOW = (1280, 1600)


@pytest.mark.parametrize("text, expected", [
    # bold around a code span: the report's "At a glance" writes **`backend`**
    ("**`jit`** at 1 ms", "<strong><code>jit</code></strong> at 1 ms"),
    ("a **plain** word", "a <strong>plain</strong> word"),
    ("**x `y` z** and **w**", "<strong>x <code>y</code> z</strong> and <strong>w</strong>"),
    # asterisks inside code are code, not markup
    ("`a**b` **c**", "<code>a**b</code> <strong>c</strong>"),
    # escaping kept, in text and in code
    ("**<b> & `<i>`**", "<strong>&lt;b&gt; &amp; <code>&lt;i&gt;</code></strong>"),
    # an unclosed ** is text
    ("**open `c`", "**open <code>c</code>"),
])  # fmt: skip
def test_inline_html_renders_bold_around_code_spans(text, expected):
    assert _inline_html(text) == expected


def test_html_page_of_a_doc_has_no_literal_bold_markers():
    doc = Doc("t")
    doc.bullets(["Lowest latency (inference, batch 1): **`channels_last`** at 3.1 ms p50"])
    doc.table(["Backend", "Note"], [["**`jit`**", "**fast**"]])
    page = doc.to_html()
    assert "**" not in page
    assert page.count("<strong><code>") == 2 and "<strong>fast</strong>" in page


# -- the real report in headless Chromium ------------------------------------------------------------------------


def _chromium() -> str | None:
    for candidate in (os.environ.get("DENSEBENCH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _chromium_run(chromium: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """One headless Chromium call with a fresh profile folder; its whole process group is stopped afterwards."""
    profile = tempfile.mkdtemp(prefix="densebench-chromium-")
    process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        try:  # Chromium leaves helper processes (zygote, GPU) behind when its main process is killed
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


class _Page(HTMLParser):
    """The text a reader sees (script and style left out) and how many ``<strong>`` elements hold a ``<code>``."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.open: list[str] = []
        self.strong_code = 0

    def handle_starttag(self, tag, attrs):
        if tag == "code" and "strong" in self.open:
            self.strong_code += 1
        if tag not in ("img", "br", "meta", "link", "hr", "input"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data):
        if not {"script", "style"} & set(self.open):
            self.text.append(data)


@pytest.mark.slow
def test_report_html_of_a_real_run_shows_no_literal_asterisks_in_chromium(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium); CI installs it: apt-get install -y chromium")
    results = tmp_path / "results"
    proc = run_densebench("run", "--backend", "baseline", "--backend", "channels_last", "--device", "cpu",
                          "--batch-sizes", "1", "--image-size", "32", "--min-iters", "3", "--min-time", "0",
                          "--warmup", "1", "--eval-images", "8", "--no-profile", "--no-export",
                          "--output-dir", str(results), "--log-dir", str(tmp_path / "logs"), timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = results / "report.html"
    assert "**`" in (results / "report.md").read_text(), "the Markdown uses bold around code: the case under test"
    url = report.resolve().as_uri()

    dom = _chromium_run(chromium, "--dump-dom", url)
    assert dom.returncode == 0 and "<body" in dom.stdout, dom.stderr[-2000:]
    page = _Page()
    page.feed(dom.stdout)
    text = "".join(page.text)
    assert "At a glance" in text and "baseline" in text, "the rendered page holds the report"
    assert "**" not in text, [line for line in text.splitlines() if "**" in line]
    assert page.strong_code >= 1, "bold backend names are rendered as <strong><code>"

    png = tmp_path / "report.png"
    shot = _chromium_run(chromium, f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)
    assert png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == WINDOW
        counts = {color: n for n, color in image.convert("RGB").getcolors(maxcolors=WINDOW[0] * WINDOW[1])}
    ink = WINDOW[0] * WINDOW[1] - counts.get((255, 255, 255), 0)
    colors = len(counts)
    # text, table rules and an embedded plot: far from a blank white page
    assert ink > 0.02 * WINDOW[0] * WINDOW[1] and colors > 50, (ink, colors)
