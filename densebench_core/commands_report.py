"""``densebench report`` and ``densebench compare``: click commands, registered on the main group by ``cli.py``.

Bad input is raised as :class:`~densebench_core.errors.BadInput`; the main entry point turns it into one line on
stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from densebench_core.compare import DEFAULT_FLOOR_PCT


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
def report(results_dir: Path) -> None:
    """Rebuild report.md, report.html and plots/ in RESULTS_DIR from its benchmark_results.csv (and .json)."""
    from densebench_core.report import build_report

    written = build_report(results_dir)
    click.echo(f"report: {written['report_md']}")
    click.echo(f"html:   {written['report_html']}")
    plots = written["plots"]
    click.echo(f"plots:  {len(plots)} in {results_dir / 'plots'}" if plots else "plots:  none (no ok rows)")


@click.command("compare")
@click.argument("base_csv", type=click.Path(path_type=Path))
@click.argument("new_csv", type=click.Path(path_type=Path))
@click.option("--floor", "floor_pct", type=float, default=DEFAULT_FLOOR_PCT, show_default=True, metavar="PCT",
              help="Smallest change of the median latency (percent) ever called a regression.")
@click.pass_context
def compare(ctx: click.Context, base_csv: Path, new_csv: Path, floor_pct: float) -> None:
    """Compare two results CSVs (or results folders); exit code 1 if any row regressed.

    A row regresses when its median latency rose significantly (a rank test on the raw latencies from the
    results JSON beside each CSV, else the medians' 95% intervals) and by more than --floor.
    """
    from densebench_core.compare import compare_results

    result = compare_results(base_csv, new_csv, floor_pct=floor_pct)
    click.echo(result.format_table())
    ctx.exit(1 if result.has_regression else 0)
