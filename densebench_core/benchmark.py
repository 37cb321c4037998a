"""A benchmark run: turn the user's request into jobs, run each isolated, and hand every row to the sinks."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

from densebench_core import envinfo
from densebench_core.backend import canonical_name, parse_recipe, recipe_name
from densebench_core.errors import BadInput
from densebench_core.job import Job
from densebench_core.launchers import Launcher, OnWait, Placement, chains
from densebench_core.local_launcher import LocalLauncher
from densebench_core.model import MIN_IMAGE_SIZE
from densebench_core.options import OptionError, resolve_recipe
from densebench_core.plugins import PluginRegistry, missing_requirements
from densebench_core.presets import PRESETS
from densebench_core.results import ResultsStore, check_writable, json_safe, new_run_id

MODES = ("inference", "training")

#: settings for full and --quick runs. Quick runs measure at least 10 iterations: enough for the median's interval
#: (6) and p90 (10); p99 needs 100 and is left empty there. ``ci_target``: measuring goes on past the lower bounds
#: until the median's 95% interval is within this percentage of it, for at most ``max_time`` seconds (by default
#: MAX_TIME_FACTOR times ``min_time``).
DEFAULTS = {
    "full": {"batch_sizes": (1, 32, 256), "image_size": 224, "warmup": 10, "min_iters": 50,
             "min_time": 2.0, "timeout": 900.0, "phase_timeout": 300.0, "ci_target": 1.0, "eval_images": 256},
    "quick-cpu": {"batch_sizes": (1, 2), "image_size": 64, "warmup": 2, "min_iters": 10,
                  "min_time": 0.2, "timeout": 600.0, "phase_timeout": 120.0, "ci_target": 2.0, "eval_images": 64},
    "quick-cuda": {"batch_sizes": (1, 32), "image_size": 224, "warmup": 5, "min_iters": 20,
                   "min_time": 0.5, "timeout": 300.0, "phase_timeout": 120.0, "ci_target": 2.0, "eval_images": 64},
}  # fmt: skip
MAX_TIME_FACTOR = 5.0


@dataclass
class RunConfig:
    """Everything ``densebench run`` was asked for, with defaults filled in."""

    backends: list[str]  # backend names or recipes as given; empty with all_backends
    all_backends: bool = False
    device: str = "auto"
    mode: str = "inference"
    batch_sizes: tuple[int, ...] | None = None
    image_size: int | None = None
    weights: str = "auto"
    warmup: int | None = None
    min_iters: int | None = None
    min_time: float | None = None
    max_time: float | None = None
    ci_target: float | None = None  # percent of the median
    eval_images: int | None = None
    timeout: float | None = None
    phase_timeout: float | None = None  # seconds for each phase after the measurement
    output_dir: Path = Path("results")
    log_dir: Path = Path("logs/tensorboard")
    profile: bool = True
    export: bool = True
    quick: bool = False
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    seed: int = 0
    #: ``--devices`` as given (``all`` or ``0,1,...``); resolved into ``gpu_indices``
    devices: str | None = None
    gpu_indices: tuple[int, ...] | None = None
    #: ``--nproc-per-node``: one count, or several (``1,2``: each training row at every count, for scaling)
    nproc_per_node: int | str | tuple[int, ...] = 1
    launcher: str = "local"
    launcher_options: dict[str, dict[str, str]] = field(default_factory=dict)
    #: what planning found worth a word without stopping the run (printed by the CLI)
    warnings: list[str] = field(default_factory=list)

    def resolve(self) -> None:
        """Pick the device, fill unset settings from the defaults, and validate; raises BadInput."""
        self.device = resolve_device(self.device)
        preset = DEFAULTS[f"quick-{self.device}"] if self.quick else DEFAULTS["full"]
        for key, value in preset.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if not self.modes or any(m not in MODES for m in self.modes):
            raise BadInput(f"--mode must be {' or '.join(MODES)} (or both, comma-separated), not {self.mode!r}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise BadInput(f"--image-size must be at least {MIN_IMAGE_SIZE}, not {self.image_size}")
        for flag, value, low, strict in (
            ("--warmup", self.warmup, 0, False), ("--min-iters", self.min_iters, 1, False),
            ("--min-time", self.min_time, 0, False), ("--timeout", self.timeout, 0, True),
            ("--phase-timeout", self.phase_timeout, 0, True),
            ("--eval-images", self.eval_images, 1, False), ("--ci-target", self.ci_target, 0, True),
        ):  # fmt: skip
            if not (value > low if strict else value >= low):
                raise BadInput(f"{flag} must be {'>' if strict else '>='} {low:g}, not {value:g}")
        self.gpu_indices = parse_devices(self.devices, self.device)
        self._check_nproc()
        for name in self.launcher_options:
            if name != self.launcher:
                given = ", ".join(f"{name}.{key}" for key in self.launcher_options[name])
                self.warnings.append(f"--launcher-option {given} ignored: the launcher is {self.launcher!r}")
        if self.max_time is None:
            self.max_time = MAX_TIME_FACTOR * self.min_time
        elif self.max_time < self.min_time:
            raise BadInput(f"--max-time ({self.max_time:g} s) must be at least --min-time ({self.min_time:g} s)")

    def _check_nproc(self) -> None:
        self.nproc_per_node = _counts(self.nproc_per_node)
        n = max(self.nproc_per_node)
        if n == 1:
            return
        if self.modes != ["training"]:
            raise BadInput("--nproc-per-node runs data-parallel training: use it with --mode training")
        if self.gpu_indices is not None:
            raise BadInput("--nproc-per-node and --devices do not go together yet: the row's processes take GPUs "
                           "0..N-1 of those visible (CUDA_VISIBLE_DEVICES)")
        if self.device == "cuda" and gpu_count("cuda") < n:
            raise BadInput(f"--nproc-per-node {n} needs {n} GPUs; this machine has {gpu_count('cuda')}")

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(m.strip() for m in self.mode.split(",") if m.strip()))

    def as_dict(self) -> dict[str, Any]:
        settings = {k: v for k, v in self.__dict__.items() if k != "warnings"}
        return json_safe({k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()})


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was requested but no CUDA GPU is available (try --device cpu)")
    if requested not in ("cuda", "cpu"):
        raise BadInput(f"--device must be auto, cuda or cpu, not {requested!r}")
    return requested


#: test seam, documented in docs/scaling.md: this many stand-in GPUs for ``--devices`` on a machine without one;
#: the rows then run on the CPU, pinned as they would be (CI has no GPU, let alone two)
TEST_DEVICES_ENV = "DENSEBENCH_TEST_DEVICES"


def _counts(value: int | str | tuple[int, ...]) -> tuple[int, ...]:
    """``--nproc-per-node``: ``2``, ``"1,2"`` or ``(1, 2)`` as a tuple of distinct counts, each at least 1."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (tuple, list)) else [value]
    try:
        counts = tuple(dict.fromkeys(int(str(item).strip()) for item in items if str(item).strip()))
    except ValueError:
        raise BadInput(f"--nproc-per-node takes whole numbers separated by commas, not {value}") from None
    if not counts or min(counts) < 1:
        raise BadInput(f"--nproc-per-node must be at least 1, not {value}")
    return counts


