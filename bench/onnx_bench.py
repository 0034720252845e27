"""Benchmark: encoder throughput on CPU, pruned vs full (torch), and the exported ONNX graph vs torch.

(a) depth   the worker's torch encode (l3prune.encoder.Encoder.encode, weighted-mean pooling, fp32) of the same
            texts with the model cut to n layers, n = N (full), and 20%, 50%, 80% of the layers pruned (the paper's
            `model.layers = model.layers[:n]`). A forward's cost is roughly the layers' cost, so the ideal speed-up
            over the full model is N/n; the goal is a measured speed-up within 10% of it. The embedding lookup,
            final norm, pooling and tokenisation do not shrink with n, so very deep cuts fall short of N/n.
(b) runtime at --keep layers: onnxruntime (Python, CPU) running the graph `python -m l3prune export-onnx` writes
            (exported here through the same code), vs a sentence-transformers model of the same pruned weights
            (Transformer + Pooling("weightedmean") + Normalize, SentenceTransformer.encode), and the worker's torch
            encode as a third row. Every mode tokenises inside the timed region, with the same tokenizer, max
            length and batches (texts pre-sorted by length, as SentenceTransformer.encode sorts them). Only
            reported; onnxruntime-node on the TypeScript side is measured separately.

Modes alternate batch by batch, each batch is run --repeats times per mode and its fastest run counts (see
best_times), which damps a shared machine's noise. The reference of every ratio is measured in the same run:
(a) the full model, (b) sentence-transformers.

sentence-transformers is a bench-only dependency (see bench/train_bench.py); without it (b) reports onnxruntime vs
the worker's torch encode only.

Usage: .venv/bin/python bench/onnx_bench.py [--texts 128] [--batch-size 16] [--max-length 64] [--keep 15] [--repeats 2]
       [--threads N] [--only depth|runtime]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "worker"))
import l3prune  # noqa: E402,F401 - goes offline (l3prune/__init__.py) before anything imports huggingface_hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def load_texts(path: str, n: int) -> list[str]:
    from l3prune.data import read_triples

    texts: list[str] = []
    for t in read_triples(path):
        for x in (t.query_text(), t.positive, t.negative):
            if x not in texts:
                texts.append(x)
        if len(texts) >= n:
            break
    return texts[:n]


def batches_of(texts: list[str], tok, max_length: int, b: int) -> list[list[str]]:
    # Longest first, as SentenceTransformer.encode orders its batches; every mode gets these batches.
    lengths = [len(tok(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    s = [texts[i] for i in order]
    return [s[i : i + b] for i in range(0, len(s), b)]


def best_times(modes: dict, batches: list[list[str]], repeats: int) -> dict:
    """Seconds per mode for all batches: each batch's fastest of `repeats` runs, summed.

    Modes alternate batch by batch (in a rotating order), so a neighbour's burst of load hits every mode alike
    instead of one mode's whole pass, and taking each batch's minimum drops the bursts (noise only adds time).
    modes: name -> (setup, run); setup (untimed) prepares the mode, run(batch) encodes one batch.
    """
    names = list(modes)
    for setup, run in modes.values():
        setup()
        run(batches[0])  # warm-up: allocator, lazy init, ORT's first-run planning
    best = {m: [float("inf")] * len(batches) for m in names}
    for r in range(repeats):
        for i, b in enumerate(batches):
            k = (r + i) % len(names)
            for m in names[k:] + names[:k]:
                setup, run = modes[m]
                setup()
                t0 = time.perf_counter()
                run(b)
                best[m][i] = min(best[m][i], time.perf_counter() - t0)
        print(f"  repeat {r + 1}/{repeats} done", flush=True)
    return {m: sum(v) for m, v in best.items()}


class DepthSwitch:
    """Cut the loaded model to its first n layers and back, without reloading (prune() on a restored stack)."""

    def __init__(self, model):
        from l3prune.encoder import find_layers

        self.model = model
        self.parent, self.attr, layers = find_layers(model)
        self.layers = list(layers)
        self.layer_types = getattr(model.config, "layer_types", None)

    def set(self, n: int) -> None:
        import torch.nn as nn

        from l3prune.encoder import prune

        setattr(self.parent, self.attr, nn.ModuleList(self.layers))
        self.model.config.num_hidden_layers = len(self.layers)
        if isinstance(self.layer_types, list):
            self.model.config.layer_types = list(self.layer_types)
        prune(self.model, n)


def bench_depths(a, enc, batches, n_texts: int) -> dict:
    import torch

    sw = DepthSwitch(enc.model)
    N = len(sw.layers)
    depths = [("full", N)] + [(f"{p}% pruned", max(1, round(N * (100 - p) / 100))) for p in (20, 50, 80)]

    def encode(b):
        with torch.no_grad():
            enc.encode(b, "weighted_mean")

    best = best_times({n: (lambda n=n: sw.set(n), encode) for _, n in depths}, batches, a.repeats)
    sw.set(N)
    full = best[N]
    rows = []
    for label, n in depths:
        speedup = full / best[n]
        ideal = N / n
        rows.append({"label": label, "layers": n, "seconds": round(best[n], 3), "textsPerSecond": round(n_texts / best[n], 2),
                     "speedup": round(speedup, 3), "ideal": round(ideal, 3), "ofIdeal": round(speedup / ideal, 3),
                     "within10pct": abs(speedup / ideal - 1) <= 0.1})
    return {"numLayers": N, "rows": rows}


def bench_runtimes(a, batches, n_texts: int, tmp: Path) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from l3prune.encoder import load_encoder, prune
    import onnxruntime as ort

    from l3prune.export_onnx import ExportSpec, run_export

    t0 = time.perf_counter()
    run_export(ExportSpec(model=a.model, out=str(tmp / "onnx"), keep=a.keep, pooling="weighted_mean", maxLength=a.max_length),
               lambda *x, **k: None)
    print(f"  exported {a.keep} layers in {time.perf_counter() - t0:.1f} s", flush=True)
    enc = load_encoder(a.model, max_length=a.max_length)
    prune(enc.model, a.keep)
    tok = enc.tokenizer
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()  # the same cores torch gets
    sess = ort.InferenceSession(str(tmp / "onnx" / "model.onnx"), so, providers=["CPUExecutionProvider"])

    def ort_encode(b):
        t = tok(b, padding=True, truncation=True, max_length=a.max_length, return_tensors="np")
        return sess.run(["embedding"], {"input_ids": t["input_ids"].astype(np.int64), "attention_mask": t["attention_mask"].astype(np.int64)})[0]

    def worker_encode(b):
        with torch.no_grad():
            return F.normalize(enc.encode(b, "weighted_mean"), dim=-1).numpy()

    modes = {"onnxruntime": ort_encode, "torch (worker)": worker_encode}
    st = None
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        # Plain text in, last_hidden_state out: left to infer its modalities, sentence-transformers 6 sees the
        # model's chat template and wraps every text in it (a system prompt and role tokens, 3x the tokens).
        tr = Transformer(a.model, max_seq_length=a.max_length, model_kwargs={"dtype": torch.float32},
                         modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                         module_output_name="token_embeddings")
        prune(tr.auto_model, a.keep)
        if tr.tokenizer.pad_token is None:
            tr.tokenizer.pad_token = tr.tokenizer.eos_token
        st = SentenceTransformer(modules=[tr, Pooling(tr.auto_model.config.hidden_size, pooling_mode="weightedmean"), Normalize()], device="cpu")
        st.eval()
        modes["sentence-transformers"] = lambda b: st.encode(b, batch_size=len(b), convert_to_numpy=True, show_progress_bar=False)
    except ImportError as e:
        print(f"  sentence-transformers not installed ({e}); reporting onnxruntime vs the worker's torch encode", flush=True)

    # The three must compute the same thing, or the timing compares different work.
    probe = batches[0]
    ref = worker_encode(probe)
    agree = {m: float(np.min(np.sum(fn(probe) * ref, axis=1))) for m, fn in modes.items()}
    best = best_times({m: (lambda: None, fn) for m, fn in modes.items()}, batches, a.repeats)
    ref_mode = "sentence-transformers" if st is not None else "torch (worker)"
    rows = [{"mode": m, "seconds": round(best[m], 3), "textsPerSecond": round(n_texts / best[m], 2),
             "vsReference": round(best[ref_mode] / best[m], 3), "minCosineToWorker": round(agree[m], 6)} for m in modes]
    return {"keep": a.keep, "reference": ref_mode, "rows": rows,
            "threads": {"torch": torch.get_num_threads(), "onnxruntimeIntraOp": sess.get_session_options().intra_op_num_threads}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / ".demo" / "models" / "smollm2-135m"))
    p.add_argument("--data", default=str(ROOT / ".demo" / "data" / "triples.jsonl"))
    p.add_argument("--texts", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--keep", type=int, default=15, help="layers of the model compared across runtimes in (b)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for torch and onnxruntime alike "
                   "(1 keeps ratios steadier on a machine shared with other jobs)")
    p.add_argument("--only", choices=["depth", "runtime"], help="run one part")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "onnx_bench.json"))
    a = p.parse_args()

    import torch

    from l3prune.encoder import load_encoder
    from l3prune.verbs import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(a.threads)
    enc = load_encoder(a.model, max_length=a.max_length)
    texts = load_texts(a.data, a.texts)
    batches = batches_of(texts, enc.tokenizer, a.max_length, a.batch_size)
    tokens = sum(len(enc.tokenizer(t, truncation=True, max_length=a.max_length)["input_ids"]) for t in texts)
    print(f"{len(texts)} texts ({tokens} tokens, max length {a.max_length}), batches of {a.batch_size}, {a.threads} thread(s) of "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    result: dict = {"config": {"model": a.model, "texts": len(texts), "tokens": tokens, "batchSize": a.batch_size,
                               "maxLength": a.max_length, "keep": a.keep, "repeats": a.repeats, "cpus": os.cpu_count(),
                               "threads": a.threads, "loadAverageAtStart": round(os.getloadavg()[0], 2)}}
    if a.only in (None, "depth"):
        print("(a) torch encode, pruned vs full", flush=True)
        result["depth"] = bench_depths(a, enc, batches, len(texts))
    del enc
    if a.only in (None, "runtime"):
        print(f"(b) {a.keep} layers: onnxruntime vs sentence-transformers vs the worker's torch encode", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result["runtime"] = bench_runtimes(a, batches, len(texts), Path(tmp))

    print()
    if "depth" in result:
        d = result["depth"]
        print(f"(a) speed-up over the full model (N = {d['numLayers']}); goal: within 10% of N/n")
        print(f"  {'model':>12s} {'n':>3s} {'texts/s':>9s} {'speed-up':>9s} {'ideal N/n':>10s} {'of ideal':>9s}  goal")
        for r in d["rows"]:
            print(f"  {r['label']:>12s} {r['layers']:3d} {r['textsPerSecond']:9.1f} {r['speedup']:9.2f} {r['ideal']:10.2f} "
                  f"{r['ofIdeal']:9.2f}  {'ok' if r['within10pct'] else ('below' if r['ofIdeal'] < 1 else 'above (noise?)')}")
    if "runtime" in result:
        rt = result["runtime"]
        print(f"(b) {rt['keep']} layers, ratio = reference seconds / mode seconds (reference: {rt['reference']})")
        print(f"  {'mode':>22s} {'texts/s':>9s} {'ratio':>7s} {'min cos to worker':>18s}")
        for r in rt["rows"]:
            print(f"  {r['mode']:>22s} {r['textsPerSecond']:9.1f} {r['vsReference']:7.2f} {r['minCosineToWorker']:18.6f}")
        print(f"  threads: torch {rt['threads']['torch']}, onnxruntime intra-op {rt['threads']['onnxruntimeIntraOp']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
