"""Checkpoints of a train run: <run-dir>/checkpoints/step-NNNNNNNN/, written whole or not at all.

A checkpoint holds the LoRA adapter (peft, safetensors), the optimizer (tensors as safetensors, the rest JSON),
the scheduler, the RNG states of every rank and the data position (state.json, written last). It is built in a
temp folder, fsynced, then renamed into place, so a kill -9 at any moment leaves the previous complete checkpoint;
the last KEEP_CHECKPOINTS are kept. No pickles anywhere: a run folder may come from someone else.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import torch

from ..fileio import discard_dir, fsync_dir, fsync_tree, read_json, write_json_atomic

KEEP_CHECKPOINTS = 2
STEP_DIR = re.compile(r"^step-(\d{8})$")
# Leftovers of a process killed while writing: never complete, swept when a run (re)starts.
TEMP_PREFIXES = (".tmp-", ".trash-", ".adapter.tmp-", ".model.tmp-")


def rng_state() -> dict:
    py = random.getstate()
    npst = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(s["torch"], dtype=torch.uint8))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(x, dtype=torch.uint8) for x in s["cuda"]])


def list_checkpoints(ckdir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed into place and holding state.json), newest first."""
    out = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            m = STEP_DIR.match(p.name)
            if m and p.is_dir() and (p / "state.json").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out, reverse=True)


def sweep(run_dir: Path) -> None:
    """Remove the temp and trash folders a killed writer left; they are never complete."""
    for d in (run_dir / "checkpoints", run_dir):
        if d.is_dir():
            for p in d.iterdir():
                if p.is_dir() and p.name.startswith(TEMP_PREFIXES):
                    shutil.rmtree(p, ignore_errors=True)


def _debug_kill_in_checkpoint(phase: str, step: int) -> None:
    """Fault-injection hook (tests only): L3PRUNE_DEBUG_KILL_IN_CHECKPOINT=PHASE@STEP kills this process with
    SIGKILL at that phase of writing step STEP's checkpoint, to prove a torn checkpoint is never used."""
    want = os.environ.get("L3PRUNE_DEBUG_KILL_IN_CHECKPOINT")
    if want and want == f"{phase}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(ckdir: Path, step: int, peft_model, opt, sched, state: dict, rngs: list[dict]) -> Path:
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step-{step:08d}"
    tmp = ckdir / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write_checkpoint_files(tmp, step, peft_model, opt, sched, state, rngs)
    except BaseException:
        # Free what the torn checkpoint took (on a full disk, the error report needs that room).
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        discard_dir(final)
    os.rename(tmp, final)
    fsync_dir(ckdir)
    _debug_kill_in_checkpoint("after-rename", step)
    for _, old in list_checkpoints(ckdir)[KEEP_CHECKPOINTS:]:
        discard_dir(old)
    return final


def _write_checkpoint_files(tmp: Path, step: int, peft_model, opt, sched, state: dict, rngs: list[dict]) -> None:
    from safetensors.torch import save_file

    peft_model.save_pretrained(str(tmp), safe_serialization=True)
    _debug_kill_in_checkpoint("adapter", step)
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    _debug_kill_in_checkpoint("optimizer", step)
    write_json_atomic(tmp / "optimizer.json", {"param_groups": sd["param_groups"], "scalars": scalars}, indent=None)
    write_json_atomic(tmp / "scheduler.json", sched.state_dict(), indent=None)
    write_json_atomic(tmp / "rng.json", {"ranks": rngs}, indent=None)
    # Last: list_checkpoints takes a folder with state.json for complete.
    write_json_atomic(tmp / "state.json", state, indent=None)
    fsync_tree(tmp)
    _debug_kill_in_checkpoint("before-rename", step)


def read_checkpoint(ck: Path) -> dict:
    """Everything a checkpoint holds, read and parsed before anything is applied (a bad one is skipped whole)."""
    from safetensors.torch import load_file

    return {
        "adapter": load_file(str(ck / "adapter_model.safetensors")),
        "optTensors": load_file(str(ck / "optimizer.safetensors")),
        "opt": read_json(ck / "optimizer.json"),
        "sched": read_json(ck / "scheduler.json"),
        "rng": read_json(ck / "rng.json"),
        "state": read_json(ck / "state.json"),
    }


def apply_checkpoint(c: dict, peft_model, opt, sched, device) -> None:
    from peft import set_peft_model_state_dict

    res = set_peft_model_state_dict(peft_model, {k: v.to(device) for k, v in c["adapter"].items()})
    unexpected = getattr(res, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint adapter does not match the model (unexpected weights such as {unexpected[0]})")
    state: dict[int, dict] = {}
    for key, v in c["optTensors"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for key, v in c["opt"]["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": c["opt"]["param_groups"]})
    sched.load_state_dict(c["sched"])
