#!/usr/bin/env bash
# Build and run the densebench suite: through Docker Compose when an engine is reachable, else in a local
# virtualenv. Run ./build_and_run.sh --help for the options; docs/docker.md for the details.
set -euo pipefail

PROG=build_and_run.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLUGINS=(amp aoti compile fused jit trt)

usage() {
  cat <<'EOF'
Usage: ./build_and_run.sh --gpu-enabled true|false [--output-dir DIR] [--runtime auto|docker|local]
                          [--log-dir DIR] [--no-tensorboard] [-- DENSEBENCH_RUN_ARGS...]

Build densebench and benchmark every installed backend (densebench run --all).

Options:
  --gpu-enabled true|false   true: benchmark on the GPU (--device cuda); it must be usable (nvidia-smi -L, and
                             the NVIDIA Container Toolkit for Docker). false: benchmark on the CPU. Required.
  --output-dir DIR           Where benchmark_results.csv, report.md, models/ go (default ./results).
  --log-dir DIR              TensorBoard scalars and profiler traces (default ./logs/tensorboard).
  --runtime auto|docker|local
                             docker: build the image and run through Docker Compose (docker/compose.yaml).
                             local: a virtualenv (DENSEBENCH_VENV, default .venv in the repository) with
                             densebench-core[profiler] and every plugin installed editable (reused when
                             it has them).
                             auto (default): docker if an engine is reachable, else local.
  --no-tensorboard           Docker: do not start the tensorboard (6006) and profiler (6007) services.
  -h, --help                 Show this help and exit.
  -- ARGS...                 Passed on to `densebench run`, e.g. -- --quick, -- --backend jit --mode training
                             (a --backend given here replaces --all).

Environment: DENSEBENCH_VENV (local venv path), DENSEBENCH_PYTHON (interpreter that creates it, default
python3), DENSEBENCH_TB_HOST (address the Compose TensorBoard ports bind to, default 127.0.0.1),
DENSEBENCH_GPUS (GPUs reserved by Compose, default all). pip honours PIP_INDEX_URL / PIP_EXTRA_INDEX_URL,
e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu for CPU-only torch wheels in the local venv.

Exit codes: densebench's (0 all ran or were skipped, 1 a run failed); 2 bad input or no usable GPU.
EOF
}

die_usage() {  # bad input: one line on stderr, exit 2
  echo "$PROG: error: $*" >&2
  exit 2
}
die() {  # something failed while building or running: exit 1
  echo "$PROG: error: $*" >&2
  exit 1
}
say() { echo "==> $*"; }

# ------------------------------------------------------------------------------------------------- arguments
gpu=""
runtime=auto
output_dir=./results
log_dir=./logs/tensorboard
tensorboard=1
run_args=()

need_value() {  # need_value OPTION "$#": the option needs a value
  if [ "$2" -lt 2 ]; then die_usage "$1 needs a value (see --help)"; fi
}

while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --gpu-enabled) need_value "$1" $#; gpu=$2; shift 2 ;;
    --gpu-enabled=*) gpu=${1#*=}; shift ;;
    --runtime) need_value "$1" $#; runtime=$2; shift 2 ;;
    --runtime=*) runtime=${1#*=}; shift ;;
    --output-dir) need_value "$1" $#; output_dir=$2; shift 2 ;;
    --output-dir=*) output_dir=${1#*=}; shift ;;
    --log-dir) need_value "$1" $#; log_dir=$2; shift 2 ;;
    --log-dir=*) log_dir=${1#*=}; shift ;;
    --no-tensorboard) tensorboard=0; shift ;;
    --) shift; run_args=("$@"); break ;;
    *) die_usage "unknown option '$1' (densebench run options go after --; see --help)" ;;
  esac
done

case $gpu in
  true | false) ;;
  "") die_usage "missing --gpu-enabled true|false (see --help)" ;;
  *) die_usage "--gpu-enabled must be true or false, not '$gpu'" ;;
esac
case $runtime in
  auto | docker | local) ;;
  *) die_usage "--runtime must be auto, docker or local, not '$runtime'" ;;
esac
if [ -z "$output_dir" ]; then die_usage "--output-dir must not be empty"; fi
if [ -z "$log_dir" ]; then die_usage "--log-dir must not be empty"; fi

device=cpu
if [ "$gpu" = true ]; then device=cuda; fi

# `--all` unless the densebench arguments choose backends themselves.
select_all=(--all)
for a in ${run_args[@]+"${run_args[@]}"}; do
  case $a in --backend | --backend=* | --all) select_all=() ;; esac
done

# ------------------------------------------------------------------------------------------------- checks
with_timeout() {  # with_timeout SECONDS CMD...: run CMD, killed after SECONDS where timeout(1) exists
  local seconds=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout "$seconds" "$@"; else "$@"; fi
}

engine_reachable() {
  command -v docker >/dev/null 2>&1 && with_timeout 20 docker info >/dev/null 2>&1
}

