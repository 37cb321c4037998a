""""Top operators": the GPU kernel list holds device work only, and names are short enough to read.

The CUDA profiler cannot run without a GPU, so the kernel filter is fed real torch profiler events built by hand
(``FunctionEvent`` with CUDA device type, averaged by ``EventList.key_averages`` as the profiler does); names are
real ones from the H200 profiles in docs/results/h200.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from densebench_core.profiling import ACTIVE, SHORT_NAME_LIMIT, profile_step, short_name, top_kernels
from densebench_core.report import build_report
from densebench_core.report.analysis import top_operators

REPO = Path(__file__).resolve().parents[1]
H200 = REPO / "docs" / "results" / "h200"

CUTLASS = ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4>"
           "(cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4::Params)")  # fmt: skip
COMPILED_GRAPH = "## Call CompiledFxGraph fds7epd4zdtpnuvwbei3go37gyhposzxx2rholk23hje3xxzhajq ##"
XMMA = ("sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32_f32_nhwckrsc_nhwc_tilesize256x32x32_warpgroupsize1x1x1_g1_"
        "execute_segment_k_off_kernel__5x_cudnn")  # fmt: skip


def h200_names() -> set[str]:
    """Every profiled entry's name in the H200 results (about 150, some of them 2,000 characters long)."""
    names = set()
    for path in H200.rglob("benchmark_results.json"):
        for row in json.loads(path.read_text()).get("rows", []):
            for entry in ((row.get("profile") or {}).get("top_ops") or []) + \
                         ((row.get("profile") or {}).get("top_kernels") or []):  # fmt: skip
                names.add(entry["name"])
    return names


def h200_name(prefix: str) -> str:
    return next(n for n in sorted(h200_names()) if n.startswith(prefix))


# -- short_name ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("void at::native::(anonymous namespace)::batch_norm_transform_input_kernel<float, float, float, int, true>"
     "(at::GenericPackedTensorAccessor<float const, 3ul, at::RestrictPtrTraits, int>, float*, int)",
     "batch_norm_transform_input_kernel"),
    ("void cudnn::bn_fw_inf_1C11_kernel_NCHW<float, float, true, 1>(float, float, cudnnTensorStruct, float const*, "
     "cudnnTensorStruct, float*, cudnnTensorStruct, float const*, float const*, float const*, float const*, float)",
     "bn_fw_inf_1C11_kernel_NCHW"),
    # brackets nest, and a lambda's ``{...}`` and ``operator()`` sit inside the template arguments
    ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::CUDAFunctor_add"
     "<float> >(at::TensorIteratorBase&, at::native::CUDAFunctor_add<float> const&)::{lambda(int)#1}>(int, "
     "at::native::gpu_kernel_impl_nocast<at::native::CUDAFunctor_add<float> >(at::TensorIteratorBase&, "
     "at::native::CUDAFunctor_add<float> const&)::{lambda(int)#1})", "elementwise_kernel"),
    (CUTLASS, "cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4"),
    (COMPILED_GRAPH, "compiled graph (Inductor)"),
    ("std::enable_if<!(false), void>::type internal::gemvx::kernel<int, int, float, float, float, float, false>"
     "(cublasGemvParamsEx<int, float const, float const, float, float>)", "gemvx::kernel"),
])  # fmt: skip
def test_short_name_of_real_kernel_names(name, expected):
    assert short_name(name) == expected


@pytest.mark.parametrize("name", ["triton_poi_fused_add_relu_0", "aten::conv2d", "cudaLaunchKernel",
                                  "nvjet_sm90_hsh_128x192_64x5_1x2_h_bz_coopB_TNN", "Memcpy HtoD (Pageable -> Device)"])
def test_plain_names_stay_as_they_are(name):
    assert short_name(name) == name


def test_short_name_of_the_longest_h200_kernel_name():
    name = h200_name("void at::native::batch_norm_transform_input_kernel<c10::Half")
    assert len(name) > 1500
    assert short_name(name) == "batch_norm_transform_input_kernel"
    name = h200_name("void at::native::(anonymous namespace)::CatArrayBatchedCopy_vectorized<")
    assert short_name(name) == "CatArrayBatchedCopy_vectorized"


def test_a_name_without_structure_is_cut_at_the_limit():
    assert len(XMMA) > 100
    short = short_name(XMMA)
    assert len(short) == SHORT_NAME_LIMIT and short.endswith("…") and XMMA.startswith(short[:-1])
    assert short_name(XMMA, limit=20) == XMMA[:19] + "…"


def test_every_h200_name_shortens_to_a_readable_label():
    names = h200_names()
    assert len(names) > 100
    for name in names:
        short = short_name(name)
        assert 0 < len(short) <= SHORT_NAME_LIMIT, name
        assert "(anonymous namespace)" not in short and "const&" not in short and "##" not in short, (name, short)


# -- the GPU kernel list from profiler events ----------------------------------------------------------------------


