"""The report's "Scaling and devices": data-parallel scaling efficiency (rows of one recipe at several process
counts, ``--nproc-per-node 1,2``) and, when a run holds more than one device model (a fleet, e.g. through the Ray
launcher), the devices side by side: the fastest recipe per device and batch size. Silent when neither applies."""

from __future__ import annotations

import pandas as pd

from densebench_core.report.analysis import device_name_of, isnum, world_size_of
from densebench_core.report.fmt import num
from densebench_core.report.render import Doc, code


def efficiency_rows(rows: pd.DataFrame) -> list[dict]:
    """Each ok row at N > 1 processes with its one-process row (same recipe, mode, batch per process, image size,
    device and device model): speed-up = throughput at N / at 1, efficiency = speed-up / N."""
    records = rows.to_dict("records")

    def key(r):
        size = r["image_size"] if isnum(r["image_size"]) else None
        return (r["backend"], r["mode"], r["batch_size"], size, r["device"], device_name_of(r))

    single = {key(r): r for r in records if world_size_of(r) == 1}
    out = []
    for r in records:
        n, one = world_size_of(r), single.get(key(r))
        if n > 1 and one is not None and isnum(r["throughput_ips"]) and isnum(one["throughput_ips"]) \
                and one["throughput_ips"] > 0:
            speedup = r["throughput_ips"] / one["throughput_ips"]
            out.append({"backend": r["backend"], "mode": r["mode"], "batch_size": int(r["batch_size"]),
                        "device_name": device_name_of(r), "world_size": n, "ips_1": one["throughput_ips"],
                        "ips_n": r["throughput_ips"], "speedup": speedup, "efficiency": speedup / n})
    return sorted(out, key=lambda e: (e["mode"], e["backend"], e["batch_size"], e["world_size"]))


def fastest_per_device(rows: pd.DataFrame) -> list[dict]:
    """Where the rows hold more than one device model: per (mode, image size, processes, batch size) and device
    model, the row with the highest throughput. Empty for a run on one device model."""
    records = [r for r in rows.to_dict("records") if isnum(r["throughput_ips"])]
    if len({device_name_of(r) for r in records}) < 2:
        return []
    best: dict[tuple, dict] = {}
    for r in records:
        size = int(r["image_size"]) if isnum(r["image_size"]) else None
        k = (r["mode"], size, world_size_of(r), int(r["batch_size"]), device_name_of(r))
        if k not in best or r["throughput_ips"] > best[k]["throughput_ips"]:
            best[k] = r
    return [{"mode": k[0], "image_size": k[1], "world_size": k[2], "batch_size": k[3], "device_name": k[4],
             "backend": r["backend"], "throughput_ips": r["throughput_ips"], "latency_p50_ms": r["latency_p50_ms"]}
            for k, r in sorted(best.items(), key=lambda item: tuple(str(x) for x in item[0]))]  # fmt: skip


def write(doc: Doc, rows: pd.DataFrame) -> None:
    if rows.empty:
        return
    scaling, devices = efficiency_rows(rows), fastest_per_device(rows)
    if not scaling and not devices:
        return
    doc.heading(1, "Scaling and devices")
    if scaling:
        named = len({e["device_name"] for e in scaling}) > 1
        doc.heading(2, "Scaling across processes")
        doc.para("Data-parallel rows (`--nproc-per-node`) next to the same recipe's one-process row: each process "
                 "has the row's batch size, throughput is the global figure. Efficiency is the throughput at N "
                 "processes over N times the throughput of one.")
        doc.table(["Backend", "Mode", "Batch per process", "Processes", "img/s, 1 process", "img/s, N processes",
                   "Speed-up", "Efficiency"],
                  [[code(e["backend"]) + (f" ({e['device_name']})" if named else ""), e["mode"],
                    str(e["batch_size"]), str(e["world_size"]), num(e["ips_1"]), num(e["ips_n"]),
                    f"{e['speedup']:.2f}×", f"{100 * e['efficiency']:.0f}%"] for e in scaling],
                  "llrrrrrr")  # fmt: skip
    if devices:
        doc.heading(2, "Devices side by side")
        doc.para("The run holds more than one device model: the fastest recipe (highest throughput) on each, per "
                 "mode and batch size.")
        doc.table(["Mode", "Batch", "Processes", "Device", "Fastest", "img/s", "p50 (ms)"],
                  [[d["mode"] + (f", {d['image_size']} px" if d["image_size"] else ""), str(d["batch_size"]),
                    str(d["world_size"]), d["device_name"] or "unknown", code(d["backend"]), num(d["throughput_ips"]),
                    num(d["latency_p50_ms"])] for d in devices],
                  "lrrllrr")  # fmt: skip
