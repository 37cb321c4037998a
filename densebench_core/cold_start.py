"""The cold start of an exported artifact: a fresh process loads it from disk and answers, as a new replica would.

After a row's export the worker runs ``python -m densebench_core.cold_start JOB.json ARTIFACT MEMBER OUT.pt``
(:func:`measure`). That process imports torch and the recipe's plugins, makes the seeded evaluation set, runs the
recipe's ``prepare_inputs`` on it, then times the exporting member's ``load_artifact`` plus the first answer (the
first evaluation batch, synchronized): that is ``cold_start_s``. It answers the other batches too and saves every
output; the worker holds them to the fp32 reference like the row's own accuracy check, so the artifact must be what
was measured. Nothing is prepared in that process: no ``prepare_model`` runs there. So a row gets a cold start only
where its artifact holds the whole recipe: where a member after the exporting one changes the model (``compile``
after ``fp16``), a new replica would prepare again, and the row says so instead.

A load that fails (a truncated or corrupt file), a crash, or outputs outside the row's tolerance fail the
``cold start`` phase with the reason; the row's measurement stands (see ``worker.Worker.after_measurement``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

#: the process's own start, before torch is imported: ``process_s`` counts from here
_STARTED = time.perf_counter()


class ColdStartError(RuntimeError):
    """The fresh process could not load the artifact or answer; the message is its last error line."""


def measure(job_path: Path, artifact: Path, member: str, timeout: float) -> dict:
    """Run the fresh process; return ``{"cold_start_s", "process_s", "outputs"}`` (the logits of every batch)."""
    import torch

    out = artifact.parent / f".{artifact.name}.cold_start.pt"
    command = [sys.executable, "-m", "densebench_core.cold_start", str(job_path), str(artifact), member, str(out)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ColdStartError(f"the fresh process did not answer within {timeout:.0f} s") from None
    try:
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
            if proc.returncode < 0:
                why = f"the fresh process died by signal {-proc.returncode} ({why})"
            raise ColdStartError(why[:300])
        return torch.load(out, weights_only=True)
    finally:
        out.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    job_path, artifact, member, out = Path(argv[0]), Path(argv[1]), argv[2], Path(argv[3])
    import torch

    from densebench_core import accuracy
    from densebench_core.context import RunContext
    from densebench_core.job import Job
    from densebench_core.plugins import build_registry
    from densebench_core.worker import prepare_inputs

    job = Job.from_json(job_path.read_text())
    ctx = RunContext(job=job, device=torch.device(job.device))
    registry = build_registry(only=set(job.members))
    batches = accuracy.evaluation_batches(job.eval_images, job.batch_size, job.image_size, job.seed)

    def prepared(batch):
        return prepare_inputs(registry, job.members, batch.to(ctx.device), ctx)

    first = prepared(batches[0])
    ctx.synchronize()
    with torch.no_grad():
        started = time.perf_counter()
        found, model = registry.call(member, "load_artifact", path=artifact, ctx=ctx)
        if not found:
            raise RuntimeError(f"{member} implements no load_artifact")
        answer = accuracy.backend_outputs(model, [first])
        ctx.synchronize()
        cold_start_s = time.perf_counter() - started
        process_s = time.perf_counter() - _STARTED
        rest = [accuracy.backend_outputs(lambda batch: model(prepared(batch)), batches[1:])] if batches[1:] else []
    torch.save({"cold_start_s": cold_start_s, "process_s": process_s, "outputs": torch.cat([answer, *rest])}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
