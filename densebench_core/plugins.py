"""Plugin loading: built-in backends plus entry points of group ``densebench``, one backend at a time.

Each entry point is loaded on its own and any failure is recorded (llm#1280: pluggy's own loader lets one
broken plugin take the host down). ``DENSEBENCH_PLUGINS=amp,jit`` narrows which entry points load
(the built-ins always load: they are the reference); ``DENSEBENCH_PLUGINS=`` (empty) loads none.

What a plugin gets as its status:

* ``failed``: the plugin is broken. Its import raised, took longer than ``DENSEBENCH_IMPORT_TIMEOUT`` seconds
  (default 20), or named a module its own distribution does not have; or a hook is unknown (a typo such as
  ``prepare_modle``), unmarked, or gives a parameter a default value (pluggy never passes those, as pytest's
  ``check_pending`` rule has it); or ``backend_info`` did not return a ``BackendInfo``.
* ``unavailable``: the plugin is fine but cannot run on this machine: a package it imports or declares in
  ``requires_packages`` is missing, or it ``requires_cuda`` and there is no CUDA device.
* ``ok``: everything else.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from densebench_core import __version__, hookspecs
from densebench_core.backend import BackendInfo

ENTRY_POINT_GROUP = "densebench"
ENV_PLUGINS = "DENSEBENCH_PLUGINS"
ENV_IMPORT_TIMEOUT = "DENSEBENCH_IMPORT_TIMEOUT"
#: seconds a plugin may take to import before it is reported ``failed`` and the command goes on without it
IMPORT_TIMEOUT_S = 20.0
BUILTIN_MODULES = (
    "densebench_core.builtins.baseline",
    "densebench_core.builtins.channels_last",
    "densebench_core.builtins.fp16",
)


@dataclass
class BackendEntry:
    """A discovered backend: what it is, where it came from, and whether it loaded."""

    name: str
    distribution: str
    version: str
    status: str = "ok"  # ok | unavailable (a dependency is missing) | failed (broken plugin)
    reason: str = ""
    info: BackendInfo | None = None
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "description": info.description if info else "",
            "modes": list(info.modes) if info else [],
            "requires_cuda": info.requires_cuda if info else None,
            "requires_packages": list(info.requires_packages) if info else [],
            "stage": info.stage if info else None,
            "composable": info.composable if info else None,
            "options": {key: option.schema() for key, option in info.options.items()} if info else {},
            "hooks": self.hooks,
        }


class PluginRegistry:
    """The plugin manager plus what discovery learned about each backend."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, BackendEntry] = {}
        #: what loading found worth a word (e.g. DENSEBENCH_PLUGINS naming a backend that is not installed)
        self.warnings: list[str] = []

    # -- loading -------------------------------------------------------------------------------------
    def add(self, name: str, plugin: Any, distribution: str, version: str) -> BackendEntry:
        entry = BackendEntry(name=name, distribution=distribution, version=version)
        self.entries[name] = entry
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a hookimpl with a parameter its spec does not have, a duplicate name
            entry.status, entry.reason = "failed", f"registration failed: {exc}"
            return entry
        problem = hook_problems(self.pm, plugin)
        if problem:
            entry.status, entry.reason = "failed", problem
            self.pm.unregister(name=name)
            return entry
        entry.hooks = sorted(hook for hook in hook_names() if self.find_impl(name, hook) is not None)
        try:
            found, info = self.call(name, "backend_info")
            if not found or not isinstance(info, BackendInfo):
                raise TypeError(f"backend_info() must return a densebench_core.backend.BackendInfo, not {info!r}")
            entry.info = info
        except Exception as exc:
            entry.status, entry.reason = "failed", f"backend_info failed: {type(exc).__name__}: {exc}"
            self.pm.unregister(name=name)
            return entry
        unmet = machine_lacks(info)
        if unmet:
            entry.status, entry.reason = "unavailable", unmet
        return entry

    def add_failed(
        self, name: str, distribution: str, version: str, reason: str, status: str = "failed"
    ) -> None:
        self.entries[name] = BackendEntry(name, distribution, version, status=status, reason=reason)

    # -- calling one backend -------------------------------------------------------------------------
    def find_impl(self, name: str, hook: str) -> Callable | None:
        """The function backend ``name`` implements for ``hook``, or None. Never calls other plugins."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name == name:
                return _bind_kwargs(impl.function, impl.argnames)
        return None

    def call(self, name: str, hook: str, **kwargs: Any) -> tuple[bool, Any]:
        """Call backend ``name``'s ``hook`` alone; returns (implemented, result)."""
        fn = self.find_impl(name, hook)
        if fn is None:
            return False, None
        return True, fn(**kwargs)

    def impls(self, members: list[str], hook: str) -> list[tuple[str, Callable]]:
        """(member, implementation) of every recipe member that has ``hook``, in stage order."""
        return [(name, fn) for name in members if (fn := self.find_impl(name, hook)) is not None]

    def last_impl(self, members: list[str], hook: str) -> tuple[str, Callable] | None:
        """(member, implementation) of the last recipe member (stage order) that has ``hook``."""
        found = self.impls(members, hook)
        return found[-1] if found else None

    # -- queries -------------------------------------------------------------------------------------
    def infos(self) -> dict[str, BackendInfo]:
        """Every backend that described itself: ``ok`` ones and those ``unavailable`` on this machine."""
        return {n: e.info for n, e in self.entries.items() if e.status != "failed" and e.info is not None}


def hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "densebench_spec")]


def hook_problems(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """What is wrong with ``plugin``'s hooks, once registered: unknown names, defaulted parameters, unmarked hooks.

    A hook name with no spec would load and never run (pluggy's ``check_pending`` refuses it for the same reason);
    a parameter with a default never receives a value; a function named like a hook but not marked ``@hookimpl``
    is not registered at all.
    """
    known = hook_names()
    callers = pm.get_hookcallers(plugin) or []
    problems = []
    for caller in callers:
        if caller.spec is None:
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known hooks: {', '.join(known)})"
            problems.append(f"unknown hook {caller.name!r}{hint}")
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and impl.kwargnames:
                problems.append(
                    f"hook {caller.name!r} gives {', '.join(impl.kwargnames)} a default value: the core never passes "
                    "a value to such a parameter, so it would always be the default; remove the default"
                )
    registered = {caller.name for caller in callers}
    for name in known:
        function = getattr(plugin, name, None)
        if callable(function) and name not in registered:
            problems.append(f"{name}() is not marked @hookimpl (densebench_core.hookspecs.hookimpl), so it never runs")
    return "; ".join(problems) or None


def machine_lacks(info: BackendInfo) -> str | None:
    """What this machine lacks for the backend (a declared package, a CUDA device), or None."""
    missing = _missing_packages(info)
    if info.requires_cuda:
        import torch

        if not torch.cuda.is_available():
            missing.append("requires a CUDA device, and this machine has none")
    return "; ".join(missing) or None


