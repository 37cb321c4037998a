"""A benchmark run: turn the user's request into jobs, run each isolated, and hand every row to the sinks."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from densebench_core import envinfo
from densebench_core.backend import canonical_name, parse_recipe, recipe_name
from densebench_core.errors import BadInput
from densebench_core.model import MIN_IMAGE_SIZE
from densebench_core.plugins import PluginRegistry, missing_requirements
from densebench_core.presets import PRESETS
from densebench_core.results import ResultsStore, check_writable, json_safe, new_run_id
from densebench_core.runner import Job, run_job

MODES = ("inference", "training")

#: (batch sizes, image size, warmup, min iterations, min seconds, timeout) for each device
DEFAULTS = {
    "full": {"batch_sizes": (1, 32, 256), "image_size": 224, "warmup": 10, "min_iters": 50,
             "min_time": 2.0, "timeout": 900.0},
    "quick-cpu": {"batch_sizes": (1, 2), "image_size": 64, "warmup": 2, "min_iters": 5,
                  "min_time": 0.2, "timeout": 600.0},
    "quick-cuda": {"batch_sizes": (1, 32), "image_size": 224, "warmup": 5, "min_iters": 20,
                   "min_time": 0.5, "timeout": 300.0},
}  # fmt: skip


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
    timeout: float | None = None
    output_dir: Path = Path("results")
    log_dir: Path = Path("logs/tensorboard")
    profile: bool = True
    export: bool = True
    quick: bool = False
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    seed: int = 0

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
        for name, value in (("--warmup", self.warmup), ("--min-iters", self.min_iters)):
            if value < (0 if name == "--warmup" else 1):
                raise BadInput(f"{name} must be {'>= 0' if name == '--warmup' else '>= 1'}, not {value}")
        if self.min_time < 0 or self.timeout <= 0:
            raise BadInput("--min-time must be >= 0 and --timeout > 0")

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(m.strip() for m in self.mode.split(",") if m.strip()))

    def as_dict(self) -> dict[str, Any]:
        return json_safe({k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()})


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda was requested but no CUDA GPU is available (try --device cpu)")
    if requested not in ("cuda", "cpu"):
        raise BadInput(f"--device must be auto, cuda or cpu, not {requested!r}")
    return requested


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


def parse_options(pairs: Iterable[str]) -> dict[str, dict[str, str]]:
    """``compile.mode=max-autotune`` -> ``{"compile": {"mode": "max-autotune"}}``."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        backend, dot, name = key.partition(".")
        if not sep or not dot or not backend or not name:
            raise BadInput(f"--backend-option takes BACKEND.KEY=VALUE, not {pair!r}")
        options.setdefault(canonical_name(backend), {})[name] = value
    return options


@dataclass
class Planned:
    """A job to run, or a row already decided (skipped or failed) without running anything."""

    backend: str
    members: list[str]
    mode: str
    batch_size: int
    decided: dict[str, Any] | None = None
    options: dict[str, dict[str, str]] = field(default_factory=dict)


def plan(config: RunConfig, registry: PluginRegistry) -> list[Planned]:
    """Expand --all / --backend (names, recipes, presets) into one item per batch size; raises BadInput."""
    infos = registry.infos()
    for backend, values in config.options.items():
        if backend not in registry.entries:
            raise BadInput(f"--backend-option names unknown backend {backend!r}")
        declared = infos[backend].options if backend in infos else {}
        unknown = sorted(set(values) - set(declared))
        if declared and unknown:
            raise BadInput(
                f"backend {backend!r} has no option {unknown[0]!r}; its options: {', '.join(sorted(declared))}"
            )
    if config.all_backends:
        names = sorted(registry.entries, key=lambda n: (n != "baseline", n))
        recipes = [(n, [n], {}, None) for n in names]
    else:
        if not config.backends:
            raise BadInput("name a backend with --backend NAME or run them all with --all")
        recipes = [_resolve_spec(spec, registry, infos) for spec in config.backends]
    planned: list[Planned] = []
    for mode in config.modes:
        for name, members, preset_options, decided in recipes:
            decided = decided or _decide_without_running(members, registry, config.device, mode)
            options = {m: {**preset_options.get(m, {}), **config.options.get(m, {})} for m in members}
            options = {m: o for m, o in options.items() if o}
            for batch_size in config.batch_sizes:
                planned.append(Planned(name, members, mode, batch_size, decided, options))
    return planned


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


def execute(
    config: RunConfig,
    registry: PluginRegistry,
    jobs: list[Planned],
    sinks: list[Sink] | None = None,
    on_start: Callable[[int, int, Planned], None] | None = None,
) -> ResultsStore:
    """Run the planned jobs (from :func:`plan`) in order, writing each row as soon as it exists.

    SIGTERM stops like Ctrl-C.
    """
    check_writable(config.output_dir)
    environment = envinfo.collect(config.device)
    environment["plugins"] = [e.as_dict() for e in registry.entries.values()]
    store = ResultsStore(config.output_dir, new_run_id(), environment, config.as_dict())
    sinks = list(sinks or [])
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        for index, item in enumerate(jobs):
            if on_start:
                on_start(index, len(jobs), item)
            result = item.decided or run_job(_job_for(item, config, store), store.work_dir)
            row = store.add(_row(item, config, result))
            for sink in sinks:
                sink.on_row(row)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for sink in sinks:
            sink.close()
    return store


def _job_for(item: Planned, config: RunConfig, store: ResultsStore) -> Job:
    profile_dir = None
    if config.profile:
        profile_dir = str(config.log_dir / "profiler" / f"{store.run_id}_{item.backend}_{item.mode}")
    return Job(
        backend=item.backend,
        members=item.members,
        mode=item.mode,
        batch_size=item.batch_size,
        device=config.device,
        image_size=config.image_size,
        weights=config.weights,
        warmup=config.warmup,
        min_iters=config.min_iters,
        min_time=config.min_time,
        timeout=config.timeout,
        seed=config.seed,
        options=item.options,
        export=config.export and item.mode == "inference",
        models_dir=str(store.models_dir),
        profile_dir=profile_dir,
    )


def _row(item: Planned, config: RunConfig, result: dict[str, Any]) -> dict[str, Any]:
    row = dict(result)
    row.update(
        backend=item.backend,
        mode=item.mode,
        device=config.device,
        batch_size=item.batch_size,
        image_size=config.image_size,
        weights=config.weights,
        options=item.options,
    )
    row.setdefault("precision", None)
    return json_safe(row)
