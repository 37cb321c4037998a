"""docs/hooks.md documents every hookspec, and nothing that is not one (as datasette checks its plugin hooks)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from densebench_core import hookspecs
from densebench_core.plugins import hook_names

HOOKS_MD = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"


def hookspec_names() -> list[str]:
    return hook_names()


@pytest.fixture(scope="module")
def headings() -> list[str]:
    return re.findall(r"^##\s+`?(\w+)`?\s*$", HOOKS_MD.read_text(), re.MULTILINE)


def test_there_are_hookspecs():
    assert {"backend_info", "prepare_model", "warmup", "run_step", "export"} <= set(hookspec_names())


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hookspec_has_a_heading(hook, headings):
    assert hook in headings, f"docs/hooks.md has no '## {hook}' heading"


def test_every_heading_is_a_hookspec(headings):
    assert set(headings) <= set(hookspec_names()), "docs/hooks.md documents hooks that do not exist"
    assert len(headings) == len(set(headings)), "a hook is documented twice"


@pytest.mark.parametrize("hook", hookspec_names())
def test_section_shows_the_current_signature_and_summary(hook):
    """Catches a hookspec whose parameters or docstring changed without the page following."""
    text = HOOKS_MD.read_text()
    section = re.search(rf"^## `?{hook}`?\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL).group(1)
    spec = getattr(hookspecs, hook)
    signature = f"def {hook}({', '.join(inspect.signature(spec).parameters)})"
    assert signature in section, f"docs/hooks.md: {hook} should show {signature}"
    summary = inspect.getdoc(spec).splitlines()[0].replace("``", "`")
    assert summary in section, f"docs/hooks.md: {hook} should render its docstring ({summary!r})"
