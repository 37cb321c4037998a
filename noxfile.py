"""Test sessions: the core alone, each plugin alone with the core, everything together, and lint.

Session virtualenvs see the interpreter's site-packages (``--system-site-packages``), so torch and the other
heavy third-party packages are installed once (``.ci/run`` does that) instead of once per session; densebench's
own packages are installed into each session alone, so each session sees exactly the plugins it installed.
Run ``nox -l`` to list them, ``nox -s core`` to run one.
"""

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False

PLUGINS = ["amp", "compile", "jit", "trt"]
VENV = ["--system-site-packages"]
INSTALL = ["--no-build-isolation"]
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]


def install_core(session):
    session.install(*INSTALL, "-e", ".")


def plugin_dir(name):
    return f"plugins/densebench_{name}"


@nox.session(venv_params=VENV)
def core(session):
    """The core package alone: plugin host, runner, results, CLI, report, TensorBoard, tutorial plugin."""
    install_core(session)
    session.run(*PYTEST, "tests", *session.posargs)


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
    session.run(*PYTEST, "tests_all", *session.posargs)


@nox.session(python=False)
def lint(session):
    """ruff on the Python code; hadolint, shellcheck and compose validation on the Docker setup."""
    session.run("python3", "-m", "ruff", "check", ".")
    session.run("bash", "scripts/lint_docker.sh")
