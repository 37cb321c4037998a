"""The report's "Where the time goes": who waits for whom on CUDA (launch time, GPU busy share, host-bound rows)
and the top operators of each backend's profiled pass."""

from __future__ import annotations

import pandas as pd

from densebench_core import significance
from densebench_core.report import analysis
from densebench_core.report.analysis import Scenario, isnum
from densebench_core.report.fmt import and_list, num
from densebench_core.report.render import Doc, code
from densebench_core.schema import Results, row_key


def write(doc: Doc, results: Results, rows: pd.DataFrame, scenarios: list[Scenario]) -> None:
    doc.heading(1, "Where the time goes")
    found = False
    for scenario in scenarios:
        mine = analysis.rows_of(rows, scenario)
        found = _gpu_busy(doc, results, mine, scenario) or found
        found = _top_operators(doc, results, mine, scenario) or found
    if found:
        doc.para("Full traces: `densebench tensorboard`, then the PyTorch Profiler tab (port 6007).")
    else:
        doc.para("No profiler summaries in these results (they come from `densebench run --profile`)."
                 if results.json_path else
                 "No profiler summaries: they are kept in the JSON file, and there is none beside the CSV.")


def _top_operators(doc: Doc, results: Results, mine: pd.DataFrame, scenario: Scenario) -> bool:
    """The top operators at the largest profiled batch size of each backend; False if no row has a profile."""
    table, leaders = [], []
    for backend in dict.fromkeys(mine["backend"]):
        g = mine[mine["backend"] == backend].sort_values("batch_size", ascending=False)
        for r in g.to_dict("records"):
            profile = (results.extras.get(row_key(r)) or {}).get("profile")
            cpu = analysis.top_operators(profile, "cpu")
            gpu = analysis.top_operators(profile, "cuda")
            if not cpu and not gpu:
                continue
            for kind, ops in (("GPU kernels", gpu), ("CPU operators", cpu)):
                if ops:
                    table.append([code(backend), str(int(r["batch_size"])), kind,
                                  ", ".join(f"{code(o['short_name'])} {o.get('self_time_pct', 0):.1f}%"
                                            for o in ops)])  # fmt: skip
            top = (gpu or cpu)[0]
            leaders.append((top.get("self_time_pct") or 0.0, backend, top["short_name"], "GPU" if gpu else "CPU",
                            int(r["batch_size"])))  # fmt: skip
            break  # the largest profiled batch size per backend
    if not table:
        return False
    doc.heading(2, f"Top operators ({scenario.label})")
    doc.para("From the short profiled pass after each measurement (never inside the timed loop), at the "
             "largest profiled batch size per backend: share of self time, top five. Names are "
             "shortened; `benchmark_results.json` keeps them whole.")
    doc.table(["Backend", "Batch", "Kind", "Top operators (share of self time)"], table, "lrll")
    leaders.sort(reverse=True)
    doc.bullets([f"{code(b)}: {code(name)} takes {share:.1f}% of {where} self time at batch {batch}"
                 for share, b, name, where, batch in leaders])
    return True


def _gpu_busy(doc: Doc, results: Results, mine: pd.DataFrame, scenario: Scenario) -> bool:
    """Who waits for whom in each CUDA row: the host's launch time and the profiled GPU work against the step, and
    which rows are host-bound (the one rule, the significance rule's: launch time against latency); False if no
    row says."""
    table, bound = [], []
    for r in mine.sort_values(["backend", "batch_size"]).to_dict("records"):
        extra = results.extras.get(row_key(r)) or {}
        profile, launch = extra.get("profile"), extra.get("launch_ms")
        pct = analysis.gpu_busy_pct(profile, r.get("latency_mean_ms"))
        if pct is None and not isnum(launch):
            continue
        host_bound = extra.get("host_bound")
        table.append([code(r["backend"]), str(int(r["batch_size"])), num(r.get("latency_p50_ms")), num(launch),
                      num(profile["device_ms_per_step"]) if pct is not None else "—",
                      f"{pct:.0f}%" if pct is not None else "—",
                      {True: "**yes**", False: "no"}.get(host_bound, "—")])  # fmt: skip
        if host_bound:
            bound.append(f"{code(r['backend'])} batch {int(r['batch_size'])}")
    if not table:
        return False
    doc.heading(2, f"Who waits for whom ({scenario.label})")
    doc.para("Launch: the host's time to launch one step onto an idle GPU, timed without the profiler. GPU work: "
             "device time of the profiled pass's kernels, copies and memsets per step; GPU busy: that against the "
             "mean step time. A row is host-bound when its launch takes at least "
             f"{significance.HOST_BOUND_SHARE:.0%} of its median latency: the GPU waits for the CPU, so faster "
             "kernels will not help and fewer launches will (CUDA graphs, e.g. `compile.mode=reduce-overhead`, "
             "replay a whole step with one launch), and its timing moves with the host's speed from one process "
             f"to the next (its noise floor is {significance.HOST_BOUND_FLOOR:.0%}).")  # fmt: skip
    doc.table(["Backend", "Batch", "p50 (ms)", "Launch (ms)", "GPU work (ms/step)", "GPU busy", "Host-bound"],
              table, "lrrrrrl")  # fmt: skip
    doc.para("Host-bound: " + and_list(bound) + "." if bound else "No row is host-bound.")
    return True
