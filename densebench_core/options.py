"""Backend options (``--backend-option NAME.KEY=VALUE``): declared typed, parsed once, in the parent.

A backend declares each option in ``BackendInfo.options`` as an :class:`Option` (type or choices, default, one line
of help). ``densebench run`` parses every option of every backend in the run before any worker starts
(:func:`resolve`): a bad key or value is bad input (exit 2) with one line naming the option and what it allows.
Hooks then find the typed values, defaults filled in, in ``ctx.options[backend]`` (``ctx.option(backend, key)``):
a ``bool`` is ``True``/``False`` (``None`` for ``auto`` where allowed), an ``int`` an int, a choice one of its
choices. Plugins never parse strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")
AUTO = "auto"
TYPES = {"str": str, "bool": bool, "int": int, "float": float}


class OptionError(ValueError):
    """A bad backend option value; raised while parsing, it becomes one line of bad input."""


@dataclass(frozen=True)
class Option:
    """One option of a backend.

    :param default: the value when the user gives none (already typed: ``True``, ``8``, ``"default"``; ``None``
        means ``auto`` for an option with ``auto=True``).
    :param help: one line for ``densebench plugins --json`` and the docs.
    :param type: ``str``, ``bool``, ``int`` or ``float``.
    :param choices: for a ``str`` option, the values allowed (after ``aliases``); empty allows any text.
    :param aliases: other spellings of a choice, e.g. ``{"half": "fp16"}``.
    :param auto: whether ``auto`` is allowed; it parses to ``None`` ("let the backend decide").
    :param minimum: the smallest value of an ``int`` or ``float`` option.
    """

    default: Any
    help: str = ""
    type: type = str
    choices: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    auto: bool = False
    minimum: float | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES.values():
            raise TypeError(f"Option type must be one of str, bool, int, float, not {self.type!r}")

    def allowed(self) -> str:
        """What the option takes, in words: ``one of a, b, c``, ``true or false``, ``a whole number >= 1``."""
        if self.type is bool:
            return f"{AUTO}, true or false" if self.auto else "true or false"
        if self.type is int:
            return f"{'auto or ' if self.auto else ''}a whole number" + (
                f" >= {self.minimum:g}" if self.minimum is not None else "")
        if self.type is float:
            return f"{'auto or ' if self.auto else ''}a number" + (
                f" >= {self.minimum:g}" if self.minimum is not None else "")
        if self.choices:
            return "one of " + ", ".join(([AUTO] if self.auto else []) + list(self.choices))
        return "any text"

    def parse(self, raw: Any) -> Any:
        """The typed value of ``raw`` (text from the command line, or an already typed value); OptionError."""
        if not isinstance(raw, str):
            raw = _text(raw)
        text = raw.strip()
        if self.auto and text.lower() == AUTO:
            return None
        if self.type is bool:
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
            raise OptionError(f"must be {self.allowed()}, not {raw!r}")
        if self.type in (int, float):
            try:
                value = self.type(text)
            except ValueError:
                raise OptionError(f"must be {self.allowed()}, not {raw!r}") from None
            if self.type is float and not math.isfinite(value):
                raise OptionError(f"must be {self.allowed()}, not {raw!r}")
            if self.minimum is not None and value < self.minimum:
                raise OptionError(f"must be {self.allowed()}, not {raw!r}")
            return value
        if self.choices:  # case does not matter: FP16 is fp16
            spellings = {c.lower(): c for c in self.choices} | {a.lower(): c for a, c in self.aliases.items()}
            if text.lower() not in spellings:
                raise OptionError(f"must be {self.allowed()}, not {raw!r}")
            return spellings[text.lower()]
        if not text:
            raise OptionError("must not be empty")
        return text

    def schema(self) -> dict[str, Any]:
        """The option as ``densebench plugins --json`` shows it."""
        schema: dict[str, Any] = {
            "type": next(name for name, t in TYPES.items() if t is self.type),
            "default": AUTO if self.default is None and self.auto else self.default,
            "help": self.help,
            "allowed": self.allowed(),
        }
        if self.choices:
            schema["choices"] = ([AUTO] if self.auto else []) + list(self.choices)
        if self.aliases:
            schema["aliases"] = dict(self.aliases)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        return schema


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return AUTO
    return str(value)


def as_option(declared: Any) -> Option:
    """An :class:`Option`; a plain default (``{"mode": "cast"}``, the older style) becomes an option of its type."""
    if isinstance(declared, Option):
        return declared
    kind = type(declared) if isinstance(declared, (bool, int, float)) else str
    return Option(default=declared if kind is not str else _text(declared), type=kind)


def resolve(owner: str, declared: dict[str, Option], given: dict[str, Any],
            check: Callable[[dict[str, Any]], str | None] | None = None, *, kind: str = "backend",
            flag: str = "--backend-option") -> dict[str, Any]:
    """Every option of ``owner`` (a backend, or a launcher), typed: the defaults overlaid with ``given``; raises
    OptionError naming ``flag``.

    :param declared: ``BackendInfo.options`` (``LauncherInfo.options``).
    :param given: the values the user (or a preset) set, as text or typed.
    :param check: ``check_options``: a reason when the values do not go together.
    """
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise OptionError(f"{kind} {owner!r} has no option {unknown[0]!r}; its options: {known}")
    values = {key: option.default for key, option in declared.items()}
    for key, raw in given.items():
        try:
            values[key] = declared[key].parse(raw)
        except OptionError as exc:
            raise OptionError(f"{flag} {owner}.{key} {exc}") from None
    problem = check(values) if check else None
    if problem:
        raise OptionError(f"{flag} {owner}: {problem}")
    return values


def resolve_recipe(members: list[str], infos: dict, given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Typed options (defaults filled in) for every member of a recipe, from ``{backend: {key: value}}``.

    :param infos: ``BackendInfo`` by backend name (members missing from it are left out: they cannot run).
    :raises OptionError: a key or value a member does not take, values that do not go together, or a member
        that cannot go with the others (``BackendInfo.check_recipe``).
    """
    resolved = {
        member: resolve(member, infos[member].options, given.get(member, {}), infos[member].check_options)
        for member in members
        if member in infos
    }
    for member in resolved:
        check = infos[member].check_recipe
        problem = check(list(members), resolved) if check and len(members) > 1 else None
        if problem:
            raise OptionError(f"recipe {'+'.join(members)}: {problem}")
    return resolved
