"""`python -m l3prune devices`: the report the resource planner plans against, checked against its schema and
against torch itself."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import torch

from conftest import worker_cli
from l3prune import devices


def report_validator(schemas):
    s = schemas["devices-report"]
    return jsonschema.Draft202012Validator({"$ref": s["$id"]}, registry=schemas["registry"])


def test_the_report_is_one_schema_valid_line_that_matches_torch(schemas):
    p = worker_cli("devices")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    report_validator(schemas).validate(out)
    assert out["event"] == "devices"
    assert len(out["cuda"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert out["cpu"]["threads"] == torch.get_num_threads() or out["cpu"]["threads"] >= 1
    assert {"eager", "sdpa"} <= set(out["attention"])
    assert "calibration" not in out["cpu"], "no timing unless asked"


def test_calibration_measures_a_matmul_rate_close_to_a_direct_timing(schemas):
    import time

    out = devices.report(do_calibrate=True)
    report_validator(schemas).validate({"event": "devices", **out})
    cal = out["cpu"]["calibration"]
    assert cal["dtype"] == "fp32" and cal["seconds"] >= devices.MIN_SECONDS
    # An independent timing of the same product: the calibration must be the same order of magnitude.
    n = devices.CPU_MATMUL
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(8):
        a @ b
    direct = 2 * n**3 * 8 / (time.perf_counter() - t0)
    assert direct / 4 < cal["flopsPerSecond"] < direct * 4, (cal, direct)


def test_flash_attention_needs_the_package_and_an_ampere_device():
    assert devices.flash_attention_available([]) is False
    old = [{"computeCapability": "7.5"}]
    assert devices.flash_attention_available(old) is False


def test_a_bad_flag_is_refused_with_a_sentence():
    p = worker_cli("devices", "--calibrate", "maybe")
    assert p.returncode == 2


def test_training_attention_is_flash_attention_only_where_it_can_run(monkeypatch):
    """SDPA on a CPU and in fp32 whatever is installed; FlashAttention-2 only with the package, CUDA, half
    precision and compute capability 8 or more."""
    import importlib.util

    from l3prune.encoder import attention_implementation

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a))
    assert attention_implementation("cpu", torch.bfloat16) == "sdpa"
    assert attention_implementation("cuda:0", torch.float32) == "sdpa"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert attention_implementation("cuda:0", torch.bfloat16) == "flash_attention_2"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert attention_implementation("cuda:0", torch.bfloat16) == "sdpa"


def test_the_mfu_peak_table_is_the_planners_and_names_gpus_as_torch_reports_them():
    from l3prune import flops

    assert flops.gpu_peak_bf16("NVIDIA H200") == ("H200", 989e12)
    assert flops.gpu_peak_bf16("NVIDIA H100 PCIe") == ("H100 PCIe", 756e12)
    assert flops.gpu_peak_bf16("NVIDIA H100 80GB HBM3") == ("H100 SXM", 989e12)
    assert flops.gpu_peak_bf16("NVIDIA L4") == ("L4", 121e12)
    assert flops.gpu_peak_bf16("NVIDIA L40S") == ("L40S", 362e12)
    assert flops.gpu_peak_bf16("NVIDIA GeForce RTX 4090") == ("RTX 4090", 165e12)
    assert flops.gpu_peak_bf16("Some Future GPU") is None
    # The worker reads its packaged copy; it must be the checkout's protocol/ file.
    assert flops.PEAKS_FILE.read_text() == (Path(__file__).resolve().parents[2] / "protocol" / "gpu-peaks.json").read_text()


def test_useful_flops_count_the_paper_recipe_of_llama_3_8b():
    from l3prune import flops

    # 25 Llama-3-8B layers (218,112,000 weights each), q width 4096, 512 tokens, LoRA r16 on 7 projections.
    per_token = flops.useful_flops_per_token("train", layer_params=25 * 218_112_000, layers=25, q_dim=4096, seq=512, lora_params=25 * 1_310_720)
    assert per_token == 4 * 25 * 218_112_000 + 6 * 25 * 512 * 4096 + 6 * 25 * 1_310_720
