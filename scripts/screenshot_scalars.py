#!/usr/bin/env python3
"""Screenshot TensorBoard's scalars page in headless Chromium and check that the curves are drawn.

Starts TensorBoard on the scalars of a densebench log dir (bound to 127.0.0.1, on a free port), waits until it
serves a tag that matches ``--tag-filter``, opens ``/#scalars&tagFilter=<filter>`` in headless Chromium, saves
the PNG and checks it:

- the page rendered (TensorBoard's orange header is there, the image has many distinct colours), and
- curves are drawn: in the chart area (right of the sidebar, below the header) enough pixels have the colour
  of the first run's line (#ff7043 in TensorBoard's scalars palette; densebench's run folder sorts before its
  hparams sub-runs, so the first run is a densebench run) and they spread across many pixel columns.

    python scripts/screenshot_scalars.py --log-dir logs/tensorboard --out scalars.png

Exit codes: 0 curves visible; 1 the screenshot does not show curves (or Chromium/TensorBoard failed);
2 bad input (no Chromium, no log dir, no scalar tags matching the filter). The last line of stdout is a JSON
summary of the check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

WINDOW = (1400, 1000)
HEADER_PX = 130  # TensorBoard's top bar and the tag filter above the charts
SIDEBAR_PX = 340  # the scalars dashboard's settings and runs column
HEADER_ORANGE = (245, 124, 0)  # #f57c00
FIRST_RUN_COLOR = (255, 112, 67)  # #ff7043
MIN_CURVE_PIXELS = 400
MIN_CURVE_COLUMNS = 150
MIN_DISTINCT_COLORS = 64
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]  # fmt: skip


class BadInput(Exception):
    pass


def find_chromium(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [os.environ.get("DENSEBENCH_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [] if explicit else [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BadInput(f"Chromium not found ({explicit or '/usr/bin/chromium'}); install it: apt-get install -y chromium")


def scalars_dir(log_dir: Path) -> Path:
    if not log_dir.is_dir():
        raise BadInput(f"log directory not found: {log_dir}")
    return log_dir / "scalars" if (log_dir / "scalars").is_dir() else log_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def stop(process: subprocess.Popen, wait_s: float = 10.0) -> None:
    """Terminate a process and everything in its process group, waiting a bounded time."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers (Chromium's zygote, renderers)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(timeout=wait_s)


def start_tensorboard(logdir: Path, tag_filter: str, timeout_s: float) -> tuple[subprocess.Popen, int, list[str]]:
    """TensorBoard on a free port, once it serves a scalar tag matching the filter: (process, port, tags)."""
    import re

    deadline = time.monotonic() + timeout_s
    for _attempt in range(3):  # a free port can be taken between picking and binding
        port = free_port()
        command = [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
            "--port", str(port), "--reload_interval", "2",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        while time.monotonic() < deadline and process.poll() is None:
            try:
                tags = get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
            except (OSError, ValueError):
                time.sleep(0.5)
                continue
            matching = sorted(t for run in tags.values() for t in run if re.search(tag_filter, t))
            if matching:
                return process, port, matching
            time.sleep(0.5)
        stop(process)
        if time.monotonic() >= deadline:
            raise BadInput(f"TensorBoard on {logdir} serves no scalar tag matching {tag_filter!r}")
    raise RuntimeError("TensorBoard did not start (three ports tried)")


def screenshot(chromium: str, url: str, out: Path, budget_ms: int, timeout_s: float) -> None:
    profile = tempfile.mkdtemp(prefix="densebench-chromium-")
    command = [
        chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--virtual-time-budget={budget_ms}", url,
    ]  # fmt: skip
    out.unlink(missing_ok=True)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, text=True
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(process)
        raise RuntimeError(f"Chromium did not finish within {timeout_s:.0f} s") from None
    finally:
        stop(process)
        shutil.rmtree(profile, ignore_errors=True)
    if not out.is_file():
        last = (stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"Chromium wrote no screenshot (exit {process.returncode}): {last[0]}")


def near(pixel, color, tolerance: int) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color))


def check_png(path: Path, curve_color=FIRST_RUN_COLOR) -> dict:
    """Measure the screenshot; ``ok`` says whether it shows a rendered page with curves."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    pixels = rgb.load()
    distinct = len({pixels[x, y] for x in range(0, width, 2) for y in range(0, height, 2)})
    header = sum(near(pixels[x, 20], HEADER_ORANGE, 12) for x in range(width)) / width
    curve_pixels, columns = 0, set()
    for y in range(HEADER_PX, height):
        for x in range(SIDEBAR_PX, width):
            if near(pixels[x, y], curve_color, 40):
                curve_pixels += 1
                columns.add(x)
    result = {
        "png": str(path), "size": [width, height], "distinct_colors": distinct,
        "header_orange_fraction": round(header, 3), "curve_pixels": curve_pixels,
        "curve_columns": len(columns),
    }  # fmt: skip
    problems = []
    if header < 0.5:
        problems.append("TensorBoard's header is missing (page did not render)")
    if distinct < MIN_DISTINCT_COLORS:
        problems.append(f"only {distinct} distinct colours (blank page?)")
    if curve_pixels < MIN_CURVE_PIXELS or len(columns) < MIN_CURVE_COLUMNS:
        problems.append(
            f"no curves: {curve_pixels} curve-coloured pixels in {len(columns)} columns "
            f"(need {MIN_CURVE_PIXELS} in {MIN_CURVE_COLUMNS})"
        )
    result["ok"] = not problems
    result["problems"] = problems
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-dir", type=Path, default=Path("logs/tensorboard"),
                        help="densebench's --log-dir (or its scalars/ folder)")
    parser.add_argument("--out", type=Path, default=Path("tensorboard_scalars.png"), help="PNG to write")
    parser.add_argument("--tag-filter", default="latency_ms", help="regex of the tags to show (per-iteration curves)")
    parser.add_argument("--chromium", default=None, help="browser binary (default /usr/bin/chromium)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for TensorBoard to serve the tags")
    parser.add_argument("--attempts", type=int, default=2, help="screenshots to try before giving up")
    args = parser.parse_args(argv)
    try:
        chromium = find_chromium(args.chromium)
        logdir = scalars_dir(args.log_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tensorboard, port, tags = start_tensorboard(logdir, args.tag_filter, args.timeout)
    except BadInput as exc:
        print(f"screenshot_scalars: error: {exc}", file=sys.stderr)
        return 2
    fragment = "scalars&tagFilter=" + urllib.parse.quote(args.tag_filter, safe="")
    url = f"http://127.0.0.1:{port}/#{fragment}"
    result: dict = {"url": url, "tags": len(tags)}
    try:
        for attempt in range(1, max(1, args.attempts) + 1):
            screenshot(chromium, url, args.out, budget_ms=15000 * attempt, timeout_s=90 * attempt)
            result.update(check_png(args.out), attempt=attempt)
            if result["ok"]:
                break
    except RuntimeError as exc:
        result.update(ok=False, problems=[str(exc)])
    finally:
        stop(tensorboard)
    print(("curves visible: " if result["ok"] else "NO CURVES: ") + str(args.out))
    for problem in result.get("problems", []):
        print(f"  {problem}")
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
