"""Named recipes: the best configurations found on real hardware, selectable as ``--backend NAME``.

Each preset is a recipe plus backend options. Its rows are named by the preset; the ``options`` column shows
what it ran with. docs/perf-notes.md records how each was chosen (measured on an H200).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    recipe: str
    description: str
    options: dict[str, dict[str, str]] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "fastest-throughput": Preset(
        recipe="channels_last+fp16+fused+compile",
        description="large-batch inference: fp16 NHWC, dense layers as fused Triton kernels (fused), "
        "inductor with freezing and CUDA graphs (reduce-overhead)",
        options={"compile": {"mode": "reduce-overhead"}},
    ),
    "fastest-latency": Preset(
        recipe="channels_last+fp16+fused+compile",
        description="batch-1 inference: fp16 NHWC, dense layers as fused Triton kernels (fused), "
        "inductor with freezing and CUDA graphs (reduce-overhead)",
        options={"compile": {"mode": "reduce-overhead"}},
    ),
    "fastest-training": Preset(
        recipe="channels_last+amp+compile",
        description="training (use with --mode training): NHWC, autocast, inductor with CUDA graphs "
        "(reduce-overhead: the eager and default-compiled steps are bound by the host's kernel launches)",
        options={"compile": {"mode": "reduce-overhead"}},
    ),
}
