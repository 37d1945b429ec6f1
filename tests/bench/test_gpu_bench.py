"""bench/gpu.py runs on a GPU only; here what decides its figures without one: the skip, the table
of peaks, the FLOPs formula, the model's size, and the goals it prints. (`--allow-cpu` runs the
whole path on a tiny model; too slow for the suite.)"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the bench would run")
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "skipped, no CUDA device here" in out.stdout and "bench/gpu.py" in out.stdout


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.4),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.1), ("NVIDIA A10G", 70.0),
])
def test_peaks_by_device_name(gpu, name, peak):
    assert gpu.peak_tflops(name) == (peak, "table")


def test_unknown_device_needs_the_flag(gpu):
    assert gpu.peak_tflops("Tesla T4") == (None, "unknown")
    assert gpu.peak_tflops("Tesla T4", 65.0) == (65.0, "flag")


def test_the_model_is_1b_class_and_flops_count_what_trains(gpu):
    shape = gpu.model_shape(**{k: gpu.ONE_B[k] for k in ("hidden", "layers", "intermediate", "heads", "kv_heads")},
                            vocab=49152)
    assert 1.0e9 < shape.parameters < 1.2e9
    body = shape.layer_params * shape.num_layers
    attention = 6 * 16 * 1024 * 2048
    assert gpu.flops_per_token("full", body, 16, 2048, 1024) == pytest.approx(6 * body + attention)
    assert gpu.flops_per_token("lora", body, 16, 2048, 1024) == pytest.approx(4 * body + attention)


def test_report_prints_every_goal_with_pass_or_fail(gpu):
    args = gpu.parse_args([])
    dims = gpu.ONE_B
    shape = gpu.model_shape(dims["hidden"], dims["layers"], dims["intermediate"], dims["heads"], dims["kv_heads"], 49152)
    predicted = {m: gpu.estimate_memory(shape, m, batch_size=8, context_length=1024, precision="bf16", lora_rank=16,
                                        target_modules="all_linear", device="cuda") for m in gpu.METHODS}
    allocated = {m: (e.total_gb - e.overhead_gb) * 1e9 / 2**20 for m, e in predicted.items()}
    results = {"lora": {"tokens_per_s": 60000.0, "peak_allocated_mb": allocated["lora"]},
               "qlora": {"tokens_per_s": 40000.0, "peak_allocated_mb": allocated["qlora"] * 1.5},
               "full": {"error": "Traceback...\nCUDA out of memory"}}
    text = "\n".join(gpu.report(results, shape, dims, args, "NVIDIA H100 80GB HBM3", 989.4, "table"))
    body = shape.layer_params * 16
    lora_mfu = 60000 * gpu.flops_per_token("lora", body, 16, 2048, 1024) / 989.4e12
    assert f"goal LoRA MFU >= 40%: {'PASS' if lora_mfu >= 0.4 else 'FAIL'} ({lora_mfu:.1%})" in text
    assert "QLoRA time / LoRA time: 1.50x" in text and "goal QLoRA <= 1.3x LoRA time: FAIL (1.50x)" in text
    assert "goal estimator within 15% of measured peak memory: FAIL (worst: qlora -33.3%)" in text
    assert "full     FAILED: CUDA out of memory" in text


def test_liger_is_used_only_where_it_can_run():
    from torch import nn

    from worker.training.gpu_kernels import apply_liger, liger_installed

    model = nn.Linear(2, 2)
    assert apply_liger(model, "cpu", False) is None
    assert "trains on the CPU" in apply_liger(model, "cpu", True)
    if not liger_installed():
        assert "not installed" in apply_liger(model, "cuda", True)
