"""Benchmark: analyze's peak memory with every depth pooled as its layer runs, against the stack of hidden states.

Each mode runs in its own subprocess, so its peak RSS (getrusage ru_maxrss) is its own; the figure reported is the
peak of the forward pass above the RSS after loading the model (weights are the same in every mode).
  stack      one pass with output_hidden_states over the whole batch (3 x 64 texts), then every depth pooled:
             what analyze did before it streamed (the N+1 hidden states of the batch held at once)
  streamed   analyze's encoder: one pass per text group, each depth pooled by a hook as its layer runs
  chunk-16   the same in passes of 16 texts (analyze --mini-batch-size 16)
The texts are 128 tokens long (demo words repeated), so the batch is the paper's 64 triples at 128 tokens.

Usage: .venv/bin/python bench/analyze_memory.py [--model DIR] [--triples 64] [--tokens 128]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "worker"))
import l3prune  # noqa: E402,F401 - goes offline before anything imports huggingface_hub

MODES = ("stack", "streamed", "chunk-16")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return rss_mib()


def run_mode(a) -> dict:
    import torch

    from l3prune.encoder import load_encoder, pool
    from l3prune.layerwise import LayerwiseEncoder
    from l3prune.verbs import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    enc = load_encoder(a.model, max_length=a.tokens)
    words = "the quick brown fox jumps over a lazy dog near river bank while birds sing".split()
    # Long enough to be truncated at max length: every row holds a.tokens tokens.
    texts = [" ".join(words[(i + j) % len(words)] for j in range(a.tokens * 2)) for i in range(3 * a.triples)]
    lw = LayerwiseEncoder(enc)
    with torch.no_grad():
        lw.encode_all_depths(texts[:6], "weighted_mean", groups=3)  # warm-up: allocator, kernels
    base = current_rss_mib()
    peak_before = rss_mib()
    with torch.no_grad():
        if a.mode == "stack":
            tok = enc.tokenize(texts)
            out = enc.model(**enc.model_inputs(tok), output_hidden_states=True, use_cache=False)
            hs = out.hidden_states
            norm = enc.model.norm
            embs = torch.stack([pool(norm(h), tok["embed_mask"], "weighted_mean") for h in hs[1:-1]] + [pool(out.last_hidden_state, tok["embed_mask"], "weighted_mean")])
        else:
            chunk = 16 if a.mode == "chunk-16" else None
            embs = lw.encode_all_depths(texts, "weighted_mean", groups=3, chunk_size=chunk).embeddings
    return {"mode": a.mode, "shape": list(embs.shape), "rssAfterLoadMiB": round(base, 1),
            "peakAboveLoadMiB": round(max(rss_mib(), peak_before) - base, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / ".demo" / "models" / "smollm2-135m"))
    p.add_argument("--triples", type=int, default=64)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--mode", choices=MODES)
    a = p.parse_args()
    if a.mode:
        print(json.dumps(run_mode(a)))
        return 0
    rows = []
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--model", a.model, "--triples", str(a.triples), "--tokens", str(a.tokens)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = rows[0]["peakAboveLoadMiB"]
    print(f"batch {a.triples} triples x {a.tokens} tokens, {Path(a.model).name}; peak RSS of the forward above the loaded model:")
    for r in rows:
        ratio = r["peakAboveLoadMiB"] / ref if ref > 0 else float("nan")
        print(f"  {r['mode']:<9} {r['peakAboveLoadMiB']:8.1f} MiB  (x{ratio:.2f} of stack)   embeddings {r['shape']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