def gpu_count(device: str) -> int:
    stand_ins = os.environ.get(TEST_DEVICES_ENV, "").strip()
    if stand_ins.isdigit():
        return int(stand_ins)
    if device != "cuda":
        return 0
    import torch

    return torch.cuda.device_count()


def parse_devices(text: str | None, device: str) -> tuple[int, ...] | None:
    """``--devices all|0,1,...`` -> the GPU indices rows run on, one row per GPU at a time; raises BadInput."""
    if text is None:
        return None
    count = gpu_count(device)
    if count == 0:
        raise BadInput(f"--devices needs CUDA GPUs, and the run's device is {device} (leave --devices out)")
    if text.strip() == "all":
        return tuple(range(count))
    indices = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise BadInput(f"--devices takes all or GPU indices like 0,1, not {text!r}")
        if int(part) >= count:
            raise BadInput(f"--devices {text}: GPU {part} does not exist (this machine has {count}: 0-{count - 1})")
        indices.append(int(part))
    if len(set(indices)) != len(indices):
        raise BadInput(f"--devices {text} names a GPU twice")
    return tuple(indices)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    sizes = []
    for part in text.split(","):
        part = part.strip()
        try:
            size = int(part)
        except ValueError:
            raise BadInput(f"batch size {part!r} is not a whole number (use e.g. 1,32,256)") from None
        if size < 1:
            raise BadInput(f"batch size must be at least 1, not {size}")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


