"""Accuracy: each backend's answers on a seeded evaluation set, against the fp32 eager reference.

The evaluation set is separate from the timed batch: ``eval_images`` seeded images (default 256, quick 64),
run through the prepared backend in batches of the row's batch size, so a backend that mixes up the images of a
batch, caches an answer or answers only the first image is seen. The reference is the same weights in fp32 eager
mode with TF32 disabled, on the same images.

Metrics (over the whole evaluation set):

* ``max_abs_err``: the largest absolute difference of a logit;
* ``cosine_sim``: cosine similarity of the flattened logits;
* ``top1_agree``: the fraction of images whose top-1 class is the reference's;
* ``rel_err``: ``||output - reference|| / ||reference - mean image's reference||`` (Frobenius norms): the error
  against how much the reference's answers differ between images, so a scaled or shifted answer counts;
* ``accuracy_ok``: ``rel_err`` and ``top1_agree`` within :data:`TOLERANCES` for the row's arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """The worst a correct backend of one arithmetic may do on the evaluation set."""

    max_rel_err: float
    min_top1_agree: float


#: Tolerances by arithmetic. Set from the stand-in weights (``--weights random``), whose random features amplify
#: rounding much more than trained ones do (docs/perf-notes.md, session 4, has the measurements): on the H200,
#: TF32 rows gave rel_err 0.009-0.014 and fp16 rows (fused kernels included) 0.023-0.027, both with top-1
#: agreement 0.94-0.97 on 64 images; bf16 on the CPU about 0.13 and 0.77-0.80. The top-1 bounds sit about three
#: standard deviations of a 64-image estimate below those: rel_err is the sharper check. A logit scaled by 1.5
#: gives rel_err 0.5; answers shifted by one image give about 1.4 and a top-1 agreement near 0.
TOLERANCES = {
    "fp32": Tolerance(max_rel_err=1e-3, min_top1_agree=0.99),
    # fp32 rows on CUDA: cuDNN runs convolutions in TF32 by default (10-bit mantissa, as fp16)
    "tf32": Tolerance(max_rel_err=0.05, min_top1_agree=0.80),
    "fp16": Tolerance(max_rel_err=0.05, min_top1_agree=0.80),
    "bf16": Tolerance(max_rel_err=0.25, min_top1_agree=0.60),
}


def arithmetic(precision: str | None, device_type: str) -> str:
    """The tolerance class of a row: ``bf16``, ``fp16``, ``tf32`` (fp32 on CUDA with TF32 allowed) or ``fp32``."""
    text = (precision or "fp32").lower()
    if "bf16" in text:
        return "bf16"
    if "fp16" in text or "half" in text:
        return "fp16"
    if device_type == "cuda" and _tf32_allowed():
        return "tf32"
    return "fp32"


def _tf32_allowed() -> bool:
    import torch

    return bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)


def evaluation_batches(images: int, batch_size: int, image_size: int, seed: int) -> list:
    """The evaluation set in batches of ``batch_size``: ``images`` rounded up to whole batches (at least one)."""
    from densebench_core.model import make_inputs

    count = max(1, math.ceil(images / batch_size)) * batch_size
    data = make_inputs(count, image_size, seed, stream="evaluation")
    return list(data.split(batch_size))


def reference_outputs(model, batches: list, device) -> "torch.Tensor":  # noqa: F821
    """The fp32 eager answers on ``batches`` with TF32 disabled, so the reference really is fp32 arithmetic."""
    import copy

    import torch

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        reference_model = copy.deepcopy(model).float().eval().to(device)
        with torch.no_grad():
            outputs = [reference_model(batch.to(device).float()).float().cpu() for batch in batches]
        del reference_model
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return torch.cat(outputs)


def backend_outputs(answer, batches: list) -> "torch.Tensor":  # noqa: F821
    """``answer(batch)`` for every batch, each copied at once (CUDA-graph backends reuse their output buffer)."""
    import torch

    return torch.cat([_logits(answer(batch)).detach().float().cpu().clone() for batch in batches])


def _logits(output):
    if isinstance(output, (list, tuple)):
        return output[0]
    if isinstance(output, dict):
        return next(iter(output.values()))
    return output


def compare(output, reference) -> dict[str, float]:
    """``max_abs_err``, ``cosine_sim``, ``top1_agree``, ``rel_err`` and ``eval_images`` (computed in float64)."""
    import torch

    out = output.detach().to(reference.device).double().reshape(reference.shape)
    ref = reference.double()
    cosine = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    spread = float((ref - ref.mean(dim=0, keepdim=True)).norm())
    error = float((out - ref).norm())
    return {
        "max_abs_err": float((out - ref).abs().max()),
        "cosine_sim": float(cosine),
        "top1_agree": float((out.argmax(dim=1) == ref.argmax(dim=1)).double().mean()),
        "rel_err": error / spread if spread > 0 else (0.0 if error == 0 else math.inf),
        "eval_images": int(ref.shape[0]),
    }


def judge(metrics: dict, kind: str) -> tuple[bool, str | None]:
    """(accuracy_ok, why not) for a row's metrics under the tolerance of arithmetic ``kind``."""
    tolerance = TOLERANCES[kind]
    problems = []
    if not metrics["rel_err"] <= tolerance.max_rel_err:
        problems.append(f"rel_err {metrics['rel_err']:.3g} > {tolerance.max_rel_err:g}")
    if not metrics["top1_agree"] >= tolerance.min_top1_agree:
        problems.append(f"top-1 agreement {metrics['top1_agree']:.3f} < {tolerance.min_top1_agree:g}")
    if not problems:
        return True, None
    return False, f"outside the {kind} accuracy tolerance: " + ", ".join(problems)
