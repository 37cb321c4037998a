"""Backend options (``--backend-option NAME.KEY=VALUE``): the shared parsing every plugin needs."""

from __future__ import annotations

from typing import Any

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


class OptionError(ValueError):
    """A bad backend option; raised from ``check_available`` or ``prepare_model`` it fails the row with this text."""


def merged_options(ctx, backend: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` overlaid with the run's options for ``backend``; an unknown key raises OptionError."""
    given = ctx.options.get(backend, {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise OptionError(
            f"unknown option {backend}.{unknown[0]}; {backend} understands: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **given}


def parse_bool(backend: str, key: str, raw: Any, allow_auto: bool = False) -> bool | None:
    """``true/false`` (and their spellings) as a bool; ``auto`` as None where allowed; else OptionError."""
    value = str(raw).strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    if allow_auto and value in ("auto", "none"):
        return None
    allowed = "true or false" if not allow_auto else "true, false or auto"
    raise OptionError(f"{backend}.{key} must be {allowed}, not {raw!r}")
