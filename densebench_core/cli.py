"""The ``densebench`` command line. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from densebench_core import __version__
from densebench_core.commands_report import compare, report
from densebench_core.errors import BadInput
from densebench_core.tensorboard_cmd import tensorboard

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
# click >= 8.2 raises this for a bare `densebench`; older releases print the help themselves
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", getattr(click.exceptions, "NoArgsIsHelp", ()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="densebench")
def cli() -> None:
    """densebench: measure DenseNet-121 optimization backends uniformly and report which to deploy."""


for _command in (report, compare, tensorboard):  # commands that live beside their concept
    cli.add_command(_command)


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
@click.option("--max-time", type=float, default=None,
              help="Measure at most this many seconds while the median's interval is wider than --ci-target "
                   "(default: 5 x --min-time).")
@click.option("--ci-target", type=float, default=None, metavar="PCT",
              help="Stop measuring once the median's 95%% interval is within +-PCT%% of it (default 1; --quick 2).")
@click.option("--eval-images", type=int, default=None,
              help="Seeded images in the accuracy check (default 256; --quick 64).")
@click.option("--timeout", type=float, default=None,
              help="Seconds per (backend, batch size) child process (default 900; --quick 600 on CPU, 300 on CUDA).")
@click.option("--phase-timeout", type=float, default=None,
              help="Seconds for each phase after the measurement: accuracy check, export, cold start, profile "
                   "(default 300; "
                   "--quick 120). A phase out of time costs only itself: the row keeps its measurement.")
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
@click.option("--devices", default=None, metavar="all|0,1,...",
              help="Run rows in parallel, one per GPU at a time (pinned with CUDA_VISIBLE_DEVICES).")
@click.option("--nproc-per-node", default="1", show_default=True, metavar="N[,N...]",
              help="Training: run each row as N data-parallel processes (torchrun, one GPU each); 1,2 runs each "
                   "row at both counts, and the report shows the scaling efficiency.")
@click.option("--launcher", default="local", show_default=True, metavar="local|NAME",
              help="Where rows run: local (child processes of this one) or an installed launcher (ray).")
@click.option("--launcher-option", "launcher_options", multiple=True, metavar="LAUNCHER.KEY=VALUE",
              help="An option of the launcher, e.g. ray.address=auto (repeatable).")
def run(all_backends, backends, device, mode, batch_sizes, image_size, weights, warmup, min_iters,
        min_time, max_time, ci_target, eval_images, timeout, phase_timeout, output_dir, log_dir, profile, export,
        quick, backend_options, seed, devices, nproc_per_node, launcher, launcher_options):
    """Benchmark backends; each (backend, batch size) runs in its own process."""
    from densebench_core import benchmark, launchers, model, progress
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
        max_time=max_time,
        ci_target=ci_target,
        eval_images=eval_images,
        timeout=timeout,
        phase_timeout=phase_timeout,
        output_dir=output_dir,
        log_dir=log_dir,
        profile=profile,
        export=export,
        quick=quick,
        options=benchmark.parse_options(backend_options),
        seed=seed,
        devices=devices,
        nproc_per_node=nproc_per_node,
        launcher=launcher,
        launcher_options=benchmark.parse_options(launcher_options, "--launcher-option", "LAUNCHER"),
    )
    config.resolve()
    registry = build_registry()
    config.warnings.extend(registry.warnings)
    jobs = benchmark.plan(config, registry)  # names are checked before anything is downloaded or written
    runs_rows = launchers.make(config.launcher, config.launcher_options.get(config.launcher, {}),
                               launchers.Placement(config.device, config.gpu_indices))  # fmt: skip
    config.weights = model.resolve_weights(weights)
    for warning in config.warnings:
        click.echo(f"densebench: warning: {warning}", err=True)
    from densebench_core import sinks

    reporter = progress.Progress()
    try:
        reporter.on_plan(len(jobs))
        store = benchmark.execute(config, registry, jobs, sinks=[reporter, *sinks.default_sinks(config)],
                                  launcher=runs_rows, on_wait=reporter.on_wait)  # fmt: skip
    except KeyboardInterrupt as exc:
        csv_path = config.output_dir / "benchmark_results.csv"
        click.echo(f"\ndensebench: interrupted ({str(exc) or 'Ctrl-C'}); completed rows are kept in {csv_path}",
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
    """List discovered backends (distribution, version, status, stage, reason), then the presets."""
    from densebench_core.plugins import build_registry

    registry = build_registry()
    for warning in registry.warnings:
        click.echo(f"densebench: warning: {warning}", err=True)
    entries = [e.as_dict() for e in registry.entries.values()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    rows = [[e["name"], e["status"], e["stage"] or "-", e["distribution"], e["version"],
             e["reason"] or e["description"]] for e in entries]  # fmt: skip
    click.echo(_columns(["backend", "status", "stage", "distribution", "version", "description or reason"], rows))
    click.echo("\nPresets (run one with --backend NAME; `densebench presets` for details):")
    click.echo(_columns(["preset", "recipe"], [[name, p.recipe] for name, p in _presets().items()]))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def presets(as_json):
    """List the presets: named recipes with options, selectable with --backend NAME."""
    listing = {name: {"recipe": p.recipe, "options": p.options, "description": p.description}
               for name, p in _presets().items()}
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    rows = [[name, p["recipe"], " ".join(f"{b}.{k}={v}" for b, kv in p["options"].items() for k, v in kv.items())
             or "-", p["description"]] for name, p in listing.items()]  # fmt: skip
    click.echo(_columns(["preset", "recipe", "options", "what it is for"], rows))


def _presets():
    from densebench_core.presets import PRESETS

    return PRESETS


def _columns(headers: list[str], rows: list[list[str]]) -> str:
    """A plain table whose columns fit their longest cell (the last column is left free)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    return "\n".join("  ".join([str(c).ljust(w) for c, w in zip(r, widths)] + [str(r[-1])]).rstrip()
                     for r in [headers, *rows])


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
        if key == "cuda_build":
            value = f"{value} (the CUDA release torch was built with; cuda_available says whether a GPU can run)"
        click.echo(f"{key}: {value}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> None:
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
