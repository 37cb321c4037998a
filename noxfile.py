"""Test sessions: the core alone, each plugin alone with the core, everything together, and lint.

torch and the other heavy third-party packages are installed once, not once per session. Where they come from:

- the dependency virtualenv ``.ci/.deps`` (``DENSEBENCH_TEST_DEPS`` names another), which ``.ci/run`` creates and
  fills and which holds no densebench package: when it exists, each session venv gets its site-packages on the
  path, after the session's own, through a ``.pth`` file. Sessions see nothing else from the Python that runs nox,
  so this works the same from an activated virtualenv (where ``--system-site-packages`` would give the base
  interpreter's packages, not the virtualenv's) and from one with densebench installed (e.g. all plugins editable);
- otherwise (``nox`` run without ``.ci/run`` ever having run), the site-packages of the interpreter behind the
  Python that runs nox (``--system-site-packages``), as before: install the test dependencies there yourself
  (``bash scripts/install_test_deps.sh``). Inside an activated virtualenv that is its base interpreter, so use
  ``.ci/run`` there.

densebench's own packages are installed into each session alone, so each session sees exactly the plugins it
installed. Run ``nox -l`` to list the sessions, ``nox -s core`` to run one.
"""

import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False

PLUGINS = ["amp", "aoti", "compile", "fused", "jit", "trt"]
INSTALL = ["--no-build-isolation"]
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
#: most tests wait on child processes far more than they compute, so two pytest-xdist workers share the machine;
#: torch runs on one thread in each (two processes with a thread per core each slow both down many times over);
#: the tests marked ``serial`` (they judge timings: a quiet machine is what they check) run afterwards, alone
PARALLEL = ["-n", "2", "-m", "not serial"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
DEPS_VENV = Path(os.environ.get("DENSEBENCH_TEST_DEPS") or Path(__file__).resolve().parent / ".ci" / ".deps")
DEPS_PYTHON = DEPS_VENV / "bin" / "python"
PTH = "densebench_test_deps.pth"
WRITE_PTH = (
    "import pathlib, sys, sysconfig as c; pathlib.Path(c.get_path('purelib'), sys.argv[1]).write_text(sys.argv[2])"
)


def deps_site_packages():
    """The dependency virtualenv's site-packages, or None where there is none usable by sessions of this Python."""
    if not DEPS_PYTHON.exists():
        if "DENSEBENCH_TEST_DEPS" in os.environ:
            sys.exit(f"noxfile: DENSEBENCH_TEST_DEPS={DEPS_VENV}: {DEPS_PYTHON} does not exist")
        return None
    program = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_path('purelib'))"
    proc = subprocess.run([str(DEPS_PYTHON), "-c", program], capture_output=True, text=True)
    version, _, purelib = proc.stdout.strip().partition("\n")
    mine = "%d.%d" % sys.version_info[:2]  # sessions are created from the Python that runs nox
    if proc.returncode == 0 and version == mine:
        return purelib
    why = f"its python is {version}, nox runs on {mine}" if proc.returncode == 0 else proc.stderr.strip()
    if "DENSEBENCH_TEST_DEPS" in os.environ:
        sys.exit(f"noxfile: DENSEBENCH_TEST_DEPS={DEPS_VENV} is not usable: {why}")
    print(f"noxfile: not using {DEPS_VENV} ({why}); sessions use --system-site-packages", file=sys.stderr)
    return None


DEPS_SITE = deps_site_packages()
VENV = [] if DEPS_SITE else ["--system-site-packages"]


def use_test_deps(session):
    """Give the session venv the dependency virtualenv's site-packages (its .pth files too), after its own."""
    if DEPS_SITE:
        line = f"import site; site.addsitedir({DEPS_SITE!r})\n"
        session.log(f"test dependencies: {DEPS_SITE} on the path ({PTH})")
        session.run("python", "-c", WRITE_PTH, PTH, line, silent=True, log=False)


def install_core(session):
    use_test_deps(session)
    session.install(*INSTALL, "-e", ".")


def plugin_dir(name):
    return f"plugins/densebench_{name}"


@nox.session(venv_params=VENV)
def core(session):
    """The core package alone: plugin host, runner, results, CLI, report, TensorBoard, tutorial plugin."""
    install_core(session)
    # the tests reading the shared quick and training runs (session fixtures) in one worker, so each runs once
    session.run(*PYTEST, *PARALLEL, "--dist", "loadgroup", "tests", *session.posargs, env=ONE_THREAD)
    session.run(*PYTEST, "-m", "serial", "tests", *session.posargs)


@nox.session(venv_params=VENV)
@nox.parametrize("plugin", PLUGINS)
def plugin(session, plugin):
    """One plugin with the core and nothing else: its own tests (the kit's contract suite) and its listing."""
    install_core(session)
    session.install(*INSTALL, "-e", plugin_dir(plugin))
    session.run("python", "scripts/check_plugin_listing.py", "--expect", plugin, "--absent",
                *[p for p in PLUGINS if p != plugin])  # fmt: skip
    session.run(*PYTEST, f"{plugin_dir(plugin)}/tests", *session.posargs)


@nox.session(venv_params=VENV)
def all(session):
    """Core and every plugin installed: the all-backends acceptance run and recipes."""
    install_core(session)
    for name in PLUGINS:
        session.install(*INSTALL, "-e", plugin_dir(name))
    session.run("python", "scripts/check_plugin_listing.py", "--expect", *PLUGINS)
    session.run(*PYTEST, *PARALLEL, "--dist", "loadfile", "tests_all", *session.posargs, env=ONE_THREAD)


@nox.session(venv_params=VENV)
def ray(session):
    """The ray launcher (plugins/densebench_ray) with the core: rows on a real local Ray instance and a cluster
    started apart, on the CPU. A launcher, not a backend: not in PLUGINS (check_plugin_listing lists backends)."""
    install_core(session)
    session.install(*INSTALL, "-e", plugin_dir("ray"))
    session.run(*PYTEST, f"{plugin_dir('ray')}/tests", *session.posargs)


@nox.session(python=False)
def lint(session):
    """ruff on the Python code; hadolint, shellcheck and compose validation on the Docker setup."""
    python = str(DEPS_PYTHON) if DEPS_SITE else "python3"  # the dependency virtualenv has ruff
    session.run(python, "-m", "ruff", "check", ".")
    session.run("bash", "scripts/lint_docker.sh", env={"PYTHON": python})
