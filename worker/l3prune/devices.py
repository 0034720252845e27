"""`python -m l3prune devices [--calibrate]`: what this Python can compute on, for the resource planner.

One JSON line on stdout (protocol/devices-report.schema.json): every CUDA device torch sees with its total and
free memory, bf16 support and compute capability; the CPU's threads and memory; the attention implementations
transformers can use. `--calibrate` also times a dense matmul on each device, so the planner divides the
recipe's FLOPs by a measured rate rather than a data-sheet peak times an assumed efficiency.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

from . import specs
from .events import now_iso
from .verbs import Advice, Job, Outcome, Verb, main_for

# Square bf16 (GPU) / fp32 (CPU) matmuls: big enough to reach the device's dense rate, few enough to take ~1 s.
GPU_MATMUL = 8192
CPU_MATMUL = 1024
MIN_SECONDS = 0.5


def calibrate(device: str) -> dict:
    """Dense matmul FLOP/s on `device`, at the precision training uses there (bf16 on CUDA, fp32 on a CPU)."""
    import torch

    cuda = device.startswith("cuda")
    n = GPU_MATMUL if cuda else CPU_MATMUL
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    a @ b  # warm-up: kernel selection and first-touch allocation are not throughput
    sync()
    runs, t0 = 0, time.perf_counter()
    while True:
        a @ b
        runs += 1
        if runs % 4 == 0:
            sync()
            elapsed = time.perf_counter() - t0
            if elapsed >= MIN_SECONDS:
                break
    return {"dtype": "bf16" if cuda else "fp32", "flopsPerSecond": 2 * n**3 * runs / elapsed, "seconds": round(elapsed, 3)}


def _memory() -> tuple[int | None, int | None]:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        avail = os.sysconf("SC_AVPHYS_PAGES")
        return pages * size, avail * size
    except (ValueError, OSError, AttributeError):  # not every OS names these
        return None, None


def flash_attention_available(cuda_devices: list[dict]) -> bool:
    """transformers uses FlashAttention-2 when the flash-attn package imports and a device is Ampere or newer."""
    if not cuda_devices or importlib.util.find_spec("flash_attn") is None:
        return False
    return any(int(d["computeCapability"].split(".")[0]) >= 8 for d in cuda_devices)


def report(do_calibrate: bool = False) -> dict:
    import torch

    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            entry = {
                "index": i,
                "name": props.name,
                "totalMemoryBytes": int(total),
                "freeMemoryBytes": int(free),
                "bf16": bool(props.major >= 8),
                "computeCapability": f"{props.major}.{props.minor}",
            }
            if do_calibrate:
                entry["calibration"] = calibrate(f"cuda:{i}")
            cuda.append(entry)
    memory, available = _memory()
    cpu = {"threads": torch.get_num_threads(), "memoryBytes": memory, "availableBytes": available}
    if do_calibrate:
        cpu["calibration"] = calibrate("cpu")
    attention = ["eager", "sdpa"] + (["flash_attention_2"] if flash_attention_available(cuda) else [])
    return {"time": now_iso(), "torch": torch.__version__, "cuda": cuda, "cpu": cpu, "attention": attention}


DevicesSpec = specs.spec_class("devices", "DevicesSpec", __name__)


def _work(spec, job: Job) -> Outcome:
    return Outcome("devices", report(spec.calibrate))


VERB = Verb(
    name="devices",
    help="report the CUDA devices (memory, bf16), the CPU and the attention implementations; --calibrate times a matmul on each",
    resolve=lambda args, _world: DevicesSpec(**specs.resolve("devices", specs.gather("devices", args))),
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory while calibrating; run devices without --calibrate",
                              disk_full="the disk is full"),
    run_folder=False,
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
