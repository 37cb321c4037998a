"""What a backend says about itself (``backend_info``) and how recipes of backends combine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from densebench_core.errors import BadInput
from densebench_core.options import Option, as_option

#: Recipe stages, in the order their members are applied. A recipe holds at most one backend per stage.
STAGES = ("layout", "precision", "rewrite", "compiler")

#: Other names a backend answers to.
ALIASES = {"quantize": "fp16"}


@dataclass(frozen=True)
class BackendInfo:
    """A backend's description for discovery and recipe building.

    :param description: one line for ``densebench plugins``.
    :param modes: the modes it supports (``inference``, ``training``).
    :param requires_cuda: ``True`` if it only runs on a CUDA device.
    :param requires_packages: importable top-level packages it needs (checked without importing them).
    :param stage: its recipe stage, one of :data:`STAGES` (None for a backend that does not compose).
    :param composable: whether it may be combined with others in a ``+`` recipe.
    :param options: the options it understands (``--backend-option NAME.KEY=VALUE``), each an
        :class:`~densebench_core.options.Option` (a plain default value is taken as an option of its type).
    :param check_options: called in the parent with all of its typed option values: a one-line reason when they
        do not go together (bad input, exit 2), else None.
    :param check_recipe: called in the parent with the recipe's members (stage order) and their typed options
        (``{backend: {key: value}}``): a one-line reason when this backend cannot go with the others (bad input,
        exit 2), else None.
    :param artifact_per_batch_size: whether its exported artifact is specific to the batch size (a TensorRT
        engine of static shape); when False, a run exports it once per recipe and mode and later batch sizes
        point to that file.
    """

    description: str
    modes: tuple[str, ...] = ("inference",)
    requires_cuda: bool = False
    requires_packages: tuple[str, ...] = ()
    stage: str | None = "compiler"
    composable: bool = True
    options: dict[str, Option] = field(default_factory=dict)
    check_options: Callable[[dict[str, Any]], str | None] | None = None
    check_recipe: Callable[[list[str], dict[str, dict[str, Any]]], str | None] | None = None
    artifact_per_batch_size: bool = True

    def __post_init__(self):
        if self.stage not in STAGES and not (self.stage is None and not self.composable):
            raise ValueError(f"stage must be one of {STAGES} (or None when not composable), not {self.stage!r}")
        object.__setattr__(self, "options", {key: as_option(value) for key, value in self.options.items()})


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def parse_recipe(spec: str, infos: dict[str, BackendInfo]) -> list[str]:
    """Turn ``channels_last+amp+compile`` into member names in stage order, or raise BadInput.

    :param spec: one backend name or several joined by ``+``.
    :param infos: the known backends' infos, by name.
    """
    members = [canonical_name(part.strip()) for part in spec.split("+")]
    if any(not m for m in members):
        raise BadInput(f"empty backend name in {spec!r}")
    unknown = [m for m in members if m not in infos]
    if unknown:
        raise BadInput(
            f"unknown backend {unknown[0]!r}; available: {', '.join(sorted(infos)) or 'none'}"
        )
    if len(set(members)) != len(members):
        raise BadInput(f"recipe {spec!r} names a backend twice")
    if len(members) == 1:
        return members
    for m in members:
        if not infos[m].composable:
            raise BadInput(f"backend {m!r} does not compose with others (recipe {spec!r})")
    by_stage: dict[str, str] = {}
    for m in members:
        stage = infos[m].stage
        if stage in by_stage:
            raise BadInput(
                f"recipe {spec!r} cannot compose: {by_stage[stage]!r} and {m!r} are both {stage} backends"
            )
        by_stage[stage] = m
    return sorted(members, key=lambda m: STAGES.index(infos[m].stage))


def recipe_name(members: list[str]) -> str:
    return "+".join(members)
