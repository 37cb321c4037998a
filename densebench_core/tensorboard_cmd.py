"""``densebench tensorboard``: scalars on port 6006 and the torch-tb-profiler view on 6007."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import click

from densebench_core.errors import BadInput


def tensorboard_command(logdir: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
        "--port", str(port), "--reload_interval", "5",
    ]  # fmt: skip


@click.command()
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs/tensorboard"), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--port", default=6006, show_default=True, help="Scalars (TensorBoard) port.")
@click.option("--profiler-port", default=6007, show_default=True, help="PyTorch profiler view port.")
def tensorboard(log_dir: Path, host: str, port: int, profiler_port: int) -> None:
    """Serve the scalars and the profiler traces of every run under LOG_DIR until Ctrl-C."""
    if not log_dir.is_dir():
        raise BadInput(f"log directory not found: {log_dir} (run `densebench run` first)")
    if importlib.util.find_spec("tensorboard") is None:
        raise BadInput("tensorboard is not installed (pip install tensorboard)")
    scalars_dir = log_dir / "scalars" if (log_dir / "scalars").is_dir() else log_dir
    processes = [subprocess.Popen(tensorboard_command(scalars_dir, host, port))]
    click.echo(f"scalars:  http://{host}:{port}/")
    if importlib.util.find_spec("torch_tb_profiler") is None:
        click.echo("profiler: not started: install torch-tb-profiler (pip install torch-tb-profiler)")
    else:
        profiler_dir = log_dir / "profiler"
        profiler_dir.mkdir(exist_ok=True)
        processes.append(subprocess.Popen(tensorboard_command(profiler_dir, host, profiler_port)))
        click.echo(f"profiler: http://{host}:{profiler_port}/#pytorch_profiler")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait()
    failed = [p for p in processes if p.returncode not in (0, -15, None)]
    if failed:
        raise click.ClickException("a TensorBoard process exited early (is the port already in use?)")