def _averaged(specs) -> list:
    """``key_averages()`` of hand-built profiler events: (name, device, microseconds, user annotation, kernels)."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import EventList, FunctionEvent

    events = []
    for i, (name, device, micros, annotation, launched) in enumerate(specs):
        event = FunctionEvent(id=i, name=name, thread=0, start_us=10 * i, end_us=10 * i + micros, use_device="cuda",
                              device_type=DeviceType.CUDA if device == "cuda" else DeviceType.CPU,
                              is_user_annotation=annotation, stack=[])  # fmt: skip
        for kernel, duration in launched:  # a CPU operator carries the device time of the kernels it launched
            event.append_kernel(kernel, 0, duration)
        events.append(event)
    listed = EventList(events, use_device="cuda")
    listed._build_tree()  # what the profiler does before key_averages() (it asserts it was done)
    return list(listed.key_averages())


TRITON = "triton_poi_fused__native_batch_norm_legit_no_training_relu_0"
PROFILED = [
    # CPU side: an operator and Inductor's range around the compiled graph, both carrying kernels' device time
    ("aten::conv2d", "cpu", 40, False, [(CUTLASS, 300)]),
    (COMPILED_GRAPH, "cpu", 90, True, [(TRITON, 1200)]),
    # GPU timeline: the same range drawn over the kernels it covers, and the profiler's step range
    (COMPILED_GRAPH, "cuda", 1300, True, []),
    ("ProfilerStep#3", "cuda", 2000, False, []),
    # the GPU's own work
    (TRITON, "cuda", 600, False, []),
    (TRITON, "cuda", 600, False, []),
    (CUTLASS, "cuda", 300, False, []),
    ("Memcpy HtoD (Pageable -> Device)", "cuda", 60, False, []),
    ("Memset (Device)", "cuda", 40, False, []),
]


def test_top_kernels_hold_only_device_activities():
    averages = _averaged(PROFILED)
    assert {type(e).__name__ for e in averages} == {"FunctionEventAvg"}
    kernels = top_kernels(averages)
    assert [k["name"] for k in kernels] == [TRITON, CUTLASS, "Memcpy HtoD (Pageable -> Device)", "Memset (Device)"]
    assert [k["short_name"] for k in kernels[:2]] == [TRITON, "cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4"]
    assert all(k["kind"] == "cuda" for k in kernels)
    device_total = 600 + 600 + 300 + 60 + 40  # shares of the device's own time, nothing counted twice
    assert kernels[0]["self_time_pct"] == pytest.approx(100 * 1200 / device_total)
    assert kernels[0]["self_time_ms"] == pytest.approx(1.2 / ACTIVE)
    assert kernels[0]["calls"] == 2 // ACTIVE
    assert sum(k["self_time_pct"] for k in kernels) == pytest.approx(100.0)


def test_profile_step_on_cpu_writes_short_names_and_no_kernels(tmp_path):
    """The real profiler path that runs here (CPU): every entry has a name and a short_name."""
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 16, 16)
    ctx = SimpleNamespace(is_cuda=False, batch_size=1, synchronize=lambda: None)
    with torch.no_grad():
        summary = profile_step(lambda: model(x), ctx, tmp_path / "prof")
    assert summary["top_kernels"] == [] and summary["traces"]
    names = {op["name"] for op in summary["top_ops"]}
    assert any(n.startswith("aten::") for n in names), names
    for op in summary["top_ops"]:
        assert op["short_name"] == short_name(op["name"]) and len(op["short_name"]) <= SHORT_NAME_LIMIT


# -- the report ----------------------------------------------------------------------------------------------------


def test_top_operators_drop_host_entries_of_older_files_and_keep_short_names():
    profile = {"top_kernels": [
        {"name": "aten::cudnn_convolution", "kind": "cuda", "self_time_pct": 30.0},  # written before the fix
        {"name": COMPILED_GRAPH, "kind": "cuda", "self_time_pct": 60.0},
        {"name": CUTLASS, "kind": "cuda", "self_time_pct": 5.0},  # no short_name: an older file
        {"name": XMMA, "short_name": "xmma conv", "kind": "cuda", "self_time_pct": 9.0},  # as written now
    ]}  # fmt: skip
    ops = top_operators(profile, "cuda")
    assert [(o["name"], o["short_name"]) for o in ops] == [
        (XMMA, "xmma conv"), (CUTLASS, "cutlass_80_tensorop_s1688gemm_64x64_32x6_nn_align4")]
    # CPU operators are CPU operators: kept, the compiled graph under a readable label
    cpu = top_operators({"top_ops": [{"name": COMPILED_GRAPH, "kind": "cpu", "self_time_pct": 40.0},
                                     {"name": "aten::conv2d", "kind": "cpu", "self_time_pct": 10.0}]}, "cpu")
    assert [o["short_name"] for o in cpu] == ["compiled graph (Inductor)", "aten::conv2d"]


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"### {title}")
    end = markdown.find("\n#", start + 1)
    return markdown[start : end if end > 0 else None]


def test_report_of_the_h200_quick_results_has_short_names_and_no_host_ops_as_kernels(tmp_path):
    results = tmp_path / "quick"
    shutil.copytree(H200 / "quick", results)
    (results / "report.md").unlink()
    build_report(results)
    markdown = (results / "report.md").read_text()
    section = _section(markdown, "Top operators (inference)")
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in section.splitlines()
            if line.startswith("| `")]  # fmt: skip
    kinds = {row[2] for row in rows}
    assert kinds == {"GPU kernels", "CPU operators"}, kinds
    names = re.findall(r"`([^`]+)`", "\n".join(row[3] for row in rows))
    assert len(names) == 5 * len(rows)
    assert max(len(n) for n in names) <= SHORT_NAME_LIMIT, max(names, key=len)
    for row in rows:
        if row[2] == "GPU kernels":
            assert "aten::" not in row[3] and "##" not in row[3] and "CompiledFxGraph" not in row[3], row
    compile_cpu = next(r for r in rows if r[0] == "`compile`" and r[2] == "CPU operators")
    assert "`compiled graph (Inductor)`" in compile_cpu[3]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert bullets and all(len(n) <= SHORT_NAME_LIMIT for b in bullets for n in re.findall(r"`([^`]+)`", b))
    # the JSON the report was built from still holds the full names
    full = (results / "benchmark_results.json").read_text()
    assert "void at::native::(anonymous namespace)::CatArrayBatchedCopy" in full
