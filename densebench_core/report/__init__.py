"""The results report: ``report.md``, a self-contained ``report.html`` and PNG plots under ``plots/``.

Modules: :mod:`densebench_core.schema` (outside this package) reads and validates the CSV/JSON, :mod:`.analysis`
computes what the report says, :mod:`.plots` draws the figures, one module per part of the report writes its
sections (:mod:`.intro`, :mod:`.performance`, :mod:`.tradeoffs`, :mod:`.time_spent`, :mod:`.environment`, with
:mod:`.fmt` for numbers and shared phrases), :mod:`.render` turns the document into Markdown and HTML, and
:mod:`.build` puts them together. Usage::

    from densebench_core.report import build_report
    written = build_report(Path("results"))   # {"report_md": Path, "report_html": Path, "plots": [...], ...}
"""

from densebench_core.report.build import build_report

__all__ = ["build_report"]