compose=()
find_compose() {  # sets compose=(docker compose) or (docker-compose); fails when neither is Compose v2
  if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'v2\.'; then
    compose=(docker-compose)
  else
    return 1
  fi
}

host_gpu_problem() {  # prints why the host has no usable NVIDIA GPU; silent (status 1) when it has one
  local out
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "nvidia-smi not found (no NVIDIA driver)"
  elif ! out=$(with_timeout 30 nvidia-smi -L 2>&1); then
    echo "nvidia-smi -L failed: $(printf '%s' "$out" | head -n 1)"
  elif ! printf '%s\n' "$out" | grep -q '^GPU '; then
    echo "nvidia-smi -L lists no GPU"
  else
    return 1
  fi
}

docker_gpu_problem() {  # prints why Docker cannot give containers the GPU; silent (status 1) when it can
  local problem runtimes
  runtimes=$(with_timeout 20 docker info --format '{{json .Runtimes}}' 2>/dev/null || true)
  if ! printf '%s' "$runtimes" | grep -q '"nvidia"' \
    && ! command -v nvidia-container-runtime-hook >/dev/null 2>&1 \
    && ! command -v nvidia-ctk >/dev/null 2>&1; then
    echo "the Docker engine has no NVIDIA runtime (install the NVIDIA Container Toolkit, or use --runtime local)"
    return 0
  fi
  case ${DOCKER_HOST:-unix://} in
    unix://*) if problem=$(host_gpu_problem); then echo "$problem"; return 0; fi ;;
  esac
  return 1
}

absolute_dir() {  # absolute_dir DIR WHAT: create DIR if needed, check it is writable, print its absolute path
  mkdir -p -- "$1" 2>/dev/null || die_usage "cannot create the $2 '$1'"
  [ -w "$1" ] || die_usage "the $2 '$1' is not writable"
  (cd -- "$1" && pwd)
}

if [ "$runtime" = auto ]; then
  if ! engine_reachable; then
    runtime=local
    fallback_reason="no Docker engine reachable"
  elif ! find_compose; then
    runtime=local
    fallback_reason="Docker engine reachable but no Docker Compose v2"
  else
    runtime=docker
  fi
elif [ "$runtime" = docker ]; then
  command -v docker >/dev/null 2>&1 || die_usage "--runtime docker: the docker command is not installed"
  engine_reachable || die_usage "--runtime docker: no Docker engine reachable (docker info failed)"
  find_compose || die_usage "--runtime docker: Docker Compose v2 not found (docker compose version failed)"
fi

if [ "$gpu" = true ]; then
  if [ "$runtime" = docker ]; then
    if problem=$(docker_gpu_problem); then
      die_usage "--gpu-enabled true but no usable GPU for Docker: $problem"
    fi
  elif problem=$(host_gpu_problem); then
    die_usage "--gpu-enabled true but no usable GPU: $problem"
  fi
fi

results_abs=$(absolute_dir "$output_dir" "output directory")
# The local virtualenv: DENSEBENCH_VENV (relative to the current directory) or .venv in the repository.
venv_path=${DENSEBENCH_VENV:-$REPO/.venv}
case $venv_path in /*) ;; *) venv_path=$PWD/$venv_path ;; esac
logs_abs=$(absolute_dir "$log_dir" "log directory")

summary() {  # summary RC TB_HINT...: where the results are
  local rc=$1
  shift
  # Only 0 and 1 mean densebench wrote results in this invocation; after bad input (2) or an early death, the
  # files in the output folder are an earlier run's, and naming them would pass them off as this one's.
  case $rc in
    0 | 1) ;;
    *) return 0 ;;
  esac
  echo
  if [ -f "$results_abs/benchmark_results.csv" ]; then
    echo "results:     $results_abs/benchmark_results.csv"
  else
    echo "results:     none written to $results_abs"
  fi
  if [ -f "$results_abs/report.md" ]; then
    echo "report:      $results_abs/report.md"
  else
    echo "report:      none in $results_abs (densebench report $results_abs writes one)"
  fi
  echo "logs:        $logs_abs"
  printf '%s\n' "$@"
  echo "exit status: $rc"
}

# ------------------------------------------------------------------------------------------------- docker
run_docker() {
  local files=(-f "$REPO/docker/compose.yaml") variant=gpu services=(bench) run_opts=(--rm) rc=0 tb_started=0
  if [ "$gpu" = false ]; then files+=(-f "$REPO/docker/compose.cpu.yaml"); variant=cpu; fi
  if [ "$tensorboard" = 1 ]; then services+=(tensorboard profiler); fi
  mkdir -p "$logs_abs/scalars" "$logs_abs/profiler"
  export DENSEBENCH_RESULTS=$results_abs DENSEBENCH_LOGS=$logs_abs
  DENSEBENCH_UID=$(id -u)
  DENSEBENCH_GID=$(id -g)
  export DENSEBENCH_UID DENSEBENCH_GID
  local dc=("${compose[@]}" "${files[@]}")

  say "Docker engine reachable: building the $variant image with ${compose[*]} (docker/compose.yaml)"
  "${dc[@]}" build "${services[@]}" || die "docker compose build failed"
  if [ "$tensorboard" = 1 ]; then
    if "${dc[@]}" up -d tensorboard profiler; then
      tb_started=1
    else
      echo "$PROG: warning: the tensorboard/profiler services did not start (ports 6006/6007 in use?)" >&2
    fi
  fi
  if ! [ -t 0 ] || ! [ -t 1 ]; then run_opts+=(-T); fi
  local cmd=(run ${select_all[@]+"${select_all[@]}"} --device "$device" --output-dir /results --log-dir /logs
    ${run_args[@]+"${run_args[@]}"})
  say "running: densebench ${cmd[*]} (in the bench container: /results is $results_abs, /logs is $logs_abs)"
  "${dc[@]}" run "${run_opts[@]}" bench "${cmd[@]}" || rc=$?

  local host=${DENSEBENCH_TB_HOST:-127.0.0.1} hints=()
  if [ "$host" = 0.0.0.0 ]; then host=127.0.0.1; fi
  if [ "$tb_started" = 1 ]; then
    hints+=("tensorboard: http://$host:6006 (scalars), http://$host:6007/#pytorch_profiler (profiler);")
    hints+=("             stop them with: ${dc[*]} down")
  else
    hints+=("tensorboard: ${dc[*]} up -d tensorboard profiler  ->  http://$host:6006 and :6007")
  fi
  summary "$rc" "${hints[@]}"
  return "$rc"
}

# ------------------------------------------------------------------------------------------------- local
run_local() {
  local venv=$venv_path python=${DENSEBENCH_PYTHON:-python3} rc=0 shown=$venv_path
  if [ -z "${DENSEBENCH_VENV:-}" ]; then shown=.venv; fi
  if [ -n "${fallback_reason:-}" ]; then
    say "$fallback_reason: running locally in $shown"
  else
    say "runtime local: running in $shown"
  fi

  local find_links=()
  if compgen -G "$REPO/.whl/*.whl" >/dev/null; then find_links=(--find-links "$REPO/.whl"); fi
  # -I: the check must not import densebench_core from the repository folder (the current directory).
  if [ -x "$venv/bin/densebench" ] && "$venv/bin/python" -I -c "import densebench_core" >/dev/null 2>&1; then
    say "reusing $shown (densebench is installed; delete the folder to reinstall)"
    if ! "$venv/bin/python" -I -c "import torch_tb_profiler" >/dev/null 2>&1; then
      say "installing torch-tb-profiler into $shown for the profiler view (6007)"
      "$venv/bin/python" -m pip install -q --disable-pip-version-check ${find_links[@]+"${find_links[@]}"} \
        torch-tb-profiler \
        || echo "$PROG: warning: torch-tb-profiler could not be installed: no profiler view on 6007" >&2
    fi
  else
    command -v "$python" >/dev/null 2>&1 || die_usage "$python not found (set DENSEBENCH_PYTHON to a Python 3.10+)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
      || die_usage "$python is older than Python 3.10 (set DENSEBENCH_PYTHON)"
    if [ ! -x "$venv/bin/python" ]; then
      say "creating the virtualenv $shown"
      "$python" -m venv "$venv" || die "could not create the virtualenv $venv (on Debian/Ubuntu: apt install python3-venv)"
    fi
    # The profiler extra: torch-tb-profiler for the 6007 view (a wheel of it may travel in .whl/ for offline hosts).
    local pkgs=(-e "${REPO}[profiler]") name
    for name in "${PLUGINS[@]}"; do
      if [ -f "$REPO/plugins/densebench_$name/pyproject.toml" ]; then
        pkgs+=(-e "$REPO/plugins/densebench_$name")
      else
        say "plugin densebench_$name not found under plugins/: skipped"
      fi
    done
    say "installing densebench-core[profiler] and the plugins into $shown with pip (torch too, from your pip"
    say "configuration: the first time this takes a few minutes)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check ${find_links[@]+"${find_links[@]}"} "${pkgs[@]}" \
      || die "pip install failed (see above); fix it and run again"
  fi

  local cmd=(run ${select_all[@]+"${select_all[@]}"} --device "$device" --output-dir "$results_abs"
    --log-dir "$logs_abs" ${run_args[@]+"${run_args[@]}"})
  say "running: densebench ${cmd[*]}"
  "$venv/bin/densebench" "${cmd[@]}" || rc=$?

  summary "$rc" \
    "tensorboard: $venv/bin/densebench tensorboard --log-dir $logs_abs" \
    "             ->  http://127.0.0.1:6006 (scalars), http://127.0.0.1:6007/#pytorch_profiler (profiler)"
  return "$rc"
}

cd "$REPO"
rc=0
if [ "$runtime" = docker ]; then run_docker || rc=$?; else run_local || rc=$?; fi
exit "$rc"
