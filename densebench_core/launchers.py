"""Where rows run: launchers, a plugin kind of their own (as Hydra's launchers are).

A launcher gets the planned jobs in **chains** (the batch sizes of one recipe and mode, in order, where they share
an exported artifact; with rows side by side every other row is a chain of its own) and yields each job's result as
soon as it exists; the core writes the row. What a launcher must do:

* run each job in a process of its own with :func:`densebench_core.runner.run_isolated` (or the same protocol
  elsewhere: Ray runs it on a node), so a crash, hang or timeout is a row with its reason;
* give every result ``host`` (where it ran) and ``gpu_index`` (the GPU it had, None without one);
* on Ctrl-C (``KeyboardInterrupt`` in the parent) or when the core closes the generator, cancel what is still
  outstanding, leaving no process behind; completed rows are already written.

Launchers are found in the entry-point group ``densebench.launchers`` (the entry-point name is the launcher name)
and answer the hooks below; ``local`` is built in (:mod:`densebench_core.local_launcher`). They are loaded only
when ``--launcher NAME`` selects them, in the parent, before any worker starts: an unknown name, a bad
``--launcher-option`` or a launcher that cannot start (a cluster that cannot be reached) is bad input.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import pluggy

from densebench_core.errors import BadInput
from densebench_core.job import Job
from densebench_core.options import Option, OptionError, as_option, resolve

PROJECT = "densebench.launchers"
GROUP = "densebench.launchers"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``on_wait(job, phase, elapsed_s)``: a running job's phase, about every quarter second
OnWait = Callable[[Job, str, float], None]


@dataclass(frozen=True)
class LauncherInfo:
    """A launcher's description: one line, and its options (``--launcher-option NAME.KEY=VALUE``), typed."""

    description: str
    options: dict[str, Option] = field(default_factory=dict)
    check_options: Callable[[dict[str, Any]], str | None] | None = None

    def __post_init__(self):
        object.__setattr__(self, "options", {key: as_option(value) for key, value in self.options.items()})


@dataclass(frozen=True)
class Placement:
    """What the core decided about where rows run: ``device`` (``cuda`` or ``cpu``) and ``devices`` (the GPU
    indices of ``--devices``, one row per GPU at a time; None: the machine's default device, one row at a time)."""

    device: str
    devices: tuple[int, ...] | None = None


class Launcher(Protocol):
    def run(self, chains: list[list[Job]], work_dir: Path, on_wait: OnWait | None) -> Iterator[tuple[Job, dict]]:
        """Yield ``(job, result)`` for every job of ``chains`` as each finishes (a chain's jobs in order)."""


class LauncherSpecs:
    @hookspec(firstresult=True)
    def launcher_info(self):
        """Return a :class:`LauncherInfo`."""

    @hookspec(firstresult=True)
    def make_launcher(self, options, placement):
        """Return a :class:`Launcher` for the typed ``options`` and the :class:`Placement`; raise
        :class:`~densebench_core.errors.BadInput` when it cannot start (one line: the user's to fix)."""


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def names() -> list[str]:
    return ["local", *sorted(set(entry_points()) - {"local"})]


def _module(name: str):
    if name == "local":
        from densebench_core import local_launcher

        return local_launcher
    found = entry_points().get(name)
    if found is None:
        raise BadInput(f"unknown launcher {name!r}; available: {', '.join(names())}")
    try:
        return found.load()
    except Exception as exc:  # noqa: BLE001 - a broken launcher plugin is the user's setup to fix
        raise BadInput(f"launcher {name!r} failed to load: {type(exc).__name__}: {exc}") from None


def _manager(name: str) -> pluggy.PluginManager:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(LauncherSpecs)
    manager.register(_module(name), name=name)
    return manager


def info(name: str) -> LauncherInfo:
    return _manager(name).hook.launcher_info()


def make(name: str, given: dict[str, str], placement: Placement) -> Launcher:
    """The launcher ``name`` with ``given`` options (text, from ``--launcher-option``), ready to run; raises BadInput."""
    manager = _manager(name)
    described = manager.hook.launcher_info()
    try:
        values = resolve(name, described.options, given, described.check_options, kind="launcher",
                         flag="--launcher-option")  # fmt: skip
    except OptionError as exc:
        raise BadInput(str(exc)) from None
    return manager.hook.make_launcher(options=values, placement=placement)


def chains(
    jobs: list[Job], slow: Callable[[Job], bool] | None = None, keep: Callable[[Job], bool] | None = None
) -> list[list[Job]]:
    """``jobs`` grouped by (row name, mode), in the order each group first appears.

    With ``keep``, only the jobs it holds for stay grouped (a recipe whose artifact, exported with its first batch
    size, serves the others); every other job is a chain of its own, free to run beside its recipe's other batch
    sizes. With ``slow``, the chains holding slow rows come first (then the others, each group in that order): with
    rows run side by side, the longest chains start first and the short ones fill the slots around them (the
    longest-processing-time-first rule), instead of a long chain started last keeping one slot busy alone at the end.
    """
    grouped: dict[tuple, list[Job]] = {}
    for index, job in enumerate(jobs):
        together = keep is None or keep(job)
        grouped.setdefault((job.backend, job.mode) if together else (index,), []).append(job)
    ordered = list(grouped.values())
    if slow is not None:
        ordered.sort(key=lambda chain: -sum(map(slow, chain)))  # stable: plan order within each weight
    return ordered
