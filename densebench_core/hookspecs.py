"""The plugin API: every hook a densebench backend may implement.

A backend is one pluggy plugin (a module or object) registered under its backend name. The core calls one
backend's implementation at a time (see :mod:`densebench_core.plugins`), never ``pm.hook.X()`` over all plugins,
so neither registration order nor another plugin's answer decides what runs. Only ``backend_info`` is required.

Hooks are called with keyword arguments; an implementation may accept any subset of the parameters below.
Do not give implementation parameters default values: pluggy never passes a value to a defaulted parameter.
"""

from __future__ import annotations

import pluggy

PROJECT = "densebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def backend_info():
    """Describe this backend for discovery. Required.

    :return: a :class:`densebench_core.backend.BackendInfo`: description, requirements (CUDA, importable
        packages), supported modes, recipe stage and whether it composes with other backends.
    """


@hookspec(firstresult=True)
def check_available(ctx):
    """Say whether this backend can run in the given context, beyond the requirements in ``backend_info``.

    Called before anything is built. Use it for conditions the core cannot see (a torch release that refuses
    TorchScript, a TensorRT version too old).

    :param ctx: the :class:`densebench_core.context.RunContext` of the planned run.
    :return: ``None`` when the backend can run, else a one-line reason; the row becomes ``skipped``.
    """


@hookspec(firstresult=True)
def prepare_model(model, example_inputs, ctx):
    """Transform the model into this backend's optimized form.

    Timed as ``prepare_s`` (together with the first step, which is where lazy compilers do their work).
    In a recipe each member's ``prepare_model`` receives the previous member's result, in stage order.

    :param model: the model so far (a ``torch.nn.Module`` or a callable), already on ``ctx.device``.
    :param example_inputs: the seeded input batch, already transformed by every ``prepare_inputs`` of the
        recipe, for tracing or compiling.
    :param ctx: the run context; set ``ctx.precision`` if the backend changes the arithmetic precision.
    :return: the model to measure (a module or any callable taking the input batch); return the model it was
        given when it changes nothing. Anything not callable (``None`` included) fails the row, naming the hook.
    """


@hookspec(firstresult=True)
def prepare_inputs(inputs, ctx):
    """Transform the input batch the way this backend expects it (memory format, dtype).

    Called before ``prepare_model``, outside the measured loop (its cost counts in ``prepare_s``).

    :param inputs: the seeded fp32 input batch (or the previous recipe member's result).
    :param ctx: the run context.
    :return: the transformed batch, a ``torch.Tensor`` (the batch it was given when it changes nothing).
    """


@hookspec(firstresult=True)
def warmup(step, model, inputs, ctx):
    """Run warm-up iterations before measurement.

    The core's default runs ``step()`` ``ctx.warmup`` times and synchronizes the device. Implement it only when
    warm-up needs more (a compiler that needs a minimum number of calls). In a recipe every member that
    implements it runs, in stage order (the core's default then does not run); to record state right before
    timing, implement ``before_measure`` instead, which runs after all of them.

    :param step: a zero-argument callable doing one measured step.
    :param model: the prepared model.
    :param inputs: the prepared input batch.
    :param ctx: the run context; ``ctx.warmup`` is the requested iteration count.
    :return: ignored.
    """


@hookspec(firstresult=True)
def run_step(model, inputs, ctx):
    """Do one measured step: a forward pass (inference) or forward, backward and optimizer step (training).

    The core's default does exactly that with ``ctx.optimizer`` and ``ctx.loss_fn``. The core looks up this
    implementation once, before timing, and calls the function directly in the timed loop.
    In a recipe the last member (in stage order) that implements it is used.

    :param model: the prepared model.
    :param inputs: the prepared input batch.
    :param ctx: the run context (``ctx.mode``, ``ctx.optimizer``, ``ctx.loss_fn``, ``ctx.targets``).
    :return: the model output of this step: logits, a ``torch.Tensor`` of shape ``(batch size, 1000)``, one row
        per image, in a dtype the row's ``ctx.precision`` allows (``fp32``/``tf32``: float32; ``fp16``,
        ``amp-fp16``: float16 or float32; ``bf16``, ``amp-bf16``: bfloat16 or float32). The first step and every
        step of the accuracy check are held to this; a training step must also update the weights.
    """


@hookspec(firstresult=True)
def before_measure(model, ctx):
    """Record what the timed loop must not change, right before it starts (after every member's warm-up).

    In a recipe every member that implements it runs, in stage order. Pairs with ``after_measure``: the
    ``compile`` backend records its compilation counters here and checks them there.

    :param model: the prepared model.
    :param ctx: the run context; keep what you record in ``ctx.state[your backend name]``.
    :return: ignored.
    """


@hookspec(firstresult=True)
def after_measure(model, ctx):
    """Check what happened during the timed loop. In a recipe every member that implements it runs.

    :param model: the prepared model.
    :param ctx: the run context.
    :return: ``None`` when the measurement is valid, else a reason (e.g. "recompiled 3 times during
        measurement"); the row becomes ``failed`` with that reason, never a silently wrong number.
    """


@hookspec(firstresult=True)
def export(model, example_inputs, ctx, directory):
    """Write this backend's deployable form of the model.

    Called only with ``--export``, in inference mode, after measurement. In a recipe the last member (in stage
    order) that implements it is used.

    :param model: the prepared model.
    :param example_inputs: the prepared input batch.
    :param ctx: the run context.
    :param directory: a ``pathlib.Path`` (the results' ``models/`` folder) to write into.
    :return: the path of the written artifact (a non-empty file inside ``directory``), or ``None`` if nothing
        was written. Any other value, or a path outside ``directory``, is a failed export: a note on the row,
        whose measurement stands.
    """


@hookspec(firstresult=True)
def load_artifact(path, ctx):
    """Load the artifact this backend's ``export`` wrote, the way a deployment would: the cold start.

    Called in a fresh interpreter after the row's measurement (the ``cold start`` phase), only for the member
    whose ``export`` wrote the artifact. The core times this call plus the first answer on the first evaluation
    batch as ``cold_start_s``, then checks every evaluation batch's output against the fp32 reference: the
    loaded artifact must be what was measured. Nothing of the row is prepared in that process: no
    ``prepare_model`` ran there, only the recipe's ``prepare_inputs``.

    :param path: a ``pathlib.Path``, the artifact ``export`` returned.
    :param ctx: a run context for the row (device, precision, options), as in the measuring process.
    :return: a callable taking the prepared input batch and returning the logits, on ``ctx.device``.
        An exception (a truncated or corrupt file) fails the cold-start phase with its message; the row's
        measurement stands.
    """
