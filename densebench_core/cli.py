"""The ``densebench`` command line. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from densebench_core import __version__
from densebench_core.errors import BadInput

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# click >= 8.2 raises this for a bare `densebench`; older releases print the help themselves
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", getattr(click.exceptions, "NoArgsIsHelp", ()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="densebench")
def cli() -> None:
    """densebench: measure DenseNet-121 optimization backends uniformly and report which to deploy."""


@cli.command()
@click.option("--all", "all_backends", is_flag=True, help="Run every installed backend.")
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="A backend or a recipe such as channels_last+amp+compile (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cuda or cpu.")
@click.option("--mode", default="inference", show_default=True,
              help="inference, training, or both as inference,training.")
@click.option("--batch-sizes", default=None, help="Comma-separated, e.g. 1,32,256 (default; --quick: 1,2 on CPU).")
@click.option("--image-size", type=int, default=None, help="Square input size in pixels (default 224).")
@click.option("--weights", default="auto", show_default=True,
              help="random, imagenet, or a state-dict path; auto = imagenet if cached locally, else random.")
@click.option("--warmup", type=int, default=None, help="Warm-up iterations before timing.")
@click.option("--min-iters", type=int, default=None, help="Measure at least this many iterations.")
@click.option("--min-time", type=float, default=None, help="Measure for at least this many seconds.")
@click.option("--timeout", type=float, default=None, help="Seconds per (backend, batch size) child process.")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs/tensorboard"), show_default=True)
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="A short torch.profiler pass per row, after (never inside) the timed loop.")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Write each backend's deployable artifact to OUTPUT_DIR/models/.")
@click.option("--quick", is_flag=True, help="Small, fast settings for a smoke run.")
@click.option("--backend-option", "backend_options", multiple=True, metavar="BACKEND.KEY=VALUE",
              help="A backend setting, e.g. compile.mode=max-autotune (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights and inputs.")
def run(all_backends, backends, device, mode, batch_sizes, image_size, weights, warmup, min_iters,
        min_time, timeout, output_dir, log_dir, profile, export, quick, backend_options, seed):
    """Benchmark backends; each (backend, batch size) runs in its own process."""
    from densebench_core import benchmark, model, progress
    from densebench_core.plugins import build_registry

    if all_backends and backends:
        raise BadInput("use either --all or --backend, not both")
    config = benchmark.RunConfig(
        backends=list(backends),
        all_backends=all_backends,
        device=device,
        mode=mode,
        batch_sizes=benchmark.parse_batch_sizes(batch_sizes) if batch_sizes is not None else None,
        image_size=image_size,
        warmup=warmup,
        min_iters=min_iters,
        min_time=min_time,
        timeout=timeout,
        output_dir=output_dir,
        log_dir=log_dir,
        profile=profile,
        export=export,
        quick=quick,
        options=benchmark.parse_options(backend_options),
        seed=seed,
    )
    config.resolve()
    registry = build_registry()
    jobs = benchmark.plan(config, registry)  # names are checked before anything is downloaded or written
    config.weights = model.resolve_weights(weights)
    from densebench_core import sinks

    reporter = progress.Progress()
    try:
        store = benchmark.execute(
            config, registry, jobs, sinks=[reporter, *sinks.default_sinks(config)], on_start=reporter.on_start
        )
    except KeyboardInterrupt as exc:
        csv_path = config.output_dir / "benchmark_results.csv"
        click.echo(f"\ndensebench: interrupted ({exc or 'Ctrl-C'}); completed rows are kept in {csv_path}",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(f"results: {store.results_dir / 'benchmark_results.csv'} (run {store.run_id})")
    _write_report(store.results_dir)
    if any(row["status"] in ("failed", "timeout") for row in store.rows):
        sys.exit(EXIT_FAILED)


def _write_report(results_dir: Path) -> None:
    """Every run leaves its report; a report problem is a warning, never a lost run."""
    from densebench_core.report import build_report

    try:
        written = build_report(results_dir)
    except Exception as exc:  # BadInput included: the CSV is already safe on disk
        click.echo(f"densebench: warning: report not written: {exc}", err=True)
        return
    click.echo(f"report:  {written['report_md']} ({len(written['plots'])} plots)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """List discovered backends with distribution, version, status and reason."""
    from densebench_core.plugins import build_registry

    entries = [e.as_dict() for e in build_registry().entries.values()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        line = f"{e['name']:<16} {e['status']:<12} {e['distribution']} {e['version']}"
        detail = e["reason"] or e["description"]
        click.echo(f"{line}  {detail}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env(as_json):
    """Show torch, CUDA, cuDNN, driver, GPU and clocks (stored with every run too)."""
    from densebench_core import envinfo

    info = envinfo.collect("cuda" if _cuda() else "cpu")
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        click.echo(f"{key}: {value}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _add_optional_commands() -> None:
    """Commands that live beside their concept: report/compare, tensorboard."""
    from densebench_core import commands_report, tensorboard_cmd

    cli.add_command(commands_report.report)
    cli.add_command(commands_report.compare)
    cli.add_command(tensorboard_cmd.tensorboard)


def main(argv: list[str] | None = None) -> None:
    _add_optional_commands()
    try:
        code = cli.main(args=argv, prog_name="densebench", standalone_mode=False)
    except BadInput as exc:
        click.echo(f"densebench: error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except _NO_ARGS_IS_HELP as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(EXIT_OK)
    except click.UsageError as exc:
        click.echo(f"densebench: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        click.echo("densebench: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        click.echo(f"densebench: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
