"""Precision auto: bf16 on CPUs with native bf16 instructions (AMX, AVX512-BF16), fp32 elsewhere."""

from __future__ import annotations

import pytest

from worker.training.modeling import Device, cpu_bf16_flags, resolve_precision

AMX = "processor : 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
OLD = "processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"


def test_native_bf16_flags_are_read_from_cpuinfo():
    assert cpu_bf16_flags(AMX) == ["amx_bf16"]
    assert cpu_bf16_flags(ZEN4) == ["avx512_bf16"]
    assert cpu_bf16_flags(OLD) == []
    assert cpu_bf16_flags("no flags line") == []


@pytest.mark.parametrize(("cpuinfo", "expected"), [(AMX, "bf16"), (ZEN4, "bf16"), (OLD, "fp32")])
def test_auto_picks_bf16_only_on_cpus_with_native_bf16(cpuinfo, expected):
    device = Device("cpu", "CPU", None, bool(cpu_bf16_flags(cpuinfo)))
    assert resolve_precision("auto", device) == expected
    assert resolve_precision("fp32", device) == "fp32"  # an explicit choice is kept


def test_gpus_keep_their_rules():
    assert resolve_precision("auto", Device("cuda", "A100", 80, True)) == "bf16"
    assert resolve_precision("auto", Device("cuda", "T4", 16, False)) == "fp16"
    with pytest.raises(ValueError, match="fp16 training needs a CUDA GPU"):
        resolve_precision("fp16", Device("cpu", "CPU", None, True))


def test_lora_trains_in_bf16_on_the_cpu_and_exports(tiny_model_dir, tmp_path):
    """What precision auto runs on CPUs with native bf16: a bf16 base, fp32 adapters, bf16 autocast."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tests.worker.training.factories import records, tiny_config
    from worker.training.reporter import RecordingReporter
    from worker.training.run import run

    reporter = RecordingReporter()
    result = run(tiny_config(tiny_model_dir, precision="bf16", max_steps=8), records(32), None, tmp_path, reporter)
    losses = [loss for _, loss in reporter.series("loss")]
    assert losses[-1] < losses[0] - 1.0, losses
    assert any("precision bf16" in line for line in reporter.lines)
    adapters = [p for n, p in result.model.named_parameters() if "lora_" in n]
    assert adapters and all(p.dtype == torch.float32 for p in adapters)  # trained in fp32 under autocast
    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir)
    assert merged.dtype == torch.bfloat16
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    PeftModel.from_pretrained(base, result.adapter_dir)  # loads in plain PEFT
