"""Accuracy against the fp32 eager reference on the same seeded inputs and weights."""

from __future__ import annotations


def reference_output(model, inputs, device):
    """The reference: fp32 eager output with TF32 disabled, so the reference really is fp32 arithmetic."""
    import copy

    import torch

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        reference_model = copy.deepcopy(model).float().eval().to(device)
        with torch.no_grad():
            output = reference_model(inputs.float()).float().clone()
        del reference_model
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return output


def compare(output, reference) -> dict[str, float]:
    """max_abs_err, cosine_sim (over the flattened batch, in float64) and top1_agree (fraction of images)."""
    import torch

    out = output.detach().to(reference.device).double().reshape(reference.shape)
    ref = reference.double()
    cosine = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    return {
        "max_abs_err": float((out - ref).abs().max()),
        "cosine_sim": float(cosine),
        "top1_agree": float((out.argmax(dim=1) == ref.argmax(dim=1)).double().mean()),
    }
