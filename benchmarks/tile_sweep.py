"""What the fused kernels' tile sweeps share (``dense_kernel_tune.py``, ``conv3x3_tune.py``): time each tile
configuration of a kernel with ``triton.testing.do_bench``, check its output, and write and print one line per
shape with the best configuration beside the default one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

COPY_CEILING_BYTES_PER_S = 4.1e12  # H200 device copies, measured (issue 6)
KEYS = ("BLOCK_M", "BLOCK_K", "num_warps", "num_stages")


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every sweep takes: ``--out DIR`` and ``--batch-sizes``."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    made.add_argument("--out", type=Path, required=True)
    made.add_argument("--batch-sizes", default="1,256")
    return made


def sweep(configs: list[dict], launch: Callable[[dict], object], reference, is_default: Callable[[dict], bool]) -> dict:
    """Every configuration run once (checked against ``reference``) and timed; a configuration the GPU cannot run
    is recorded with its error. Returns ``best``, ``default``, ``configs`` and ``output_scale``."""
    from triton.testing import do_bench

    scale = reference.float().abs().max().item()
    timings = []
    for config in configs:
        try:
            error = (launch(config).float() - reference.float()).abs().max().item()
            ms = do_bench(lambda config=config: launch(config))
        except Exception as exc:  # noqa: BLE001 - a config the GPU cannot run is a result
            timings.append({**config, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            continue
        timings.append({**config, "us": round(ms * 1000, 2), "max_abs_err": error, "rel_err": error / max(scale, 1e-30),
                        "default": is_default(config)})  # fmt: skip
    ok = [t for t in timings if "us" in t]
    return {"best": min(ok, key=lambda t: t["us"]) if ok else None,
            "default": next((t for t in ok if t["default"]), None), "configs": timings, "output_scale": scale}  # fmt: skip


def ceiling_us(moved_bytes: float) -> float:
    """The time to move ``moved_bytes`` at the device-copy ceiling."""
    return moved_bytes / COPY_CEILING_BYTES_PER_S * 1e6


def record(path: Path, label: str, line: dict, beside: dict[str, float]) -> None:
    """Append ``line`` to ``path`` (JSON lines) and print it: ``label``, the ceiling, ``beside`` (name -> us), the
    default and the best configuration."""
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    best, chosen = line["best"] or {}, line["default"] or {}
    others = "  ".join(f"{name} {us:8.2f} us" for name, us in beside.items())
    print(f"{label}: ceiling {line['ceiling_us']:8.2f} us  {others}  default {chosen.get('us', float('nan')):8.2f} us  "
          f"best {best.get('us', float('nan')):8.2f} us { {key: best.get(key) for key in KEYS} }  "
          f"rel err {best.get('rel_err')}", flush=True)  # fmt: skip
