"""GPU check: does a 7-8B model pruned to 25 layers analyze and train on one GPU, as the worker runs it?

Self-contained: no downloads, no model on disk. A Llama-3-8B-shaped model (hidden 4096, MLP 14336, 32 heads, 8 KV
heads, vocab 128256, 32 layers) is built with random weights directly on the GPU in bf16, and the worker's own code
runs on it in this process: analyze.run_analyze (every depth in one streamed pass), train.loop.Trainer.run (LoRA,
AdamW, bf16 autocast, gradient checkpointing, the gradient cache). Only what must cross a process boundary (torchrun,
an out-of-memory failure) runs the real `python -m l3prune train` verb on a small random model saved to a temp folder.
Texts are synthetic: a word-level tokenizer over the model's whole vocabulary ("w3", "w4", ...; every word one token,
no special tokens added) turns a text of L words into exactly L tokens, so a batch of 64 triples of 512-word texts is
three 64 x 512 token batches that go through the worker's real text pipeline (left padding, embed mask).

Cases (each one ok or not, with its numbers; one failing does not stop the others):
  bf16_agreement  pooled embeddings of a small model in fp32 against bf16 weights (analyze/evaluate's precision) and
                  against fp32 weights under bf16 autocast (train's forward): cosine per text, min over texts
  analyze         run_analyze on 32 layers: batches of 64 triples x 512 tokens, peak memory, tokens/s, MFU
  train           Trainer.run on the model pruned to 25 layers: batch 64 x 512, LoRA r16 on the 7 projections,
                  AdamW, bf16 autocast, gradient checkpointing; steps timed after the first
  train_gradcache the same with miniBatchSize 16 (Trainer.accumulate_gradients' gradient cache)
  torchrun        `torchrun --standalone --nproc_per_node=1 -m l3prune train` on a small saved model, and a process
                  group probe (all_reduce, all_gather, barrier) under the same launcher: nccl on CUDA, gloo on CPU
  oom             the train verb made to run out of memory: (injected) after step 1's checkpoint a hook asks the
                  allocator for more than the device has (a real CUDA out-of-memory error; on a CPU, where no
                  allocator fails deterministically, torch.OutOfMemoryError is raised instead), then --resume
                  finishes the run from that checkpoint; (genuine, CUDA only) an unmodified train run of a wide model
                  on 64 triples of 8192-token texts without checkpointing, then --resume accepted (and failing again).
                  Each must end in the worker's one-sentence out-of-memory error and a run.json with status failed.

Numbers: peak memory is torch.cuda.max_memory_allocated (reset before each case; the weights count, as the planner
counts them); on a CPU it is null and rssDeltaBytes (resident memory after the case minus before) is given instead.
MFU is useful FLOPs / measured seconds / the GPU's dense bf16 peak (protocol/gpu-peaks.json; --peak-flops overrides; null on a
CPU). Useful FLOPs, the planner's (src/shared/prune/resources.ts, planTrain/planAnalyze), per token of context T:
    train    4 * P_kept + 6 * n * T * q + 6 * P_lora
    analyze  2 * P_all  + 2 * N * T * q
P: parameters of the layers that run (the embedding lookup and the norms' few FLOPs aside); n, N: those layers; q: the
query width (heads x head dim); P_lora: the adapter's parameters. Frozen weights: the backward computes input
gradients only (2 * P, as much as the forward), not weight gradients; causal attention's QK^T and AV cost 2 * T * q
per token and layer in the forward (T/2 positions on average) and twice that in the backward. Gradient
checkpointing's recomputation and the gradient cache's extra forward are not useful FLOPs: they lower the MFU.

With --plan FILE (repeatable; the JSON of `npx l3prune plan MODEL --keep 25 --gpu H200 --json`, plus
`--mini-batch 16` for the gradient-cache case) each case whose recipe matches a plan's gets the planner's predicted
peak (resources.train/analyze.peakBytes), seconds per step and useful FLOPs next to the measured ones, and their
ratios. No Llama-3-8B at hand? `--write-shape-model DIR` writes a header-only one (config.json and a sparse
safetensors file: no disk used) that the planner reads as it reads the real one.

Output: $OUT/gpu-check.json (OUT defaults to ./gpu-check-out; --out overrides), $OUT/summary.txt and the run
folders' run.json/events.jsonl under $OUT/runs/; the summary also goes to stdout. Exit 0 when every case is ok.

  PYTHONPATH=worker python bench/gpu_check.py [--plan plan.json --plan plan-cache.json]   # on the GPU box, < 8 min
  .venv/bin/python bench/gpu_check.py --tiny       # the same cases, tiny shapes, on a CPU (worker/tests/test_gpu_check.py)
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "worker"
sys.path.insert(0, str(WORKER))
import l3prune  # noqa: E402,F401 - goes offline (l3prune/__init__.py) before anything imports huggingface_hub
from l3prune.flops import gpu_peak_bf16, useful_flops_per_token  # noqa: E402 - the worker's FLOPs count and peak table

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SCHEMA = "l3prune-gpu-check/1"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# bf16 keeps 8 significant bits (unit roundoff 2^-8); a relative error e of a vector costs 1 - cos = e^2 / 2. The
# small models here agree to 1 - cos ~ 1e-4 (e ~ 1.4 %); 0.99 allows e ~ 14 %, ten times that, so hardware and shape
# differences do not make it flaky, while a real defect (overflow, a mask or pooling broken in bf16) lands near the
# cosine of unrelated texts. The agreement must also beat the highest cosine between two different texts.
BF16_MIN_COSINE = 0.99


def oom_sentence() -> str:
    """The worker's own out-of-memory sentence for train (its Advice), so the check cannot drift from it."""
    from l3prune.train import VERB
    from l3prune.verbs import Job

    return VERB.advice(Job(args=argparse.Namespace(run_dir="x"), world=None, stop=None)).out_of_memory

# Model shapes (LlamaConfig fields). The 8B shape is Llama-3-8B's; the others are stand-ins.
LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                 vocab_size=128256, num_hidden_layers=32, max_position_embeddings=8192, rms_norm_eps=1e-5)
SMALL = dict(hidden_size=1024, intermediate_size=3584, num_attention_heads=16, num_key_value_heads=4, vocab_size=32000,
             num_hidden_layers=8, max_position_embeddings=1024, rms_norm_eps=1e-5)
