"""Plugin loading: built-in backends plus entry points of group ``densebench``, one backend at a time.

Each entry point is loaded on its own and any failure is recorded (llm#1280: pluggy's own loader lets one
broken plugin take the host down). ``DENSEBENCH_PLUGINS=amp,jit`` narrows which entry points load
(the built-ins always load: they are the reference); ``DENSEBENCH_PLUGINS=`` (empty) loads none.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from densebench_core import __version__, hookspecs
from densebench_core.backend import BackendInfo

ENTRY_POINT_GROUP = "densebench"
ENV_PLUGINS = "DENSEBENCH_PLUGINS"
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
        except Exception as exc:  # a bad hookimpl signature, a duplicate name
            entry.status, entry.reason = "failed", f"registration failed: {exc}"
            return entry
        entry.hooks = sorted(
            hook for hook in _hook_names() if self.find_impl(name, hook) is not None
        )
        try:
            found, info = self.call(name, "backend_info")
            if not found or not isinstance(info, BackendInfo):
                raise TypeError("backend_info() must return a densebench_core.backend.BackendInfo")
            entry.info = info
        except Exception as exc:
            entry.status, entry.reason = "failed", f"backend_info failed: {type(exc).__name__}: {exc}"
            self.pm.unregister(name=name)
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

    def last_impl(self, members: list[str], hook: str) -> Callable | None:
        """The implementation of the last recipe member (stage order) that has ``hook``."""
        for name in reversed(members):
            fn = self.find_impl(name, hook)
            if fn is not None:
                return fn
        return None

    # -- queries -------------------------------------------------------------------------------------
    def infos(self) -> dict[str, BackendInfo]:
        return {n: e.info for n, e in self.entries.items() if e.status == "ok" and e.info is not None}


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "densebench_spec")]


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


def build_registry(load_entry_points: bool = True) -> PluginRegistry:
    """Build a fresh registry: built-ins, then each installed entry point, failures recorded."""
    registry = PluginRegistry()
    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(module_name)
        registry.add(module.NAME, module, "densebench-core", __version__)
    if not load_entry_points:
        return registry
    allowed = _allowed_names()
    entry_points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    unknown = sorted((allowed or set()) - {ep.name for ep in entry_points} - set(registry.entries))
    if unknown:
        installed = ", ".join(ep.name for ep in entry_points) or "none"
        registry.warnings.append(f"{ENV_PLUGINS} names {', '.join(map(repr, unknown))}, which "
                                 f"{'is' if len(unknown) == 1 else 'are'} not installed (installed plugins: "
                                 f"{installed})")
    for ep in entry_points:
        if allowed is not None and ep.name not in allowed:
            continue
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if ep.name in registry.entries:
            registry.add_failed(ep.name, dist, version, f"name {ep.name!r} is already taken")
            continue
        try:
            plugin = ep.load()
        except ModuleNotFoundError as exc:
            reason = f"missing dependency: the Python package {exc.name!r} is not installed"
            registry.add_failed(ep.name, dist, version, reason, status="unavailable")
            continue
        except BaseException as exc:  # SystemExit or worse from a plugin must not take the host down
            if isinstance(exc, KeyboardInterrupt):
                raise
            registry.add_failed(ep.name, dist, version, f"import failed: {type(exc).__name__}: {exc}")
            continue
        registry.add(ep.name, plugin, dist, version)
    return registry


def missing_requirements(info: BackendInfo, device_type: str, mode: str) -> str | None:
    """Why a backend cannot run here, judged from its ``BackendInfo`` alone (every unmet need), or None."""
    missing = []
    if mode not in info.modes:
        missing.append(f"does not support {mode} mode (supports: {', '.join(info.modes)})")
    if info.requires_cuda and device_type != "cuda":
        missing.append(f"requires a CUDA device (running on {device_type})")
    for package in info.requires_packages:
        if importlib.util.find_spec(package) is None:
            missing.append(f"requires the Python package {package!r}, which is not installed")
    return "; ".join(missing) or None
