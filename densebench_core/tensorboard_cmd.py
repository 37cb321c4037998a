"""``densebench tensorboard``: scalars on port 6006 and the torch-tb-profiler view on 6007.

Two TensorBoard processes, because the profiler view lists every folder with traces as a run and the scalars
view every folder with event files: one on ``LOG/scalars`` and one on ``LOG/profiler`` keep both lists clean.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from densebench_core.errors import BadInput

STOP_WAIT_S = 10.0
PORT = click.IntRange(1, 65535)


def tensorboard_command(logdir: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
        "--port", str(port), "--reload_interval", "5",
    ]  # fmt: skip


def profiler_plugin_problem() -> str | None:
    """None when torch-tb-profiler can be loaded by TensorBoard, else why not (one line)."""
    try:
        importlib.import_module("torch_tb_profiler")
    except ImportError as exc:
        if getattr(exc, "name", None) == "torch_tb_profiler":
            return "torch-tb-profiler is not installed (pip install torch-tb-profiler)"
        return f"torch-tb-profiler cannot be imported: {exc}"
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the scalars view
        return f"torch-tb-profiler cannot be imported: {type(exc).__name__}: {exc}"
    return None


def check_port(host: str, port: int, option: str) -> None:
    """Raise BadInput unless ``host:port`` can be bound right now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host!r} is not an address of this machine: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise BadInput(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another port with {option}"
            ) from None


def shown_host(host: str) -> str:
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def _start(logdir: Path, host: str, port: int, quiet: threading.Event) -> subprocess.Popen:
    """A TensorBoard in its own process group: Ctrl-C reaches only densebench, which stops it cleanly (an
    interrupted torch-tb-profiler can hang on exit when its helper processes got the Ctrl-C too). Its output
    is forwarded to stderr until ``quiet`` is set (torch-tb-profiler's loaders print tracebacks when stopped
    mid-load); torch-tb-profiler logs warnings and errors only unless TORCH_PROFILER_LOG_LEVEL says otherwise."""
    env = {**os.environ}
    env.setdefault("TORCH_PROFILER_LOG_LEVEL", "WARNING")
    process = subprocess.Popen(
        tensorboard_command(logdir, host, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    threading.Thread(target=_forward, args=(process.stdout, quiet), daemon=True).start()
    return process


def _forward(stream, quiet: threading.Event) -> None:
    for line in stream:  # read to the end even when quiet, so the server never blocks on a full pipe
        if not quiet.is_set():
            sys.stderr.write(line)
            sys.stderr.flush()


def _exited(p: subprocess.Popen) -> bool:
    """Whether the process has exited, without reaping it (its pid, so its process group id, stays ours)."""
    if p.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop(processes: list[subprocess.Popen]) -> None:
    """Stop every server: SIGTERM to TensorBoard itself (it cleans up torch-tb-profiler's helper processes),
    a bounded wait, then SIGKILL to whatever is left in its process group, then reap it."""
    for p in processes:
        if not _exited(p):
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline and not all(_exited(p) for p in processes):
        time.sleep(0.1)
    for p in processes:
        if p.returncode is None:  # not reaped yet: the group id cannot have been reused
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        p.wait(timeout=STOP_WAIT_S)


@click.command()
@click.option("--log-dir", type=click.Path(path_type=Path), default=Path("logs/tensorboard"), show_default=True,
              help="The --log-dir of `densebench run`.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--port", type=PORT, default=6006, show_default=True, help="Scalars (TensorBoard) port.")
@click.option("--profiler-port", type=PORT, default=6007, show_default=True, help="PyTorch profiler view port.")
def tensorboard(log_dir: Path, host: str, port: int, profiler_port: int) -> None:
    """Serve the scalars and the profiler traces of every run under LOG_DIR until Ctrl-C."""
    if not log_dir.is_dir():
        raise BadInput(f"log directory not found: {log_dir} (run `densebench run --log-dir {log_dir}` first)")
    if importlib.util.find_spec("tensorboard") is None:
        raise BadInput("tensorboard is not installed (pip install tensorboard)")
    problem = profiler_plugin_problem()
    if problem is None and port == profiler_port:
        raise BadInput(f"--port and --profiler-port must differ (both are {port})")
    check_port(host, port, "--port")
    if problem is None:
        check_port(host, profiler_port, "--profiler-port")

    scalars_dir = log_dir / "scalars" if (log_dir / "scalars").is_dir() else log_dir
    profiler_dir = log_dir / "profiler"
    shown = shown_host(host)
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    processes: list[subprocess.Popen] = []
    quiet = threading.Event()
    interrupted = False
    try:
        processes.append(_start(scalars_dir, host, port, quiet))
        click.echo(f"scalars:  http://{shown}:{port}/#timeseries   (also #hparams, #custom_scalars)")
        if problem is not None:
            click.echo(f"profiler: not started: {problem}")
        else:
            if not profiler_dir.is_dir():
                click.echo(f"profiler: {profiler_dir} has no traces yet (`densebench run --profile` writes them)")
                profiler_dir.mkdir(exist_ok=True)
            processes.append(_start(profiler_dir, host, profiler_port, quiet))
            click.echo(f"profiler: http://{shown}:{profiler_port}/#pytorch_profiler")
        click.echo("Ctrl-C stops both.")
        while not any(_exited(p) for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        time.sleep(0.2)  # let the forwarders print why a server exited early
        quiet.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(processes)
    if not interrupted:
        raise click.ClickException("a TensorBoard process exited early (see its message above)")