WIDE = dict(hidden_size=2048, intermediate_size=8192, num_attention_heads=16, num_key_value_heads=4, vocab_size=4096,
            num_hidden_layers=2, max_position_embeddings=8192, rms_norm_eps=1e-5)
TINY = dict(hidden_size=64, intermediate_size=224, num_attention_heads=4, num_key_value_heads=1, vocab_size=1000,
            num_hidden_layers=8, max_position_embeddings=512, rms_norm_eps=1e-5)


@dataclass(frozen=True)
class Profile:
    name: str
    shape: dict
    keep: int
    batch: int  # triples per step / per analyze batch
    seq: int  # tokens per text (every text exactly this long)
    mini: int  # the gradient cache's miniBatchSize (texts per chunk)
    analyze_batches: int
    steps: int
    small: dict  # the saved model of bf16_agreement, torchrun and oom
    small_batch: int = 8
    small_seq: int = 64
    wide: dict | None = None  # genuine out-of-memory (CUDA only)
    wide_seq: int = 8192


FULL = Profile("full", LLAMA3_8B, keep=25, batch=64, seq=512, mini=16, analyze_batches=3, steps=10, small=SMALL, wide=WIDE)
TINY_PROFILE = Profile("tiny", TINY, keep=6, batch=8, seq=32, mini=2, analyze_batches=2, steps=6, small=TINY,
                       small_batch=4, small_seq=32)


