"""The `export-onnx` verb: the encoder (pruned model, LoRA merged, pooling, L2 norm) as one ONNX graph.

    python -m l3prune export-onnx --run-dir DIR --model MODEL_DIR [--keep N] [--adapter ADAPTER_DIR]
        [--from-run TRAIN_RUN_DIR] [--out OUT_DIR] [--pooling weighted_mean|mean|last_token] [--max-length 512]
        [--opset 17] [--precision fp32|fp16|int8] [--parity-data FILE.jsonl]

The graph takes input_ids, attention_mask and embed_mask (int64, [batch, sequence], both axes dynamic) and returns
embedding (float32, [batch, hidden], unit length), and pooled, the same vector before the L2 norm (what evaluate scores, as
it scores torch's raw pooled output). Everything between the tokenizer and the vector is inside it:
position ids (cumsum of the mask, as Encoder.model_inputs computes them, so left and right padding give the same
vector), the transformer, the trainer's pooling over the embed mask (encoder.pool) and the L2 normalisation. A
JavaScript client therefore only has to run the text pipeline exactly as the worker does (textpipe.py: chat user
turn, instruction prefix, left padding, embed mask = the last k real positions with k the text's own token count);
l3prune-encoder.json's textPipeline and tokenizer fields say how, and parity-examples.json holds the ids and
embed masks the worker computed.

Exporter: torch.onnx.export(dynamo=False), the TorchScript tracer. It still ships with torch 2.13, needs only the
`onnx` package and traces transformers' decoders with dynamic batch and length; the dynamo exporter would add
onnxscript and a torch.export pass that transformers' mask code does not always survive. Tracing records one path
through Python control flow, so the example input is padded (the masked path) and longer than one token, and
attention runs "eager" while tracing (sdpa has a shape-dependent is_causal shortcut). The torch reference for the
parity check is computed before that switch, with the attention the worker itself uses.

--precision fp16 (for GPU serving) halves the bytes: after the float32 torch reference is computed, the model's
parameters become float16 and the graph is traced from that half-precision model, so it holds what transformers runs
in half precision, float32 parts included (the norms' variance, softmax, the rotary angles; its float buffers stay
float32 too, as from_pretrained(dtype=float16) leaves them). Converting an fp32 graph with a float16 converter
would instead put those parts in float16 too, where the square in a norm overflows (65504) as soon as a hidden
state passes 256, which a 7B model's large activations do. The pooling and the
normalisation are done in float32 inside the graph, so the inputs and the float32 output are the same as an fp32
export's; the parity check compares with the float32 torch reference, at MIN_COSINE["fp16"]. onnxruntime's CPU provider
runs such a graph by casting around the operators it has no float16 kernel for, so the check there measures the
rounding of the weights and the graph itself; a GPU provider does the matmuls in float16 as torch does.

--precision int8 (for CPU serving) quantizes the traced float32 graph with onnxruntime's dynamic quantization
(onnxruntime.quantization.quantize_dynamic): the weights of the MatMuls with a constant weight become int8, one scale
per output channel (per_channel: a channel with large weights does not coarsen the others), and each activation
feeding them is quantized to uint8 at run time (DynamicQuantizeLinear, one scale per tensor), so the CPU runs
MatMulInteger. The MLP's down projection (the MatMul whose weight has intermediate_size rows) is left in float32: its
input, the gated activation, carries a few outlier channels, and one scale per tensor rounds every other channel
away (measured on SmolLM2-135M cut to 15 layers: min/mean parity cosine 0.966/0.981 with it quantized, 0.998/0.999
without; Dettmers et al. 2022, LLM.int8(), describe these outliers). Embeddings (a Gather), norms and attention
scores stay float32; the inputs and the float32 outputs are the same as an fp32 export's. A graph whose weights were
over protobuf's limit is quantized with use_external_data_format and keeps one model.onnx.data. Thresholds:
MIN_COSINE and MIN_MEAN_COSINE.

The folder is built in a hidden sibling and renamed into place only after the parity check passed, so OUT_DIR
either holds a complete, verified export or does not exist.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import specs
from .data import DataError, is_text
from .textpipe import INSTRUCTION_FORMAT, Text, as_text
from .encoder import Encoder, ModelError, _accepts, check_model_dir, model_loaded_fields, pool
from .events import now_iso
from .fileio import fsync_tree, iter_jsonl, write_json_atomic
from .variant import load_variant, resolve_source
from .verbs import Advice, Job, Outcome, Verb, add_pause_after_load, main_for

FORMAT = 1
PARITY_BATCH = 8
PARITY_SENTENCES = 16
# protobuf cannot serialise a message of 2 GiB or more; above this the weights go to one model.onnx.data file.
EXTERNAL_DATA_BYTES = 1_800_000_000
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
MANIFEST = "l3prune-encoder.json"
EXAMPLES = "parity-examples.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QUERY_TEMPLATE = INSTRUCTION_FORMAT + "{query}"  # textpipe: a query with an instruction, before any chat wrapper
INPUTS = ["input_ids", "attention_mask", "embed_mask"]
OUTPUTS = ["embedding", "pooled"]  # unit length, and the same before the L2 norm
# Parity texts with an instruction (queries as the trainer sees them); the text pipeline pools only their own tokens.
INSTRUCTED = [
    ("Given a web search query, retrieve relevant passages that answer the query", "Where is the nearest train station?"),
    ("Retrieve semantically similar text.", "A man is playing a guitar on stage."),
    ("Given a question, retrieve questions that are semantically equivalent", "Is this vaccine safe for children under five?"),
    ("Classify the sentiment of the review", "I can't believe it's already Friday 🎉"),
]
TEXT_FIELDS = ("sentence1", "sentence2", "query", "positive", "negative", "text", "anchor")

# Real sentences of very different lengths (1 to ~60 tokens), with accents, CJK and an emoji, so the parity
# check also exercises byte-level pieces and padding-heavy batches.
BUILTIN_SENTENCES = [
    "Hello.",
    "A man is playing a guitar on stage.",
    "The cat sleeps on the warm sofa while the rain keeps falling outside.",
    "Prices rose 3.2% in March, the fastest pace since 2008.",
    "Where is the nearest train station?",
    "Müller ordered a café au lait and a croissant at the naïve little bistro near the Rhône.",
    "东京是日本的首都。",
    "The committee postponed its decision on the new bridge until engineers could review the soil samples taken "
    "along the river bank last autumn.",
    "I can't believe it's already Friday 🎉",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "OK",
    "Two kids run across the park, chasing a red kite that the wind keeps pulling towards the old oak trees.",
    "def add(a, b):\n    return a + b",
    "The defendant, who had pleaded not guilty to all four charges, was acquitted on Tuesday after a jury "
    "deliberated for less than three hours, ending a trial that had lasted almost six weeks and drawn national "
    "attention to the case.",
    "Is this vaccine safe for children under five?",
    "Rain falls over the quiet town.",
    "Quantum computers exploit superposition and entanglement to solve certain problems faster than classical machines.",
    "She said: \"Don't forget the keys!\"",
]


# The parity thresholds when the spec gives none (minCosine null). fp32: the graph computes what torch computes, up
# to the order of float additions (measured 1 - cos ~ 1e-13). fp16: rounding every weight to float16 (unit roundoff
# 2^-11 ~ 4.9e-4) perturbs the embedding by a relative error e of order 1e-3 after many layers, and a cosine falls by
# about e^2 / 2: 1e-7 to 1e-5 (measured: 1 - cos = 2e-7 for SmolLM2-135M cut to 2 layers, 7e-7 for all 30). A broken
# graph falls much lower (measured on SmolLM2: padding left unmasked, min cos 0.66; pooling over the instruction and
# chat prefix too, 0.75; an overflow gives NaN). 0.999 sits between: 1e-3 from 1 is two orders of magnitude above
# the rounding, where fp32's 0.9999 would leave one for a 7-8B model's deeper stack and larger activations.
# int8: the rounding is no longer small. An 8-bit activation scale per tensor leaves ~2^-8 relative error on every
# matmul input, so 1 - cos lands near 1e-3 instead of 1e-6 (measured, SmolLM2-135M, down projections in float32:
# min/mean 0.9983/0.9990 at 15 of 30 layers); quantizing the down projections too gives 0.966/0.981, the damage
# the outlier channels do. A mean of 0.99 and a minimum of 0.98 pass the first and refuse the second, and leave
# room for a deeper 7-8B stack; a broken graph (the 0.66-0.75 above) fails by far. The mean is checked too
# because one hard sentence may sit near the minimum while a graph that is off on every sentence moves the mean.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}
# The mean's threshold: this by precision (fp32 and fp16: the minimum's, which the mean cannot be below), or the
# spec's minCosine when that is lower than the default minimum (a user who loosens the check loosens both).
MIN_MEAN_COSINE = {"int8": 0.99}
# The dtype the model is traced in; int8 is quantized from the float32 graph afterwards.
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.float32}
QUANTIZED_OPS = ["MatMul"]


class ParityError(ValueError):
    """ONNX Runtime's embeddings differ from torch's more than the threshold allows."""


# ---------------------------------------------------------------------------------------------------------------
# spec
ExportSpec = specs.spec_class("export-onnx", "ExportSpec", __name__)

# --min-cosine above 1 makes every export fail: a test hook, not a user's choice.
SPEC_FLAGS = {"minCosine": {"help": argparse.SUPPRESS}}


def _derive(run_dir: Path, given: dict) -> dict:
    """The variant (a train run's model, adapter and cut), its training's pooling, maxLength and trustRemoteCode
    unless given, and the output folder."""
    source = resolve_source(given.get("model"), given.get("adapter"), given.get("keep"), given.get("fromRun"), purpose="export")
    out = {"model": source.model, "keep": source.keep, "adapter": source.adapter}
    out.update({k: v for k, v in source.trained_with.items() if k not in given and v is not None})
    if given.get("minCosine") is None:
        out["minCosine"] = MIN_COSINE[given.get("precision") or specs.defaults("export-onnx")["precision"]]
    if given.get("out") is None:
        out["out"] = str(run_dir / "onnx")
    return out


def spec_from_args(args: argparse.Namespace, _world=None) -> ExportSpec:
    """Resolve flags, the train run and defaults into the spec stored in run.json (paths absolute); an output
    folder that is in use or would hold the run folder, and a parity file that is not there, are refused here."""
    run_dir = Path(specs.absolute(args.run_dir))
    values = specs.resolve("export-onnx", specs.gather("export-onnx", args), derive=lambda g: _derive(run_dir, g),
                           paths=("model", "out", "adapter", "fromRun", "parityData"))
    out = Path(values["out"])
    if out == run_dir or out in run_dir.parents:
        raise ValueError(f"--out {out} would hold the run folder {run_dir}; choose a new folder for the export")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output folder {out} already exists and is not empty; choose a new --out")
    if values["parityData"] and not Path(values["parityData"]).is_file():
        raise ValueError(f"parity data file {values['parityData']} does not exist; pass a JSONL file with --parity-data or leave it out")
    return ExportSpec(**values)


# ---------------------------------------------------------------------------------------------------------------
# the encoder as one module
class ExportableEncoder(nn.Module):
    """input_ids, attention_mask, embed_mask -> unit-length embedding, through the worker's own Encoder code;
    pooling is over embed_mask (the text's own tokens, textpipe.py), the attention over attention_mask."""

    def __init__(self, enc: Encoder, pooling: str):
        super().__init__()
        self.model = enc.model
        self.pooling = pooling
        self._enc = enc
        self._use_cache = _accepts(enc.model, "use_cache")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, embed_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self._enc.model_inputs({"input_ids": input_ids, "attention_mask": attention_mask})
        out = self.model(**inputs, use_cache=False) if self._use_cache else self.model(**inputs)
        hidden = out.last_hidden_state
        # A half-precision model's states are pooled in float32: a weighted sum over 512 tokens exceeds float16's
        # range (65504), and the output stays float32 for every client. An fp32 export traces no cast here.
        if hidden.dtype != torch.float32:
            hidden = hidden.float()
        pooled = pool(hidden, embed_mask, self.pooling)
        return F.normalize(pooled, p=2, dim=-1), pooled


def to_precision(model: nn.Module, precision: str) -> None:
    """Parameters to the export's dtype, in place (tied weights stay tied); buffers keep theirs, as
    from_pretrained(dtype=...) leaves them (a rotary inv_freq stays float32, so positions keep their angles)."""
    dtype = PRECISIONS[precision]
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


def reference_embeddings(enc: Encoder, texts: list, pooling: str) -> torch.Tensor:
    """What the worker computes for these texts (Encoder.encode), L2-normalised as the graph does."""
    return F.normalize(enc.encode(texts, pooling).float(), p=2, dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# model: load, prune, merge
# ---------------------------------------------------------------------------------------------------------------
# parity sentences and the tokenizer contract
def parity_extras(tok, max_length: int) -> list[Text]:
    """Texts every parity check adds: queries with instructions (through the chat wrapper when the model has one),
    and texts longer than max_length, bare and with an instruction, so truncation is checked too."""
    base = BUILTIN_SENTENCES[13]
    long_text = base
    while len(tok(long_text, add_special_tokens=False)["input_ids"]) <= max_length + 8:
        long_text += " " + base
    return [Text(q, i) for i, q in INSTRUCTED] + [Text(long_text), Text(long_text, INSTRUCTED[0][0])]


def parity_texts(path: str | None, n: int = PARITY_SENTENCES) -> list[str]:
    """n texts spanning the shortest to the longest of the file (or the built-in list), short and long interleaved
    so every padded batch mixes lengths."""
    if path is None:
        pool_ = list(dict.fromkeys(BUILTIN_SENTENCES))
    else:
        seen: dict[str, None] = {}
        for _, row in iter_jsonl(path, DataError):
            if isinstance(row, dict):
                for k in TEXT_FIELDS:
                    v = row.get(k)
                    # An unpaired surrogate escape is no text a tokenizer takes.
                    if isinstance(v, str) and v.strip() and is_text(v):
                        seen.setdefault(v, None)
            if len(seen) >= 4000:
                break
        pool_ = list(seen)
        if len(pool_) < n:
            raise DataError(
                f"parity data {path} has {len(pool_)} distinct texts in fields {', '.join(TEXT_FIELDS)}; at least {n} are needed"
            )
    by_len = sorted(pool_, key=lambda t: (len(t), t))
    m = len(by_len)
    picked = [by_len[round(i * (m - 1) / (n - 1))] for i in range(n)] if m > n else by_len
    picked = list(dict.fromkeys(picked))
    lo, hi, mixed = 0, len(picked) - 1, []
    while lo <= hi:
        mixed.append(picked[lo])
        if lo != hi:
            mixed.append(picked[hi])
        lo, hi = lo + 1, hi - 1
    return mixed


def special_tokens_added(tok) -> tuple[list[int], list[int]]:
    """Ids the worker's tokenizer call puts before and after a text's own tokens (add_special_tokens=True)."""
    probe = "Hello world"
    with_sp = list(tok(probe)["input_ids"])
    plain = list(tok(probe, add_special_tokens=False)["input_ids"])
    for i in range(len(with_sp) - len(plain) + 1):
        if with_sp[i : i + len(plain)] == plain:
            return with_sp[:i], with_sp[i + len(plain) :]
    return [], []


def stage_tokenizer(tok, model_dir: Path, dest: Path) -> list[str]:
    """Copy the tokenizer files the model folder has; write tokenizer.json from the fast tokenizer if it has none."""
    copied = []
    for name in TOKENIZER_FILES:
        src = model_dir / name
        if src.is_file():
            shutil.copyfile(src, dest / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is None:
            raise ModelError(
                f"model folder {model_dir} has no tokenizer.json and its tokenizer is not a fast one; a JavaScript client needs "
                "tokenizer.json (save the tokenizer with a recent transformers)"
            )
        backend.save(str(dest / "tokenizer.json"))
        copied.insert(0, "tokenizer.json")
    return copied


# ---------------------------------------------------------------------------------------------------------------
# export
@contextmanager
def captured_fd2():
    """C++ parts of the exporter write to fd 2 directly; stderr is reserved for the one-sentence error."""
    sys.stderr.flush()
    saved = os.dup(2)
    buf = tempfile.TemporaryFile()
    os.dup2(buf.fileno(), 2)
    try:
        yield buf
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        buf.close()


def trace_example(enc: Encoder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two rows, the second padded: tracing records the masked path, with a query longer than one token; the embed
    mask leaves the first real tokens out of the pooling, as an instruction would be."""
    ids = list(enc.tokenizer("The quick brown fox jumps over the lazy dog near the river.")["input_ids"])[: max(4, min(enc.max_length, 16))]
    if len(ids) < 4:
        ids = (ids * 4)[:4]
    pad = enc.tokenizer.pad_token_id if enc.tokenizer.pad_token_id is not None else 0
    short = ids[:2] + [pad] * (len(ids) - 2)
    input_ids = torch.tensor([ids, short], dtype=torch.long)
    mask = torch.tensor([[1] * len(ids), [1, 1] + [0] * (len(ids) - 2)], dtype=torch.long)
    embed = torch.tensor([[0, 0] + [1] * (len(ids) - 2), [0, 1] + [0] * (len(ids) - 2)], dtype=torch.long)
    return input_ids, mask, embed


def torch_export(enc: Encoder, pooling: str, path: Path, opset: int) -> None:
    wrapper = ExportableEncoder(enc, pooling).eval()
    example = trace_example(enc)
    # The tracer's warnings (Python booleans from shapes, the legacy-exporter notice) are expected: the example
    # input fixes those branches on purpose, and the parity check verifies the result.
    with captured_fd2() as log, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                example,
                str(path),
                dynamo=False,
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUTS}, **{name: {0: "batch"} for name in OUTPUTS}},
                opset_version=opset,
                do_constant_folding=True,
            )
        except Exception as e:
            log.seek(0)
            tail = log.read()[-2000:].decode("utf-8", "replace").strip()
            raise RuntimeError(f"torch.onnx.export failed: {type(e).__name__}: {e}" + (f" (exporter output: {tail})" if tail else "")) from e


def finalize_onnx(raw: Path, dest: Path, hidden: int, meta: dict[str, str], param_bytes: int) -> str | None:
    """Fix the outputs' shape to [batch, hidden], add metadata and write one file, or a graph plus one data file
    when the weights exceed protobuf's 2 GiB (the TorchScript exporter would leave one file per tensor)."""
    import onnx

    m = onnx.load(str(raw), load_external_data=True)
    for out in m.graph.output:
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        dims.add().dim_param = "batch"
        dims.add().dim_value = hidden
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "l3prune export-onnx"
    external = param_bytes > EXTERNAL_DATA_BYTES
    if external:
        onnx.save_model(m, str(dest / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_FILE, size_threshold=1024)
    else:
        onnx.save_model(m, str(dest / MODEL_FILE))
    del m
    # By path, so a graph with external data is checked too.
    onnx.checker.check_model(str(dest / MODEL_FILE))
    return DATA_FILE if external else None


def down_projections(graph, intermediate_size: int | None) -> list[str]:
    """The MatMuls whose constant weight has intermediate_size rows: the MLP's down projection in every layer, whose
    input carries the outlier channels that a per-tensor activation scale cannot hold (module docstring)."""
    if not intermediate_size:
        return []
    rows = {t.name: t.dims[0] for t in graph.initializer if len(t.dims) == 2}
    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) == 2 and rows.get(n.input[1]) == intermediate_size]


def quantize_int8(src: Path, dest: Path, *, external: bool, intermediate_size: int | None) -> dict:
    """src (a checked float32 graph) -> dest/model.onnx with int8 MatMul weights (module docstring); the
    manifest's `quantization` record."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    keep_float = down_projections(graph, intermediate_size)
    candidates = sum(1 for n in graph.node if n.op_type == "MatMul")
    del graph
    quiet = logging.getLogger().level
    # The quantizer logs advice (pre-processing) and may print; stdout carries the events, stderr the one sentence.
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with captured_fd2() as log, redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                quantize_dynamic(str(src), str(dest / MODEL_FILE), op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=keep_float, use_external_data_format=external)
            except Exception as e:
                log.seek(0)
                tail = log.read()[-2000:].decode("utf-8", "replace").strip()
                raise RuntimeError(f"onnxruntime's quantize_dynamic failed: {type(e).__name__}: {e}" + (f" ({tail})" if tail else "")) from e
    finally:
        logging.getLogger().setLevel(quiet)
    onnx.checker.check_model(str(dest / MODEL_FILE))
    quantized = sum(1 for n in onnx.load(str(dest / MODEL_FILE), load_external_data=False).graph.node if n.op_type == "MatMulInteger")
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weightType": "QInt8", "activationType": "QUInt8",
            "perChannel": True, "opTypes": QUANTIZED_OPS, "quantizedNodes": quantized, "floatNodes": candidates - quantized,
            "keptFloat": "the MLP down projections (weights with intermediate_size rows)" if keep_float else None}


def ort_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a.double(), b.double(), dim=-1)


def run_export(spec: ExportSpec, emit: Callable[..., object], *, sleep_after_load: float = 0.0) -> dict:
    import onnx
    import onnxruntime

    t0 = time.monotonic()
    out = Path(spec.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    # mkdtemp makes the folder private; the export is meant to be read by the extension and other tools.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(stage, 0o777 & ~umask)
    try:
        check_model_dir(spec.model)
        enc, info = load_variant(spec.model, spec.keep, spec.adapter, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode)
        enc.set_chat_template(spec.chatTemplate)  # the text pipeline (textpipe.py) as the spec says
        cfg = enc.model.config
        tokenizer_files = stage_tokenizer(enc.tokenizer, Path(spec.model), stage)
        n = enc.num_layers
        emit("model_loaded", **model_loaded_fields(enc.model, num_layers=n, load_seconds=time.monotonic() - t0,
                                                   originalNumLayers=info["originalNumLayers"], device="cpu"))
        if sleep_after_load:
            time.sleep(sleep_after_load)

        texts = [as_text(t) for t in parity_texts(spec.parityData)] + parity_extras(enc.tokenizer, spec.maxLength)
        batches = [texts[i : i + PARITY_BATCH] for i in range(0, len(texts), PARITY_BATCH)]
        steps = 2 * len(batches) + 2
        step = 0

        def progress(stage_name: str, **extra) -> None:
            nonlocal step
            step += 1
            emit("progress", batch=step, batches=steps, stage=stage_name, elapsedSeconds=round(time.monotonic() - t0, 3), **extra)

        # Reference first, with the model exactly as the worker runs it.
        refs, tokenized = [], []
        done = 0
        for b in batches:
            tok = enc.tokenize(b)
            tokenized.append({k: tok[k].numpy() for k in INPUTS})
            refs.append(reference_embeddings(enc, b, spec.pooling))
            done += len(b)
            progress("reference", samplesDone=done, samples=len(texts))
        hidden = int(refs[0].shape[-1])
        pre, post = special_tokens_added(enc.tokenizer)

        if hasattr(enc.model, "set_attn_implementation"):
            try:
                enc.model.set_attn_implementation("eager")
            except Exception:  # noqa: BLE001 - keep the model's attention when it has no eager path
                pass
        # After the float32 reference: fp16 is what the graph computes, never what it is checked against.
        to_precision(enc.model, spec.precision)
        raw_dir = stage / ".raw"
        raw_dir.mkdir()
        param_bytes = sum(p.numel() * p.element_size() for p in enc.model.parameters())
        torch_export(enc, spec.pooling, raw_dir / MODEL_FILE, spec.opset)
        progress("export")
        model_type = str(getattr(cfg, "model_type", "unknown"))
        # The torch weights are no longer needed; a large model should not sit in memory twice.
        enc.model = None
        gc.collect()
        meta = {"l3prune.format": str(FORMAT), "l3prune.pooling": spec.pooling, "l3prune.normalize": "true",
                "l3prune.maxLength": str(spec.maxLength), "l3prune.numLayers": str(n), "l3prune.precision": spec.precision}
        quantization = None
        if spec.precision == "int8":
            # The float32 graph is finalised (and checked) beside the stage, then quantized into it.
            float_dir = stage / ".float"
            float_dir.mkdir()
            external = finalize_onnx(raw_dir / MODEL_FILE, float_dir, hidden, meta, param_bytes)
            shutil.rmtree(raw_dir)
            quantization = quantize_int8(float_dir / MODEL_FILE, stage, external=external is not None,
                                         intermediate_size=getattr(cfg, "intermediate_size", None))
            shutil.rmtree(float_dir)
        else:
            external = finalize_onnx(raw_dir / MODEL_FILE, stage, hidden, meta, param_bytes)
            shutil.rmtree(raw_dir)
        progress("save")

        sess = ort_session(stage / MODEL_FILE)
        cos_all, got_all = [], []
        done = 0
        for b, feed, ref in zip(batches, tokenized, refs):
            got = torch.from_numpy(sess.run(["embedding"], feed)[0])
            if tuple(got.shape) != tuple(ref.shape):
                raise ParityError(f"ONNX Runtime returned shape {tuple(got.shape)} for a batch whose torch embedding is {tuple(ref.shape)}")
            cos_all.append(cosines(got, ref))
            got_all.append(got)
            done += len(b)
            progress("parity", samplesDone=done, samples=len(texts))
        del sess
        cos = torch.cat(cos_all)
        min_cos, mean_cos = float(cos.min()), float(cos.mean())
        threshold = spec.minCosine if spec.minCosine is not None else MIN_COSINE[spec.precision]
        mean_threshold = MIN_MEAN_COSINE.get(spec.precision, threshold) if threshold >= MIN_COSINE[spec.precision] else threshold
        if not (min_cos >= threshold):
            worst = int(cos.argmin())
            raise ParityError(
                f"ONNX parity check failed: min cosine {min_cos:.6f} < {threshold} between ONNX Runtime ({spec.precision}) and float32 torch over "
                f"{len(texts)} sentences (worst: {texts[worst].text[:40]!r}); the graph does not reproduce this model, nothing was written"
                + ("; export fp32 or fp16 instead" if spec.precision == "int8" else "")
            )
        if not (mean_cos >= mean_threshold):
            raise ParityError(
                f"ONNX parity check failed: mean cosine {mean_cos:.6f} < {mean_threshold} between ONNX Runtime ({spec.precision}) and float32 "
                f"torch over {len(texts)} sentences; the graph does not reproduce this model, nothing was written"
                + ("; export fp32 or fp16 instead" if spec.precision == "int8" else "")
            )
        parity = {"minCosine": min_cos, "meanCosine": mean_cos, "sentences": len(texts), "threshold": threshold,
                  "meanThreshold": mean_threshold, "batchSize": PARITY_BATCH, "examplesFile": EXAMPLES}
        tok = enc.tokenizer
        rows = [(row[m.astype(bool)].tolist(), em[m.astype(bool)].tolist()) for feed in tokenized
                for row, m, em in zip(feed["input_ids"], feed["attention_mask"], feed["embed_mask"])]
        write_json_atomic(stage / EXAMPLES, {
            "description": "torch reference of the parity check: each text (and its instruction, or null), the ids the worker's text "
                           "pipeline gives it (no padding), its embed mask over those ids (1: pooled) and the unit-length embedding the "
                           f"worker computes; a client that tokenises and runs the graph correctly gets cosine >= {threshold} to these",
            "pooling": spec.pooling,
            "examples": [
                {"text": t.text, "instruction": t.instruction, "fullText": enc.pipeline.full_text(t), "inputIds": ids,
                 "embedMask": em, "embedding": [float(f"{x:.7g}") for x in e.tolist()]}
                for t, (ids, em), e in zip(texts, rows, torch.cat(refs))
            ],
        })
        manifest = {
            "format": FORMAT,
            "model": MODEL_FILE,
            "externalData": external,
            "pooling": spec.pooling,
            "normalize": True,
            "maxLength": spec.maxLength,
            "hiddenSize": hidden,
            "numLayers": n,
            "originalNumLayers": info["originalNumLayers"],
            "inputs": INPUTS,
            "output": "embedding",
            "pooledOutput": "pooled",
            "paddingSide": "left",  # the text pipeline always pads left (textpipe.py)
            "truncationSide": tok.truncation_side,
            "padTokenId": int(tok.pad_token_id),
            "addSpecialTokens": True,
            "prependTokenIds": pre,
            "appendTokenIds": post,
            "tokenizerFiles": tokenizer_files,
            "queryTemplate": QUERY_TEMPLATE,
            "textPipeline": enc.pipeline.manifest(),
            "modelType": model_type,
            "opset": spec.opset,
            "precision": spec.precision,
            **({"quantization": quantization} if quantization else {}),
            "sourceModel": info["sourceModel"],
            "loadedFrom": spec.model,
            "adapter": spec.adapter,
            "fromRun": spec.fromRun,
            "parity": parity,
            "exporter": {"method": "torch.onnx.export(dynamo=False)", "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__},
            "createdAt": now_iso(),
        }
        # protocol/encoder-manifest.schema.json is what clients check the folder against; never write one they refuse.
        problems = specs.errors("encoder-manifest", manifest)
        if problems:
            raise RuntimeError(f"the export's {MANIFEST} would not match protocol/encoder-manifest.schema.json ({problems[0]})")
        write_json_atomic(stage / MANIFEST, manifest)
        fsync_tree(stage)
        if out.exists():
            out.rmdir()  # empty (checked in the spec); a rename onto a non-empty folder would fail anyway
        os.rename(stage, out)
        size = (out / MODEL_FILE).stat().st_size + ((out / external).stat().st_size if external else 0)
        return {
            "path": str(out / MODEL_FILE),
            "outDir": str(out),
            "bytes": size,
            "opset": spec.opset,
            "parityMinCosine": min_cos,
            "parityMeanCosine": mean_cos,
            "numLayers": n,
            "precision": spec.precision,
            "seconds": round(time.monotonic() - t0, 3),
        }
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# the verb
def _work(spec: ExportSpec, job: Job) -> Outcome:
    result = run_export(spec, job.emit, sleep_after_load=job.args.debug_sleep_after_load)
    fields = ("path", "outDir", "bytes", "opset", "parityMinCosine", "parityMeanCosine", "numLayers", "precision", "seconds")
    return Outcome("exported", {k: result[k] for k in fields}, result)


VERB = Verb(
    name="export-onnx",
    help="export the (pruned, LoRA-merged) encoder with pooling and L2 norm as one ONNX graph, parity-checked",
    resolve=spec_from_args,
    work=_work,
    advice=lambda job: Advice(
        out_of_memory="ran out of memory while exporting; free memory or export a model with fewer layers (--keep)",
        disk_full=(f"the disk holding {Path(job.spec.out).parent} is full (no space left on device); nothing was exported, "
                   "free some space or choose another --out"),
    ),
    add_arguments=add_pause_after_load,
    spec_flags=SPEC_FLAGS,
    user_errors=(DataError, ModelError, ValueError),
    cancelled=lambda job: ("; nothing was written to the output folder", {}),
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
