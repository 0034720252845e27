"""Benchmark: analyze's one pass for all N depths vs N separately truncated models, on the demo model.

Each mode runs in its own subprocess so that peak RSS (getrusage ru_maxrss) belongs to that mode alone.
Modes, all over the same seeded sample and batches:
  single     one forward per batch with output_hidden_states, all N depths pooled + scored (what analyze does)
  truncated  for n = 1..N: model.layers = full[:n], forward, pool, score (model loaded once)
  reloaded   for n = 1..N: load the model afresh, apply the paper's lines, forward, pool, score
  full       N forwards of the whole, untruncated model (the "N x one forward" yardstick)
Times are best-of --repeats (truncated: best of repeats-1 per depth; reloaded: one try, load included).

Why the ratio vs `truncated` cannot reach N: pass n costs ~n layers, so N truncated passes cost N(N+1)/2 layer
evaluations against N for the single pass; the layer-bound ceiling is (N+1)/2 (15.5 for N = 30). A ratio near
N needs every baseline pass to cost a full model (`full`), or model loading on top (`reloaded`).

Usage: .venv/bin/python bench/analyze_bench.py [--model DIR] [--data FILE] [--samples 32] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "worker"))
import l3prune  # noqa: E402,F401 - goes offline (l3prune/__init__.py) before anything imports huggingface_hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_mode(a) -> dict:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from l3prune.analyze import batch_loss, batch_texts
    from l3prune.data import read_triples, sample_batches
    from l3prune.encoder import find_layers, load_encoder, prune
    from l3prune.layerwise import LayerwiseEncoder
    from l3prune.losses import HardNegativeInfoNCE

    torch.manual_seed(0)
    batches = sample_batches(read_triples(a.data), a.samples, a.batch_size, 0)
    total = sum(len(b) for b in batches)
    loss_fn = HardNegativeInfoNCE(50.0)
    enc = load_encoder(a.model, max_length=a.max_length)
    n_layers = enc.num_layers
    rss_loaded = maxrss_mib()
    losses = [0.0] * n_layers

    def best_of(fn, repeats: int) -> float:
        # Minimum of repeats: on a shared machine the noise is one-sided (other processes only ever slow us).
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def score(e, n):
        def go():
            losses[n - 1] = sum(batch_loss(e.encode(batch_texts(b), "weighted_mean"), len(b), loss_fn) for b in batches)
        return go

    if a.mode == "single":
        lw = LayerwiseEncoder(enc)

        def go():
            for d in range(n_layers):
                losses[d] = 0.0
            for b in batches:
                r = lw.encode_all_depths(batch_texts(b), "weighted_mean")
                for d in range(n_layers):
                    losses[d] += batch_loss(r.embeddings[d], len(b), loss_fn)

        seconds = best_of(go, a.repeats)
    elif a.mode == "truncated":
        parent, attr, full = find_layers(enc.model)
        seconds = 0.0
        for n in range(1, n_layers + 1):
            setattr(parent, attr, full[:n])
            enc.model.config.num_hidden_layers = n
            seconds += best_of(score(enc, n), max(1, a.repeats - 1))
    elif a.mode == "full":
        # N passes of the whole model, estimated as N x the best single full pass.
        seconds = n_layers * best_of(score(enc, n_layers), a.repeats)
    elif a.mode == "reloaded":
        del enc
        seconds = 0.0
        for n in range(1, n_layers + 1):
            t = time.perf_counter()
            e = load_encoder(a.model, max_length=a.max_length)
            prune(e.model, n)
            score(e, n)()
            seconds += time.perf_counter() - t
            del e
    losses = [v / total for v in losses]
    return {
        "mode": a.mode,
        "seconds": seconds,
        "numLayers": n_layers,
        "samples": total,
        "maxrssMiB": maxrss_mib(),
        "maxrssAfterLoadMiB": rss_loaded,
        "losses": losses,
        "torchThreads": torch.get_num_threads(),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / ".demo/models/smollm2-135m"))
    ap.add_argument("--data", default=str(ROOT / ".demo/data/triples.jsonl"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--modes", default="single,truncated,full,reloaded")
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats for single/full (truncated uses one fewer)")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help="also write all results to this file")
    a = ap.parse_args()
    if a.mode:
        print(json.dumps(run_mode(a)))
        return 0
    if not Path(a.model).is_dir():
        print(f"analyze_bench: no model at {a.model}; run scripts/setup-worker.sh first", file=sys.stderr)
        return 2
    results = {}
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", a.model, "--data", a.data, "--samples", str(a.samples),
               "--batch-size", str(a.batch_size), "--max-length", str(a.max_length), "--repeats", str(a.repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[mode] = r = json.loads(out)
        print(f"{mode:10s} {r['seconds']:8.2f} s   peak RSS {r['maxrssMiB']:7.0f} MiB (after load {r['maxrssAfterLoadMiB']:.0f} MiB)", flush=True)
    s = results.get("single")
    if s:
        n = s["numLayers"]
        print(f"N = {n} layers, {s['samples']} triples, batch {a.batch_size}, max length {a.max_length}, {s['torchThreads']} torch threads")
        for mode, r in results.items():
            if mode != "single":
                drift = max(abs(x - y) for x, y in zip(s["losses"], r["losses"])) if mode in ("truncated", "reloaded") else float("nan")
                print(f"speed-up vs {mode:9s} {r['seconds'] / s['seconds']:6.1f}x  (goal 0.8*N = {0.8 * n:.1f}x; "
                      f"layer-bound ceiling vs truncated (N+1)/2 = {(n + 1) / 2:.1f}x)  max |loss diff| {drift:.2e}")
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