def _bind_kwargs(function: Callable, argnames: tuple[str, ...]) -> Callable:
    """Wrap an implementation so callers may pass every spec argument; only those it accepts reach it."""

    def call(**kwargs: Any) -> Any:
        return function(**{k: kwargs[k] for k in argnames if k in kwargs})

    call.__wrapped__ = function  # type: ignore[attr-defined]
    call.argnames = argnames  # type: ignore[attr-defined]
    return call


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(ENV_PLUGINS)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def build_registry(load_entry_points: bool = True, only: set[str] | None = None) -> PluginRegistry:
    """Build a fresh registry: built-ins, then each installed entry point, failures recorded.

    :param only: load only these entry points (a worker loads just its recipe's members); default: all that
        ``DENSEBENCH_PLUGINS`` allows.
    """
    registry = PluginRegistry()
    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(module_name)
        registry.add(module.NAME, module, "densebench-core", __version__)
    if not load_entry_points:
        return registry
    allowed = _allowed_names() if only is None else set(only)
    entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    unknown = sorted((allowed or set()) - {ep.name for ep in entry_points} - set(registry.entries))
    if unknown and only is None:
        installed = ", ".join(ep.name for ep in entry_points) or "none"
        registry.warnings.append(f"{ENV_PLUGINS} names {', '.join(map(repr, unknown))}, which "
                                 f"{'is' if len(unknown) == 1 else 'are'} not installed (installed plugins: "
                                 f"{installed})")
    timeout = import_timeout()
    for ep in entry_points:
        if allowed is not None and ep.name not in allowed:
            continue
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in registry.entries:
            registry.add_failed(ep.name, dist, version, f"name {ep.name!r} is already taken")
            continue
        try:
            plugin = _load(ep, timeout)
        except ModuleNotFoundError as exc:
            if _is_own_module(exc.name, ep):
                reason = (f"broken plugin: entry point {ep.value!r} needs module {exc.name!r}, which its own "
                          f"distribution {dist} does not have")
                registry.add_failed(ep.name, dist, version, reason)
            else:
                reason = f"missing dependency: the Python package {exc.name!r} is not installed"
                registry.add_failed(ep.name, dist, version, reason, status="unavailable")
            continue
        except ImportTimeout:
            others = ",".join(e.name for e in entry_points if e.name != ep.name and (allowed is None or e.name in allowed))
            exclude = f"{ENV_PLUGINS}={others}" if others else f"{ENV_PLUGINS}="
            registry.add_failed(ep.name, dist, version, f"import did not finish within {timeout:g} s "
                                f"({ENV_IMPORT_TIMEOUT}); leave it out with {exclude}")
            registry.warnings.append(f"plugin {ep.name!r} did not finish importing within {timeout:g} s and is left "
                                     f"out; to skip the wait, leave it out with {exclude}")
            continue
        except BaseException as exc:  # SystemExit or worse from a plugin must not take the host down
            if isinstance(exc, KeyboardInterrupt):
                raise
            registry.add_failed(ep.name, dist, version, f"import failed: {type(exc).__name__}: {exc}")
            continue
        registry.add(ep.name, plugin, dist, version)
    return registry


class ImportTimeout(Exception):
    """A plugin's import did not finish in time."""


def import_timeout() -> float:
    raw = os.environ.get(ENV_IMPORT_TIMEOUT, "")
    try:
        return float(raw) if raw.strip() else IMPORT_TIMEOUT_S
    except ValueError:
        return IMPORT_TIMEOUT_S


def _load(ep: importlib.metadata.EntryPoint, timeout: float) -> Any:
    """``ep.load()`` in a daemon thread, given ``timeout`` seconds: a plugin hanging at import cannot hang us.

    The thread of an import that never ends is left behind; being a daemon, it does not keep the process alive.
    """
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["plugin"] = ep.load()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
            outcome["error"] = exc

    thread = threading.Thread(target=load, name=f"densebench import {ep.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ImportTimeout(ep.name)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["plugin"]


def _is_own_module(missing: str | None, ep: importlib.metadata.EntryPoint) -> bool:
    """Whether the missing module belongs to the plugin's own packages (a broken plugin, not a missing dependency)."""
    if not missing:
        return True
    own = {ep.module.split(".")[0]}
    if ep.dist is not None:
        own.update((ep.dist.read_text("top_level.txt") or "").split())
    return missing.split(".")[0] in own


def missing_requirements(info: BackendInfo, device_type: str, mode: str) -> str | None:
    """Why a backend cannot run here, judged from its ``BackendInfo`` alone (every unmet need), or None."""
    missing = []
    if mode not in info.modes:
        missing.append(f"does not support {mode} mode (supports: {', '.join(info.modes)})")
    if info.requires_cuda and device_type != "cuda":
        missing.append(f"requires a CUDA device (running on {device_type})")
    return "; ".join(missing + _missing_packages(info)) or None


def _missing_packages(info: BackendInfo) -> list[str]:
    return [f"requires the Python package {p!r}, which is not installed" for p in info.requires_packages
            if importlib.util.find_spec(p) is None]  # fmt: skip