# ---------------------------------------------------------------------------------------------------------------
# FLOPs: the worker's formula (l3prune/flops.py, the planner's count) and its GPU peak table
def peak_flops(device: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-flops"
    if not device.startswith("cuda"):
        return None, "none on a CPU"
    import torch

    name = torch.cuda.get_device_name(device)
    known = gpu_peak_bf16(name)
    if known:
        return known[1], f"dense bf16 peak of {known[0]} (data sheet, protocol/gpu-peaks.json)"
    return None, f"unknown GPU {name!r}; pass --peak-flops"


# ---------------------------------------------------------------------------------------------------------------
# helpers
def now() -> float:
    return time.perf_counter()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Memory:
    """Peak allocated memory of one case (CUDA), or the resident-memory delta (CPU)."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_allocated = torch.cuda.memory_allocated(self.device)
        self.rss0 = rss_bytes()
        return self

    def __exit__(self, *exc):
        self.fields = self.read()
        return False

    def read(self) -> dict:
        out = {"peakMemoryBytes": None, "allocatedAtStartBytes": None, "rssDeltaBytes": None}
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            out["peakMemoryBytes"] = int(torch.cuda.max_memory_allocated(self.device))
            out["allocatedAtStartBytes"] = int(self.start_allocated)
        else:
            r = rss_bytes()
            out["rssDeltaBytes"] = (r - self.rss0) if r is not None and self.rss0 is not None else None
        return out


def free_device(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def clean(v):
    """JSON without NaN/Infinity (a non-finite number becomes null, which the checks then catch)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def word_tokenizer(vocab_size: int):
    """A word-level fast tokenizer over the whole vocabulary: "w<i>" is token i (3..V-1); no special tokens are added,
    so a text of L words is exactly L tokens. [PAD] 0, [UNK] 1, [EOS] 2 (pad = the paper's rule's stand-in)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    vocab.update({f"w{i}": i for i in range(3, vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def words(rng: random.Random, n: int, vocab_size: int) -> str:
    return " ".join(f"w{rng.randrange(3, vocab_size)}" for _ in range(n))


def write_triples(path: Path, n: int, length, vocab_size: int, seed: int = 0) -> Path:
    """n query/positive/negative triples; length: an int (every text that many words) or a (lo, hi) range."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            row = {}
            for k in ("query", "positive", "negative"):
                w = length if isinstance(length, int) else rng.randint(*length)
                row[k] = words(rng, w, vocab_size)
            fh.write(json.dumps(row) + "\n")
    return path


def llama_config(shape: dict, layers: int | None = None, **extra):
    from transformers import LlamaConfig

    s = dict(shape)
    if layers is not None:
        s["num_hidden_layers"] = layers
    return LlamaConfig(**s, pad_token_id=0, bos_token_id=2, eos_token_id=2, tie_word_embeddings=False, **extra)


def build_model(shape: dict, device: str, dtype, layers: int | None = None, seed: int = 0):
    """A LlamaModel with random weights (its own init, normal(0, 0.02)) created directly on `device` in `dtype`:
    8B parameters are never materialised on the CPU."""
    import torch
    from transformers import LlamaModel

    torch.manual_seed(seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaModel(llama_config(shape, layers))
    finally:
        torch.set_default_dtype(prev)
    return model.eval()


def q_dim(shape: dict) -> int:
    return int(shape.get("head_dim") or shape["hidden_size"] // shape["num_attention_heads"]) * shape["num_attention_heads"]


def layer_params(model) -> int:
    from l3prune.encoder import find_layers

    return sum(p.numel() for p in find_layers(model)[2].parameters())


def timed_marks(marks: list[float], t0: float) -> tuple[float | None, float | None, list[float]]:
    """(first interval, median of the later ones, all intervals) of event times after t0."""
    times = [b - a for a, b in zip([t0, *marks[:-1]], marks)]
    if not times:
        return None, None, []
    later = times[1:]
    return times[0], (statistics.median(later) if later else times[0]), times


def worker_env(ctx) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(WORKER) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["L3PRUNE_LOCK_DIR"] = str(ctx.tmp / "locks")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_cmd(ctx, cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    t0 = now()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ctx.tmp), env=env or worker_env(ctx))
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), f"timed out after {timeout} s"
    return {"rc": rc, "stdout": out, "stderr": err, "seconds": round(now() - t0, 3)}


def read_run(run_dir: Path) -> tuple[dict | None, list[dict], str | None]:
    """run.json and the events, as parsed JSON; the problem when either does not parse."""
    try:
        run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        return None, [], f"{type(e).__name__}: {e}"
    return run, events, None


def keep_run(ctx, run_dir: Path, name: str) -> str:
    """Copy run.json and events.jsonl (not checkpoints) to $OUT/runs/NAME; returns the copy's path."""
    dest = ctx.out / "runs" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("run.json", "events.jsonl"):
        if (run_dir / f).is_file():
            shutil.copyfile(run_dir / f, dest / f)
    return str(dest.relative_to(ctx.out))


def tail(s: str, n: int = 1500) -> str:
    return s[-n:] if s else ""


# ---------------------------------------------------------------------------------------------------------------
# context shared by the cases
@dataclass
class Ctx:
    profile: Profile
    device: str
    out: Path
    tmp: Path
    peak: float | None
    peak_source: str
    plans: list[dict] = field(default_factory=list)
    deadline: float = math.inf
    small_dir: Path | None = None
    small_data: Path | None = None
    tok: object = None  # the big model's tokenizer
    uninterrupted: list | None = None  # the torchrun run's losses: the curve a resumed run must reproduce


def make_ctx(a) -> Ctx:
    import torch

    profile = TINY_PROFILE if a.tiny else FULL
    if a.steps:
        profile = replace(profile, steps=a.steps)
    if a.analyze_batches:
        profile = replace(profile, analyze_batches=a.analyze_batches)
    device = a.device or ("cpu" if a.tiny else ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(a.out or os.environ.get("OUT") or "gpu-check-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="l3prune-gpu-check-", dir=a.tmp_dir))
    (tmp / "locks").mkdir()
    peak, source = peak_flops(device, a.peak_flops)
    plans = []
    for f in a.plan or []:
        try:
            plans.append({"file": str(f), "json": json.loads(Path(f).read_text(encoding="utf-8"))})
        except (OSError, ValueError) as e:
            plans.append({"file": str(f), "error": f"{type(e).__name__}: {e}"})
    return Ctx(profile, device, out, tmp, peak, source, plans, deadline=now() + a.budget_seconds if a.budget_seconds else math.inf)


def environment(ctx: Ctx) -> dict:
    import torch
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except Exception:  # noqa: BLE001
        peft_version = None
    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft_version, "cpuCount": os.cpu_count(), "device": ctx.device, "cuda": torch.version.cuda,
           "gpuName": None, "gpuTotalMemoryBytes": None, "torchThreads": torch.get_num_threads()}
    if ctx.device.startswith("cuda"):
        p = torch.cuda.get_device_properties(ctx.device)
        env.update(gpuName=p.name, gpuTotalMemoryBytes=int(p.total_memory), bf16Supported=torch.cuda.is_bf16_supported())
    return env


# ---------------------------------------------------------------------------------------------------------------
# the planner's predictions
def plan_for(ctx: Ctx, verb: str, recipe: dict) -> dict | None:
    """The first --plan whose model (layers, keep, hidden) and `verb` recipe match; None when none does."""
    p = ctx.profile
    want_model = {"numLayers": p.shape["num_hidden_layers"], "keep": p.keep, "hiddenSize": p.shape["hidden_size"]}
    for entry in ctx.plans:
        res = (entry.get("json") or {}).get("resources")
        if not isinstance(res, dict) or not isinstance(res.get(verb), dict):
            continue
        model = res.get("model") or {}
        if any(model.get(k) != v for k, v in want_model.items()):
            continue
        r = res[verb].get("recipe") or {}
        if all(r.get(k) == v for k, v in recipe.items()):
            entry.setdefault("usedBy", []).append(verb)
            return {"file": entry["file"], **res[verb]}
    return None


def compare(ctx: Ctx, verb: str, recipe: dict, measured: dict) -> dict | None:
    plan = plan_for(ctx, verb, recipe)
    if plan is None:
        return None
    peak = measured.get("peakMemoryBytes")
    secs = measured.get("stepSeconds")
    out = {
        "file": plan["file"],
        "predictedPeakBytes": plan.get("peakBytes"),
        "measuredPeakBytes": peak,
        "peakRatio": (peak / plan["peakBytes"]) if finite(peak) and finite(plan.get("peakBytes")) and plan["peakBytes"] else None,
        "predictedSecondsPerStep": plan.get("secondsPerStep"),
        "measuredSecondsPerStep": secs,
        "timeRatio": (secs / plan["secondsPerStep"]) if finite(secs) and finite(plan.get("secondsPerStep")) and plan["secondsPerStep"] else None,
        "fits": plan.get("fits"),
        "terms": [{"name": t.get("name"), "bytes": t.get("bytes")} for t in plan.get("terms") or []],
    }
    if verb == "train":
        out["predictedUsefulFlopsPerStep"] = plan.get("usefulFlopsPerStep")
        out["usefulFlopsPerStep"] = measured.get("usefulFlopsPerStep")
        out["predictedTokensPerStep"] = plan.get("tokensPerStep")
        ours, theirs = measured.get("usefulFlopsPerStep"), plan.get("usefulFlopsPerStep")
        out["flopsRatio"] = ours / theirs if finite(ours) and finite(theirs) and theirs else None
    return out


# ---------------------------------------------------------------------------------------------------------------
# cases
def case_bf16_agreement(ctx: Ctx) -> dict:
    """Pooled embeddings of the small model: fp32 weights (reference) against bf16 weights, and against fp32 weights
    under bf16 autocast (training's forward_embeddings), on texts of mixed lengths (left padding in play)."""
    import torch
    import torch.nn.functional as F

    from l3prune.encoder import Encoder
    from l3prune.textpipe import TextPipeline
    from l3prune.train.loop import forward_embeddings

    p = ctx.profile
    shape = p.small
    tok = word_tokenizer(shape["vocab_size"])
    ref_model = build_model(shape, ctx.device, torch.float32, seed=1)
    rng = random.Random(1)
    texts = [words(rng, rng.randint(4, p.small_seq), shape["vocab_size"]) for _ in range(32)]
    pooling = "weighted_mean"
    enc = Encoder(model=ref_model, tokenizer=tok, max_length=p.small_seq, device=ctx.device, pipeline=TextPipeline())
    ref = enc.encode(texts, pooling).float()
    with torch.no_grad():
        amp = torch.autocast(device_type=ctx.device.split(":")[0], dtype=torch.bfloat16)
        autocast, _ = forward_embeddings(enc, ref_model, texts, pooling, amp)
    bf16_model = copy.deepcopy(ref_model).to(torch.bfloat16).eval()
    bf16 = Encoder(model=bf16_model, tokenizer=tok, max_length=p.small_seq, device=ctx.device, pipeline=TextPipeline()).encode(texts, pooling).float()
    n = F.normalize(ref, dim=-1)
    between = (n @ n.T)[~torch.eye(len(texts), dtype=torch.bool, device=n.device)]
    res = {}
    for name, emb in (("bf16Weights", bf16), ("bf16Autocast", autocast.float())):
        cos = F.cosine_similarity(ref, emb, dim=-1)
        res[name] = {"minCosine": float(cos.min()), "meanCosine": float(cos.mean())}
    worst = min(r["minCosine"] for r in res.values())
    ok = worst >= BF16_MIN_COSINE and worst > float(between.max())
    out = {"ok": ok, **res, "threshold": BF16_MIN_COSINE, "maxCosineBetweenTexts": float(between.max()),
           "meanCosineBetweenTexts": float(between.mean()), "texts": len(texts), "pooling": pooling,
           "model": {**{k: shape[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")}}}
    if not ok:
        out["error"] = f"min cosine {worst:.5f} below {BF16_MIN_COSINE} or not above the between-text cosine {float(between.max()):.5f}"
    # Saved for the torchrun and oom cases: the same small model, with its tokenizer.
    d = ctx.tmp / "small-model"
    ref_model.save_pretrained(str(d), safe_serialization=True)
    tok.save_pretrained(str(d))
    ctx.small_dir = d
    ctx.small_data = write_triples(ctx.tmp / "small-triples.jsonl", 4 * p.small_batch, (4, p.small_seq), shape["vocab_size"], seed=2)
    del ref_model, bf16_model, enc
    free_device(ctx.device)
    return out


def case_analyze(ctx: Ctx, model) -> dict:
    """run_analyze (the analyze verb's work) on all layers of the big model, in process, on synthetic triples."""
    from l3prune.analyze import AnalyzeSpec, run_analyze
    from l3prune.encoder import Encoder
    from l3prune.textpipe import TextPipeline

    p = ctx.profile
    data = ctx.tmp / "analyze-triples.jsonl"
    write_triples(data, p.batch * p.analyze_batches, p.seq, p.shape["vocab_size"], seed=3)
    spec = AnalyzeSpec(model=str(ctx.tmp / "in-memory-model"), data=str(data), samples=p.batch * p.analyze_batches,
                       batchSize=p.batch, maxLength=p.seq, device=ctx.device, precision="bf16", miniBatchSize=None)
    enc = Encoder(model=model, tokenizer=ctx.tok, max_length=p.seq, device=ctx.device, pipeline=TextPipeline())
    lengths = enc.tokenize([words(random.Random(0), p.seq, p.shape["vocab_size"])])["attention_mask"].sum(1).tolist()
    if lengths != [p.seq]:
        raise RuntimeError(f"a {p.seq}-word text tokenised to {lengths} tokens; the token counts below would be wrong")
    marks: list[float] = []
    t_loaded = [now()]

    def emit(kind, **f):
        sync(ctx.device)
        if kind == "model_loaded":
            t_loaded[0] = now()
        elif kind == "progress":
            marks.append(now())

    with Memory(ctx.device) as mem:
        t0 = now()
        res = run_analyze(spec, emit, encoder=enc)
        seconds = now() - t0
    first, per_batch, times = timed_marks(marks, t_loaded[0])
    n = p.shape["num_hidden_layers"]
    tokens = 3 * p.batch * p.seq
    flops = tokens * useful_flops_per_token("analyze", layer_params=layer_params(model), layers=n, q_dim=q_dim(p.shape), seq=p.seq)
    m = {"ok": True, "seconds": round(seconds, 3), **mem.fields, "batches": len(marks), "tokensPerStep": tokens,
         "firstStepSeconds": first, "stepSeconds": per_batch, "stepTimes": times,
         "tokensPerSecond": tokens / per_batch if per_batch else None, "usefulFlopsPerStep": flops,
         "mfu": flops / per_batch / ctx.peak if per_batch and ctx.peak else None, "numLayers": res["numLayers"],
         "losses": res["losses"], "small": res["small"], "large": res["large"]}
    problems = []
    if res["numLayers"] != n or len(res["losses"]) != n or not all(finite(x) for x in res["losses"]):
        problems.append(f"expected {n} finite per-depth losses, got {res['losses']}")
    if len(marks) != p.analyze_batches:
        problems.append(f"{len(marks)} progress events for {p.analyze_batches} batches")
    m["plan"] = compare(ctx, "analyze", {"batchSize": p.batch, "maxLength": p.seq, "miniBatchSize": None, "precision": "bf16"}, m)
    if problems:
        m.update(ok=False, error="; ".join(problems))
    return m


def case_train(ctx: Ctx, model, mini: int | None, data: Path) -> tuple[dict, object]:
    """Trainer.run (the train verb's work: setup, LoRA, optimizer, the loop, the adapter at the end) in process, on
    the model already pruned to `keep` layers; only load_encoder is replaced, by one that hands over this model.
    Returns the case's numbers and the base model without its LoRA layers (for the next case)."""
    from l3prune import distributed as D
    from l3prune.encoder import Encoder
    from l3prune.textpipe import TextPipeline
    from l3prune.train import loop
    from l3prune.train.spec import make_spec
    from l3prune.verbs import StopFlag

    p = ctx.profile
    spec = make_spec({"model": str(ctx.tmp / "in-memory-model"), "data": str(data), "keep": p.keep, "steps": p.steps,
                      "batchSize": p.batch, "maxLength": p.seq, "miniBatchSize": mini, "device": ctx.device,
                      "precision": "bf16", "gradientCheckpointing": True, "mergeAtEnd": False,
                      "checkpointEvery": p.steps + 1}, source="gpu_check")
    run_dir = ctx.tmp / f"train-{mini or 'full'}"
    run_dir.mkdir()
    enc = Encoder(model=model, tokenizer=ctx.tok, max_length=p.seq, device=ctx.device, pipeline=TextPipeline())
    events: list[dict] = []
    marks: list[float] = []
    t_loaded = [now()]
    stop = StopFlag()

    def emit(kind, **f):
        sync(ctx.device)
        if kind == "model_loaded":
            t_loaded[0] = now()
        elif kind == "step":
            marks.append(now())
            # Past the time budget: stop after this step as a signal would (checkpoint, then out of the loop).
            if now() > ctx.deadline and len(marks) >= 3:
                stop.signum = signal.SIGTERM
        events.append({"event": kind, **f})

    saved = loop.load_encoder
    loop.load_encoder = lambda *a, **k: enc
    trainer = None
    try:
        with Memory(ctx.device) as mem:
            t0 = now()
            trainer = loop.Trainer(spec, run_dir, D.World(), emit, stop)
            result = trainer.run(resume=False)
            seconds = now() - t0
    finally:
        loop.load_encoder = saved
        base = trainer.peft_model.unload() if trainer is not None and hasattr(trainer, "peft_model") else model
        del trainer
        free_device(ctx.device)
    first, per_step, times = timed_marks(marks, t_loaded[0])
    loaded = next(e for e in events if e["event"] == "model_loaded")
    steps = [e for e in events if e["event"] == "step"]
    losses = [e["loss"] for e in steps]
    tokens = 3 * p.batch * p.seq
    flops = tokens * useful_flops_per_token("train", layer_params=layer_params(base), layers=p.keep, q_dim=q_dim(p.shape),
                                            seq=p.seq, lora_params=loaded["trainableParams"])
    m = {"ok": True, "seconds": round(seconds, 3), **mem.fields, "steps": len(steps), "miniBatchSize": mini,
         "tokensPerStep": tokens, "firstStepSeconds": first, "stepSeconds": per_step, "stepTimes": times,
         "tokensPerSecond": tokens / per_step if per_step else None, "usefulFlopsPerStep": flops,
         "mfu": flops / per_step / ctx.peak if per_step and ctx.peak else None, "losses": losses,
         "finalLoss": result.get("finalLoss", losses[-1] if losses else None), "trainableParams": loaded["trainableParams"],
         "totalParams": loaded["totalParams"], "numLayers": loaded["numLayers"], "gradientCheckpointing": loaded["gradientCheckpointing"],
         "precision": loaded["precision"], "stepEventGpuMemoryBytes": steps[-1].get("gpuMemoryBytes") if steps else None}
    problems = []
    if result.get("cancelled"):
        m["stoppedEarly"] = f"the time budget ran out after step {len(steps)} of {p.steps}"
        if stop.signum is None or len(steps) < 3:
            problems.append(f"cancelled after {len(steps)} steps")
    elif len(steps) != p.steps:
        problems.append(f"{len(steps)} of {p.steps} steps ran")
    if not all(finite(x) for x in losses):
        problems.append(f"non-finite loss {losses}")
    if loaded["numLayers"] != p.keep or not loaded["gradientCheckpointing"] or loaded["precision"] != "bf16":
        problems.append(f"trainer set up {loaded['numLayers']} layers, checkpointing {loaded['gradientCheckpointing']}, {loaded['precision']}")
    m["plan"] = compare(ctx, "train", {"batchSize": p.batch, "maxLength": p.seq, "miniBatchSize": mini,
                                       "gradientCheckpointing": True, "precision": "bf16"}, m)
    if problems:
        m.update(ok=False, error="; ".join(problems))
    return m, base


def train_args(ctx: Ctx, run_dir: Path, steps: int, every: int) -> list[str]:
    p = ctx.profile
    return ["--run-dir", str(run_dir), "--model", str(ctx.small_dir), "--data", str(ctx.small_data), "--keep", str(p.small["num_hidden_layers"] - 2),
            "--steps", str(steps), "--batch-size", str(p.small_batch), "--max-length", str(p.small_seq), "--warmup-steps", "1",
            "--checkpoint-every", str(every), "--no-merge", "--device", "cuda" if ctx.device.startswith("cuda") else "cpu",
            "--heartbeat-seconds", "1"]


def case_torchrun(ctx: Ctx) -> dict:
    """The real train verb under torchrun (one process), and a process-group probe under the same launcher."""
    if ctx.small_dir is None:
        raise RuntimeError("the small model was not saved (bf16_agreement failed before saving it)")
    backend = "nccl" if ctx.device.startswith("cuda") else "gloo"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    run_dir = ctx.tmp / "torchrun-run"
    r = run_cmd(ctx, [*launcher, "-m", "l3prune", "train", *train_args(ctx, run_dir, 3, 2)], timeout=240)
    run, events, problem = read_run(run_dir)
    steps = [e for e in events if e.get("event") == "step"]
    loaded = next((e for e in events if e.get("event") == "model_loaded"), {})
    final = next((e for e in events if e.get("event") == "train_finished"), {})
    probe_r = run_cmd(ctx, [*launcher, str(Path(__file__).resolve()), "--_child", "dist-probe", backend], timeout=180)
    probe = None
    for line in probe_r["stdout"].splitlines():
        if line.startswith("{"):
            try:
                probe = json.loads(line)
            except ValueError:
                pass
    m = {"ok": True, "rc": r["rc"], "seconds": r["seconds"], "status": (run or {}).get("status"), "steps": len(steps),
         "losses": [e.get("loss") for e in steps], "finalLoss": final.get("finalLoss"), "worldSize": loaded.get("worldSize"),
         "device": loaded.get("device"), "precision": loaded.get("precision"), "backend": backend,
         "note": "a one-process launch is a world of one: the worker starts no process group (distributed.env_world); the probe below does",
         "probe": probe, "probeRc": probe_r["rc"], "runFolder": keep_run(ctx, run_dir, "torchrun") if run_dir.exists() else None}
    ctx.uninterrupted = m["losses"] if len(steps) == 3 else None
    problems = []
    if r["rc"] != 0:
        problems.append(f"torchrun train exited {r['rc']}: {tail(r['stderr'], 800)}")
    if problem:
        problems.append(f"run folder: {problem}")
    if run and run.get("status") != "succeeded":
        problems.append(f"run.json status {run.get('status')}")
    if len(steps) != 3 or not all(finite(x) for x in m["losses"]) or not finite(m["finalLoss"]):
        problems.append(f"expected 3 steps with finite losses, got {m['losses']} (final {m['finalLoss']})")
    if probe_r["rc"] != 0 or not probe or not probe.get("ok"):
        problems.append(f"process-group probe ({backend}) failed, exit {probe_r['rc']}: {tail(probe_r['stderr'], 800)}")
        m["probeStderr"] = tail(probe_r["stderr"])
    if problems:
        m.update(ok=False, error="; ".join(problems), stderr=tail(r["stderr"]))
    return m


def _check_oom_run(run_dir: Path, r: dict) -> tuple[dict, list[str]]:
    run, events, problem = read_run(run_dir)
    err = (run or {}).get("error") or {}
    lines = [l for l in r["stderr"].splitlines() if l.strip()]
    got = {"rc": r["rc"], "seconds": r["seconds"], "stderr": tail(r["stderr"], 600), "runJsonParses": problem is None,
           "status": (run or {}).get("status"), "errorKind": err.get("kind"), "errorMessage": err.get("message"),
           "sentence": lines[-1] if lines else None}
    problems = []
    if problem:
        problems.append(f"run folder does not parse: {problem}")
    if r["rc"] != 2:
        problems.append(f"exit code {r['rc']}, not 2")
    if got["status"] != "failed" or got["errorKind"] != "resource" or got["errorMessage"] != oom_sentence():
        problems.append(f"run.json: status {got['status']}, error {err}")
    if lines != [f"l3prune: {oom_sentence()}"]:
        problems.append(f"stderr is not the one sentence: {tail(r['stderr'], 400)!r}")
    return got, problems


def case_oom(ctx: Ctx) -> dict:
    if ctx.small_dir is None:
        raise RuntimeError("the small model was not saved (bf16_agreement failed before saving it)")
    problems: list[str] = []
    # (injected) step 1 and its checkpoint, then the allocator is asked for more than the device holds.
    run_dir = ctx.tmp / "oom-injected"
    env = {**worker_env(ctx), "GPU_CHECK_OOM_AFTER_STEP": "1"}
    r = run_cmd(ctx, [sys.executable, str(Path(__file__).resolve()), "--_child", "oom-train", *train_args(ctx, run_dir, 3, 1)], timeout=240, env=env)
    injected, pr = _check_oom_run(run_dir, r)
    problems += [f"injected: {x}" for x in pr]
    cks = sorted(p.name for p in (run_dir / "checkpoints").iterdir()) if (run_dir / "checkpoints").is_dir() else []
    injected["checkpoints"] = cks
    injected["method"] = "CUDA allocator asked for more than the device's memory" if ctx.device.startswith("cuda") else "torch.OutOfMemoryError raised (CPU)"
    if "step-00000001" not in cks:
        problems.append(f"injected: no step-1 checkpoint to resume from ({cks})")
    injected["runFolder"] = keep_run(ctx, run_dir, "oom-injected")
    # ... and the run resumes from it and finishes (an unmodified process).
    rr = run_cmd(ctx, [sys.executable, "-m", "l3prune", "train", "--run-dir", str(run_dir), "--resume"], timeout=240)
    run, events, problem = read_run(run_dir)
    resumed = [e for e in events if e.get("event") == "resumed"]
    after = [e for e in events if e.get("event") == "step"]
    injected["resume"] = {"rc": rr["rc"], "seconds": rr["seconds"], "status": (run or {}).get("status"),
                          "resumedFromStep": resumed[-1].get("step") if resumed else None,
                          "steps": [e.get("step") for e in after], "losses": [e.get("loss") for e in after],
                          "stderr": tail(rr["stderr"], 600)}
    keep_run(ctx, run_dir, "oom-injected-resumed")
    if rr["rc"] != 0 or problem or (run or {}).get("status") != "succeeded" or injected["resume"]["resumedFromStep"] != 1:
        problems.append(f"injected: --resume did not finish the run from step 1 (exit {rr['rc']}, {(run or {}).get('status')}, {tail(rr['stderr'], 400)})")
    elif [e.get("step") for e in after][-2:] != [2, 3] or not all(finite(e.get("loss")) for e in after):
        problems.append(f"injected: resumed steps {injected['resume']['steps']} losses {injected['resume']['losses']}")
    # The same spec as the torchrun case (only checkpointEvery differs): the resumed curve must be that run's.
    if ctx.uninterrupted is not None and len(after) == 3 and all(finite(e.get("loss")) for e in after):
        diff = max(abs(e["loss"] - u) for e, u in zip(after, ctx.uninterrupted))
        injected["resume"]["uninterruptedLosses"] = ctx.uninterrupted
        injected["resume"]["maxAbsDiffToUninterrupted"] = diff
    m = {"ok": True, "injected": injected, "genuine": None}
    # (genuine, CUDA only) an unmodified run whose activations do not fit: no checkpoint, --resume accepted.
    if ctx.device.startswith("cuda") and ctx.profile.wide is not None:
        m["genuine"] = genuine_oom(ctx, problems)
    else:
        m["genuineSkipped"] = "CUDA only: no allocator fails deterministically on a CPU"
    if problems:
        m.update(ok=False, error="; ".join(problems))
    return m


def genuine_oom(ctx: Ctx, problems: list[str]) -> dict:
    import torch

    p = ctx.profile
    shape = p.wide
    d = ctx.tmp / "wide-model"
    model = build_model(shape, ctx.device, torch.bfloat16, seed=4)
    model.save_pretrained(str(d), safe_serialization=True)
    word_tokenizer(shape["vocab_size"]).save_pretrained(str(d))
    del model
    free_device(ctx.device)
    data = write_triples(ctx.tmp / "wide-triples.jsonl", 64, p.wide_seq, shape["vocab_size"], seed=5)
    run_dir = ctx.tmp / "oom-genuine"
    args = ["--run-dir", str(run_dir), "--model", str(d), "--data", str(data), "--keep", str(shape["num_hidden_layers"]),
            "--steps", "2", "--batch-size", "64", "--max-length", str(p.wide_seq), "--gradient-checkpointing", "false",
            "--no-merge", "--device", ctx.device]
    r = run_cmd(ctx, [sys.executable, "-m", "l3prune", "train", *args], timeout=240)
    got, pr = _check_oom_run(run_dir, r)
    problems += [f"genuine: {x}" for x in pr]
    got["recipe"] = {"model": {k: shape[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")},
                     "batchSize": 64, "maxLength": p.wide_seq, "gradientCheckpointing": False}
    got["runFolder"] = keep_run(ctx, run_dir, "oom-genuine")
    # --resume is accepted (the run is failed, not finished): it restarts from step 0, and runs out of memory again.
    rr = run_cmd(ctx, [sys.executable, "-m", "l3prune", "train", "--run-dir", str(run_dir), "--resume"], timeout=240)
    run, events, problem = read_run(run_dir)
    resumed = [e for e in events if e.get("event") == "resumed"]
    again, pr2 = _check_oom_run(run_dir, rr)
    got["resume"] = {**again, "resumedEvent": resumed[-1] if resumed else None}
    if not resumed:
        problems.append(f"genuine: --resume was refused: {tail(rr['stderr'], 400)}")
    problems += [f"genuine resume: {x}" for x in pr2]
    keep_run(ctx, run_dir, "oom-genuine-resumed")
    return got


# ---------------------------------------------------------------------------------------------------------------
# children: run under a launcher or with a hook, then exit
def child(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    if kind == "dist-probe":
        import torch
        import torch.distributed as dist

        backend = rest[0]
        rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
        device = f"cuda:{local}" if backend == "nccl" else "cpu"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        t = torch.full((4,), float(rank + 1), device=device)
        dist.all_reduce(t)
        parts = [torch.empty(4, device=device) for _ in range(world)]
        dist.all_gather(parts, torch.arange(4.0, device=device) + rank)
        dist.barrier()
        want = float(sum(range(1, world + 1)))
        ok = bool(torch.all(t == want)) and all(bool(torch.all(p == torch.arange(4.0, device=device) + i)) for i, p in enumerate(parts))
        print(json.dumps({"ok": ok, "backend": dist.get_backend(), "worldSize": world, "allReduce": t.tolist()}), flush=True)
        dist.destroy_process_group()
        return 0 if ok else 1
    if kind == "oom-train":
        import torch

        from l3prune.__main__ import main
        from l3prune.train import loop

        after = int(os.environ["GPU_CHECK_OOM_AFTER_STEP"])
        original = loop.Trainer.train_step

        def train_step(self, batch):
            if self.step == after:
                if self.device.startswith("cuda"):
                    total = torch.cuda.get_device_properties(self.device).total_memory
                    torch.empty(2 * total, dtype=torch.uint8, device=self.device)  # raises torch.OutOfMemoryError
                raise torch.OutOfMemoryError(f"gpu_check: out of memory injected at step {after + 1}")
            return original(self, batch)

        loop.Trainer.train_step = train_step
        return main(["train", *rest])
    raise SystemExit(f"unknown child {kind}")


# ---------------------------------------------------------------------------------------------------------------
# the header-only model for the planner
def write_shape_model(d: Path, shape: dict) -> Path:
    """config.json and one safetensors file of a LlamaForCausalLM of this shape in bf16: the header is real, the data a
    hole (a sparse file), which is all `l3prune plan` reads."""
    d.mkdir(parents=True, exist_ok=True)
    h, f, v = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    hd = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    tensors = [("model.embed_tokens.weight", [v, h])]
    for i in range(shape["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        tensors += [(pre + "input_layernorm.weight", [h]), (pre + "post_attention_layernorm.weight", [h]),
                    (pre + "self_attn.q_proj.weight", [h, h]), (pre + "self_attn.k_proj.weight", [kv, h]),
                    (pre + "self_attn.v_proj.weight", [kv, h]), (pre + "self_attn.o_proj.weight", [h, h]),
                    (pre + "mlp.gate_proj.weight", [f, h]), (pre + "mlp.up_proj.weight", [f, h]), (pre + "mlp.down_proj.weight", [h, f])]
    tensors += [("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, s in tensors:
        n = 2 * math.prod(s)
        header[name] = {"dtype": "BF16", "shape": s, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(d / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + off)
    cfg = llama_config(shape).to_dict()
    cfg.update(architectures=["LlamaForCausalLM"], torch_dtype="bfloat16")
    (d / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return d


# ---------------------------------------------------------------------------------------------------------------
def summary(res: dict) -> str:
    def gib(b):
        if not finite(b):
            return "-"
        return f"{b / 2**30:.1f} GiB" if abs(b) >= 2**30 else f"{b / 2**20:.1f} MiB"

    lines = [f"L3Prune GPU check ({res['mode']}, {res['environment']['device']}"
             f"{', ' + res['environment']['gpuName'] if res['environment'].get('gpuName') else ''}): "
             f"{'all cases ok' if res['ok'] else 'SOME CASES FAILED'} in {res['seconds']:.0f} s"]
    for name, c in res["cases"].items():
        bits = [f"{name:16s} {'ok  ' if c.get('ok') else 'FAIL'}"]
        if "peakMemoryBytes" in c:
            bits.append(f"peak {gib(c['peakMemoryBytes'])}" if c.get("peakMemoryBytes") is not None
                        else f"rss +{gib(c.get('rssDeltaBytes'))}")
        if finite(c.get("tokensPerSecond")):
            bits.append(f"{c['tokensPerSecond']:,.0f} tok/s")
        if finite(c.get("stepSeconds")):
            bits.append(f"{c['stepSeconds']:.3f} s/step")
        if finite(c.get("mfu")):
            bits.append(f"MFU {100 * c['mfu']:.1f} %")
        plan = c.get("plan")
        if plan:
            bits.append(f"plan peak {gib(plan['predictedPeakBytes'])}"
                        + (f" (measured/plan {plan['peakRatio']:.2f})" if finite(plan.get("peakRatio")) else ""))
        if name == "bf16_agreement" and "bf16Weights" in c:
            bits.append(f"min cos {c['bf16Weights']['minCosine']:.5f} (weights) {c['bf16Autocast']['minCosine']:.5f} (autocast)")
        if name == "torchrun":
            bits.append(f"final loss {c.get('finalLoss')}, probe {((c.get('probe') or {}).get('backend'))}")
        if name == "oom" and c.get("injected"):
            bits.append(f"injected: {c['injected'].get('status')}, resumed to {(c['injected'].get('resume') or {}).get('status')}")
            if c.get("genuine"):
                bits.append(f"genuine: {c['genuine'].get('status')}")
        if c.get("error"):
            bits.append(f"error: {c['error'][:300]}")
        lines.append("  ".join(bits))
    for p in res["plans"]:
        if not p.get("usedBy"):
            lines.append(f"plan {p['file']}: matched no case ({p.get('error') or 'model or recipe differs'})")
    return "\n".join(lines)


def run_case(ctx: Ctx, cases: dict, name: str, fn, *args):
    if now() > ctx.deadline:
        cases[name] = {"ok": False, "error": "skipped: the time budget (--budget-seconds) ran out"}
        return None
    t0 = now()
    try:
        got = fn(ctx, *args)
    except Exception as e:  # noqa: BLE001 - one case failing must not stop the others
        cases[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:],
                       "seconds": round(now() - t0, 3)}
        free_device(ctx.device)
        return None
    extra = None
    if isinstance(got, tuple):
        got, extra = got
    got.setdefault("seconds", round(now() - t0, 3))
    cases[name] = got
    print(f"  {name}: {'ok' if got.get('ok') else 'FAILED'} ({now() - t0:.1f} s)", flush=True)
    return extra if extra is not None else True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        return child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (the test's mode, about a minute)")
    ap.add_argument("--out", help="results folder (default: $OUT, else ./gpu-check-out)")
    ap.add_argument("--plan", action="append", type=Path, help="JSON of `l3prune plan MODEL --keep 25 --gpu H200 --json` (repeatable)")
    ap.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available; cpu with --tiny)")
    ap.add_argument("--steps", type=int, help="training steps per case (default 10; 6 with --tiny)")
    ap.add_argument("--analyze-batches", type=int, help="analyze batches of 64 triples (default 3; 2 with --tiny)")
    ap.add_argument("--peak-flops", type=float, help="the device's peak FLOP/s for MFU (default: the data-sheet bf16 peak)")
    ap.add_argument("--budget-seconds", type=float, default=420, help="skip the cases not started by then (default 420)")
    ap.add_argument("--tmp-dir", help="where the temp folder goes (default: the system's)")
    ap.add_argument("--keep-tmp", action="store_true", help="leave the temp folder (saved models, run folders) in place")
    ap.add_argument("--write-shape-model", type=Path, metavar="DIR",
                    help="only write a header-only Llama-3-8B-shaped model folder (the tiny one with --tiny) for `l3prune plan`, then exit")
    a = ap.parse_args(argv)
    if a.write_shape_model:
        print(write_shape_model(a.write_shape_model, TINY if a.tiny else LLAMA3_8B))
        return 0

    import torch

    from l3prune.encoder import prune
    from l3prune.verbs import quiet_libraries

    quiet_libraries()
    t_start = now()
    ctx = make_ctx(a)
    p = ctx.profile
    print(f"gpu_check ({p.name}) on {ctx.device}; temp folder {ctx.tmp}", flush=True)
    cases: dict = {}
    try:
        # The small model's cases first, while the GPU is free for their processes; the big model's last, where the
        # time budget can cut a training case short after a step.
        run_case(ctx, cases, "bf16_agreement", case_bf16_agreement)
        run_case(ctx, cases, "torchrun", case_torchrun)
        run_case(ctx, cases, "oom", case_oom)
        ctx.tok = word_tokenizer(p.shape["vocab_size"])
        model = None
        if now() <= ctx.deadline:
            try:
                t0 = now()
                model = build_model(p.shape, ctx.device, torch.bfloat16, seed=0)
                sync(ctx.device)
                build_seconds = now() - t0
            except Exception as e:  # noqa: BLE001
                cases["analyze"] = {"ok": False, "error": f"building the {p.name} model failed: {type(e).__name__}: {e}",
                                    "traceback": traceback.format_exc()[-4000:]}
        if model is not None:
            run_case(ctx, cases, "analyze", case_analyze, model)
            if "analyze" in cases:
                cases["analyze"]["buildSeconds"] = round(build_seconds, 3)
            # The worker's own prune, before the training cases measure anything: only the kept layers stay.
            prune(model, p.keep)
            free_device(ctx.device)
            data = write_triples(ctx.tmp / "train-triples.jsonl", 2 * p.batch, p.seq, p.shape["vocab_size"], seed=6)
            got = run_case(ctx, cases, "train", case_train, model, None, data)
            if got is not None and got is not True:
                model = got
            got = run_case(ctx, cases, "train_gradcache", case_train, model, p.mini, data)
            del model, got
            free_device(ctx.device)
        else:
            for name in ("train", "train_gradcache"):
                cases.setdefault(name, {"ok": False, "error": "no model to train (see analyze)"})
        cases.setdefault("analyze", {"ok": False, "error": "not run"})
    finally:
        if not a.keep_tmp:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    order = ["bf16_agreement", "analyze", "train", "train_gradcache", "torchrun", "oom"]
    cases = {k: cases[k] for k in order if k in cases}
    res = {
        "schema": SCHEMA,
        "mode": p.name,
        "ok": all(c.get("ok") for c in cases.values()) and len(cases) == len(order),
        "seconds": round(now() - t_start, 3),
        "environment": environment(ctx),
        "profile": {k: v for k, v in asdict(p).items()},
        "flops": {"train": "4*P_kept + 6*n*T*q + 6*P_lora per token", "analyze": "2*P_all + 2*N*T*q per token",
                  "peakFlopsPerSecond": ctx.peak, "peakSource": ctx.peak_source},
        "bf16MinCosine": BF16_MIN_COSINE,
        "oomSentence": oom_sentence(),
        "cases": cases,
        "plans": [{k: v for k, v in pl.items() if k != "json"} for pl in ctx.plans],
    }
    res = clean(res)
    (ctx.out / "gpu-check.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    text = summary(res)
    (ctx.out / "summary.txt").write_text(text + "\n", encoding="utf-8")
    print(text, flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