def parse_options(pairs: Iterable[str], flag: str = "--backend-option", owner: str = "BACKEND") -> dict[str, dict[str, str]]:
    """``compile.mode=max-autotune`` -> ``{"compile": {"mode": "max-autotune"}}`` (``--launcher-option`` alike)."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not name or not option:
            raise BadInput(f"{flag} takes {owner}.KEY=VALUE, not {pair!r}")
        options.setdefault(canonical_name(name), {})[option] = value
    return options


def plan(config: RunConfig, registry: PluginRegistry) -> list[Job]:
    """Expand --all / --backend (names, recipes, presets) into one job per batch size; raises BadInput.

    A job whose row is decided without running anything (a backend not installed, unavailable here, or broken)
    carries that row in ``decided``.
    """
    infos = registry.infos()
    for backend in config.options:
        if backend not in registry.entries:
            raise BadInput(f"--backend-option names unknown backend {backend!r}")
    if config.all_backends:
        names = sorted(registry.entries, key=lambda n: (n != "baseline", n))
        recipes = [(n, [n], {}, None) for n in names]
        config.backends = names  # what --all meant, for the run's settings
    else:
        if not config.backends:
            raise BadInput("name a backend with --backend NAME or run them all with --all")
        recipes = [_resolve_spec(spec, registry, infos) for spec in config.backends]
    in_run = {member for _, members, _, _ in recipes for member in members}
    for backend, values in config.options.items():
        if backend not in in_run:
            given = ", ".join(f"{backend}.{key}" for key in values)
            config.warnings.append(f"--backend-option {given} ignored: backend {backend!r} is not in this run")
    jobs: list[Job] = []
    for name, members, preset_options, decided in recipes:
        given = {m: {**preset_options.get(m, {}), **config.options.get(m, {})} for m in members}
        try:
            resolved = resolve_recipe(members, infos, given)
        except OptionError as exc:
            raise BadInput(str(exc)) from None
        shown = {m: {k: resolved[m][k] for k in values} for m, values in given.items() if values and m in resolved}
        for mode in config.modes:
            row_decided = decided or _decide_without_running(members, registry, config.device, mode)
            for batch_size, nproc in ((b, n) for b in config.batch_sizes for n in config.nproc_per_node):
                jobs.append(Job(
                    backend=name, members=members, mode=mode, batch_size=batch_size, device=config.device,
                    image_size=config.image_size, warmup=config.warmup,
                    min_iters=config.min_iters, min_time=config.min_time, max_time=config.max_time,
                    ci_target=config.ci_target / 100.0, eval_images=config.eval_images, timeout=config.timeout,
                    phase_timeout=config.phase_timeout, seed=config.seed, options=resolved, shown_options=shown,
                    export=config.export and mode == "inference", decided=row_decided, nproc=nproc,
                ))  # fmt: skip
    jobs.sort(key=lambda job: config.modes.index(job.mode))  # modes in the order asked, as before
    return jobs


def _resolve_spec(spec: str, registry: PluginRegistry, infos) -> tuple[str, list[str], dict, dict | None]:
    """(row name, members, preset options, decided row) for one --backend value."""
    name = canonical_name(spec.strip())
    if name in PRESETS and name not in registry.entries:
        preset = PRESETS[name]
        missing = [m for m in preset.recipe.split("+") if m not in infos]
        if missing:
            why = f"preset {name} needs backend {missing[0]!r}, which is not installed or failed to load"
            return name, preset.recipe.split("+"), {}, {"status": "skipped", "reason": why}
        return name, parse_recipe(preset.recipe, infos), preset.options, None
    if "+" not in name and name in registry.entries and name not in infos:
        return name, [name], {}, None  # a plugin that failed to load: reported as a row, not bad input
    members = parse_recipe(spec, infos)
    return recipe_name(members), members, {}, None


def _decide_without_running(members, registry: PluginRegistry, device: str, mode: str) -> dict | None:
    for name in members:
        if name not in registry.entries:
            return {"status": "skipped", "reason": f"{name}: not installed"}
        entry = registry.entries[name]
        if entry.status == "unavailable":
            return {"status": "skipped", "reason": f"{name}: {entry.reason}"}
        if entry.status != "ok":
            return {"status": "failed", "reason": f"{name}: plugin failed to load: {entry.reason}"}
        why = missing_requirements(entry.info, device, mode)
        if why:
            return {"status": "skipped", "reason": f"{name}: {why}"}
    return None


class Sink(Protocol):
    def on_row(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _compiles(job: Job, registry: PluginRegistry) -> bool:
    """Whether a row has a compiler-stage member: those rows take longest (an inductor row about a minute)."""
    entries = [registry.entries.get(name) for name in job.members]
    return any(e is not None and e.info is not None and e.info.stage == "compiler" for e in entries)


def execute(
    config: RunConfig,
    registry: PluginRegistry,
    jobs: list[Job],
    sinks: list[Sink] | None = None,
    launcher: Launcher | None = None,
    on_wait: OnWait | None = None,
) -> ResultsStore:
    """Run the planned jobs (from :func:`plan`) with ``launcher`` (default: ``local`` on the run's devices), writing
    each row as soon as it exists.

    Rows decided without running anything are written in their place; with one row at a time the others follow in
    plan order, with ``--devices`` as they finish. ``on_wait(job, phase, elapsed_s)`` is called while a job's
    child process runs (see :func:`runner.run_isolated`). SIGTERM stops like Ctrl-C.
    """
    check_writable(config.output_dir)
    environment = envinfo.collect(config.device)
    environment["plugins"] = [e.as_dict() for e in registry.entries.values()]
    store = ResultsStore(config.output_dir, new_run_id(), environment, config.as_dict())
    sinks = list(sinks or [])
    launcher = launcher or LocalLauncher(Placement(config.device, config.gpu_indices))
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    to_run = _in_run([job for job in jobs if not job.decided], config, store, registry)
    side_by_side = len(config.gpu_indices or ()) > 1 or config.launcher != "local"
    slow = (lambda job: _compiles(job, registry)) if side_by_side else None
    keep = (lambda job: _shares_artifact(job, registry)) if side_by_side else None
    results = iter(launcher.run(chains(to_run, slow, keep), store.work_dir, on_wait))
    try:
        exported: dict[tuple[str, str], dict[str, Any]] = {}  # artifacts that serve every batch size
        for planned in jobs:
            job, result = (planned, planned.decided) if planned.decided else next(results)
            if _shares_artifact(job, registry) and result.get("status") == "ok":
                earlier = exported.get((job.backend, job.mode))
                if earlier:  # the file written for an earlier batch size is this row's artifact too
                    result = {**result, **earlier}
                elif result.get("artifact_path"):
                    exported[(job.backend, job.mode)] = {k: result[k] for k in ("artifact_path", "artifact_mb")}
            row = store.add(_row(job, config, result))
            for sink in sinks:
                sink.on_row(row)
    finally:
        getattr(results, "close", lambda: None)()  # a generator cancels what is still outstanding (nothing, after the last row)
        signal.signal(signal.SIGTERM, previous)
        for sink in sinks:
            sink.close()
    return store


def _shares_artifact(job: Job, registry: PluginRegistry) -> bool:
    """Whether the recipe's exporting member (the last with ``export``) writes the same file for every batch size."""
    for name in reversed(job.members):
        entry = registry.entries.get(name)
        if entry is not None and "export" in entry.hooks:
            return entry.info is not None and not entry.info.artifact_per_batch_size
    return False


def _in_run(jobs: list[Job], config: RunConfig, store: ResultsStore, registry: PluginRegistry) -> list[Job]:
    """The jobs to run, with what is known once the run starts: the weights, the run's models, profile and work
    folders. A recipe whose artifact serves every batch size exports it with its first batch size only (its chain's
    first job: a launcher runs a chain in order); the others' rows point to that file."""
    ready, seen = [], set()
    for job in jobs:
        profile_dir = None
        if config.profile:
            profile_dir = str(config.log_dir / "profiler" / f"{store.run_id}_{job.backend}_{job.mode}")
        key = (job.backend, job.mode)
        export = job.export and not (key in seen and _shares_artifact(job, registry))
        seen.add(key)
        ready.append(job.replace(weights=config.weights, export=export, models_dir=str(store.models_dir.resolve()),
                                 profile_dir=profile_dir, cache_dir=str(store.work_dir.resolve())))  # fmt: skip
    return ready


def _row(job: Job, config: RunConfig, result: dict[str, Any]) -> dict[str, Any]:
    row = dict(result)
    root = config.output_dir.resolve()
    if row.get("artifact_path"):  # relative to the results folder, however --output-dir was written
        row["artifact_path"] = os.path.relpath(Path(row["artifact_path"]).resolve(), root)
    if row.get("log"):
        row["log"] = os.path.relpath(Path(row["log"]).resolve(), root)
        if row.get("status") in ("failed", "timeout"):
            row["reason"] = f"{row.get('reason', '')} (worker log: {row['log']})"
    row.update(
        backend=job.backend,
        mode=job.mode,
        device=config.device,
        batch_size=job.batch_size,
        image_size=config.image_size,
        weights=config.weights,
        options=job.shown_options,
    )
    row.setdefault("precision", None)
    row.setdefault("world_size", job.nproc)  # processes that ran the row together (--nproc-per-node)
    return json_safe(row)
