"""Benchmark: training steps/s of the worker's train loop vs sentence-transformers' trainer, same model and data.

Both sides train the same thing: the demo model pruned to --keep layers (the paper's lines), LoRA (r 16, alpha 32,
dropout 0.05, all seven projections, peft), weighted-mean pooling, in-batch + hard-negative InfoNCE at scale 50
(sentence-transformers: MultipleNegativesRankingLoss(scale=50) on (anchor, positive, negative) columns), AdamW
lr 2e-4 with linear warm-up/decay, gradient clipping at 1.0, batch --batch-size, max length --max-length, fp32 on
CPU, triples from the same file.

  ours   l3prune.train.Trainer: setup() then train_step() per step, exactly as `python -m l3prune train` runs it
         (one forward per text group: queries, positives and negatives each padded to their own longest text)
  st     SentenceTransformerTrainer.train() (HF Trainer underneath); step times from a TrainerCallback

Each mode runs in its own subprocess; the first --skip steps (warm-up of allocators, lazy init) are not timed.
Modes alternate for --repeats rounds and each mode's best round counts, which damps the noise of a shared machine.

sentence-transformers is a bench-only dependency, not one of the worker's:
  .venv/bin/pip install -c <(echo torch==2.13.0+cpu) sentence-transformers==6.2.0 datasets==5.2.0

Usage: .venv/bin/python bench/train_bench.py [--keep 15] [--batch-size 16] [--max-length 64] [--steps 12] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "worker"))
import l3prune  # noqa: E402,F401 - goes offline (l3prune/__init__.py) before anything imports huggingface_hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run_ours(a) -> list[float]:
    import torch

    from l3prune import distributed as D
    from l3prune.train import StopFlag, Trainer, make_spec
    from l3prune.verbs import quiet_libraries

    quiet_libraries()
    spec = make_spec({"model": a.model, "data": a.data, "keep": a.keep, "steps": a.steps, "batchSize": a.batch_size,
                      "maxLength": a.max_length, "warmupSteps": max(1, a.steps // 10), "device": "cpu", "precision": "fp32"},
                     source="bench")
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(spec, Path(tmp), D.World(), lambda *x, **k: None, StopFlag())
        t.setup()
        t.wrap()
        times = []
        for k in range(a.steps):
            idx = t.plan.batch(k)
            t0 = time.perf_counter()
            t.train_step([t.triples[i] for i in idx])
            times.append(time.perf_counter() - t0)
    assert torch.get_num_threads() >= 1
    return times


def run_st(a) -> list[float]:
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import TrainerCallback

    from l3prune.data import read_triples
    from l3prune.encoder import prune

    # Plain text in, last_hidden_state out, as onnx_bench.py does: left to infer its modalities,
    # sentence-transformers 6 wraps every text in the model's chat template (3x the tokens of our side).
    tr = Transformer(a.model, max_seq_length=a.max_length, model_kwargs={"dtype": torch.float32},
                     modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                     module_output_name="token_embeddings")
    prune(tr.auto_model, a.keep)
    tok = tr.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    # The same peft LoRA as ours, attached to the pruned HF model inside the Transformer module.
    # (SentenceTransformer.add_adapter goes through transformers' integration, which wants peft >= 0.22.)
    tr.auto_model = get_peft_model(tr.auto_model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS, bias="none"))
    model = SentenceTransformer(modules=[tr, Pooling(tr.auto_model.config.hidden_size, pooling_mode="weightedmean")], device="cpu")
    triples = read_triples(a.data)[: a.steps * a.batch_size * 2]
    # The same text as ours, as a plain string ("{instruction}; {query}", the E5 format; ST pools all of it).
    ds = Dataset.from_dict({"anchor": [f"{t.instruction}; {t.query}" if t.instruction else t.query for t in triples], "positive": [t.positive for t in triples],
                            "negative": [t.negative for t in triples]})
    loss = MultipleNegativesRankingLoss(model, scale=50.0)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=a.batch_size, max_steps=a.steps, learning_rate=2e-4,
            warmup_steps=max(1, a.steps // 10), lr_scheduler_type="linear", max_grad_norm=1.0, weight_decay=0.0,
            save_strategy="no", report_to=[], logging_steps=10_000, dataloader_drop_last=True, use_cpu=True, seed=0,
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds, loss=loss, callbacks=[Clock()])
        trainer.train()
    return times


def summarize(times: list[float], skip: int) -> dict:
    timed = times[skip:]
    total = sum(timed)
    return {"steps": len(timed), "seconds": round(total, 3), "stepsPerSecond": round(len(timed) / total, 4),
            "medianStepSeconds": round(sorted(timed)[len(timed) // 2], 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / ".demo" / "models" / "smollm2-135m"))
    p.add_argument("--data", default=str(ROOT / ".demo" / "data" / "triples.jsonl"))
    p.add_argument("--keep", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--skip", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--mode", choices=["ours", "st"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "train_bench.json"))
    a = p.parse_args()
    if a.mode:
        times = run_ours(a) if a.mode == "ours" else run_st(a)
        print(json.dumps({"times": times}))
        return
    forward = ["--model", a.model, "--data", a.data, "--keep", str(a.keep), "--batch-size", str(a.batch_size),
               "--max-length", str(a.max_length), "--steps", str(a.steps)]
    rounds: dict[str, list[dict]] = {"ours": [], "st": []}
    for r in range(a.repeats):
        for mode in ("ours", "st"):
            out = subprocess.run([sys.executable, __file__, "--mode", mode, *forward], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{mode} failed:\n{out.stderr[-4000:]}")
            times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
            s = summarize(times, a.skip)
            rounds[mode].append(s)
            print(f"round {r + 1} {mode:4s}: {s['stepsPerSecond']:.3f} steps/s (median step {s['medianStepSeconds']:.3f} s over {s['steps']} steps)", flush=True)
    best = {m: max(rs, key=lambda s: s["stepsPerSecond"]) for m, rs in rounds.items()}
    ratio = best["ours"]["stepsPerSecond"] / best["st"]["stepsPerSecond"]
    result = {"config": {"model": a.model, "keep": a.keep, "batchSize": a.batch_size, "maxLength": a.max_length, "steps": a.steps,
                         "skip": a.skip, "repeats": a.repeats, "device": "cpu", "threads": os.cpu_count()},
              "rounds": rounds, "best": best, "ratio": round(ratio, 3)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ours {best['ours']['stepsPerSecond']:.3f} steps/s, sentence-transformers {best['st']['stepsPerSecond']:.3f} steps/s, "
          f"ratio {ratio:.2f} (goal >= 1.0); written to {a.out}")


if __name__ == "__main__":
    main()
