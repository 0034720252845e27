"""An export-onnx folder as an encoder for evaluate --onnx: onnxruntime's CPU provider runs the graph, the worker's
own text pipeline (textpipe.py, rebuilt from the manifest's textPipeline) tokenises, so the exported variant is scored
on exactly the ids and embed masks torch would get.

The graph's `pooled` output (the vector before the L2 norm) is what is scored, because evaluate scores torch's raw
pooled output: logistic regression, k-means and the Euclidean metrics are not invariant to the norm, so scoring the
unit-length `embedding` instead would mix the normalisation into a comparison meant to show the quantization alone.
Exports made before that output have none and are refused with the way out (export again).

Nothing in the folder runs as code: the tokenizer loads without remote code, the graph in onnxruntime. The folder
may come from anywhere, so the manifest is checked against its schema and the tokenizer against the manifest's
measured special tokens before a text is embedded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import specs
from .encoder import ModelError
from .fileio import JsonFileError, read_json
from .textpipe import TextLike, TextPipeline

MANIFEST = "l3prune-encoder.json"
PROVIDER = "CPUExecutionProvider"


def read_export(folder: str | Path) -> dict:
    """The folder's l3prune-encoder.json, checked: schema, graph file present, a pooled output and a text pipeline."""
    d = Path(folder)
    if not d.is_dir():
        raise ModelError(f"--onnx {d} is not a folder; pass the output folder of export-onnx (it holds {MANIFEST} and model.onnx)")
    try:
        m = read_json(d / MANIFEST)
    except JsonFileError as e:
        raise ModelError(f"--onnx {d}: {MANIFEST} {e.problem}; pass the output folder of export-onnx") from None
    problems = specs.errors("encoder-manifest", m) if isinstance(m, dict) else ["not a JSON object"]
    if problems:
        raise ModelError(f"--onnx {d}: {MANIFEST} does not match protocol/encoder-manifest.schema.json ({problems[0]}); export the encoder again")
    if m["numLayers"] > m["originalNumLayers"]:
        raise ModelError(f"--onnx {d}: {MANIFEST} says {m['numLayers']} layers of {m['originalNumLayers']}; export the encoder again")
    for name in [m.get("model", "model.onnx")] + ([m["externalData"]] if m.get("externalData") else []):
        if not (d / name).is_file():
            raise ModelError(f"--onnx {d} has no {name}, which {MANIFEST} names; export the encoder again")
    if not m.get("pooledOutput") or not m.get("textPipeline") or "embed_mask" not in m["inputs"]:
        raise ModelError(
            f"--onnx {d} was exported before the graph gave its pooled output and text pipeline, which evaluate scores; "
            "export the variant again with export-onnx"
        )
    return m


@dataclass
class OnnxEncoder:
    """encode(texts, pooling) -> the graph's pooled vectors, as encoder.Encoder.encode returns torch's."""

    folder: Path
    manifest: dict
    tokenizer: object
    session: object
    max_length: int
    pipeline: TextPipeline = field(default_factory=TextPipeline)
    device: str = "cpu"

    @property
    def num_layers(self) -> int:
        return int(self.manifest["numLayers"])

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "fp32"))

    def tokenize(self, texts: Sequence[TextLike]) -> dict[str, torch.Tensor]:
        return self.pipeline.tokenize(self.tokenizer, list(texts), self.max_length)

    def encode(self, texts: Sequence[TextLike], pooling: str) -> torch.Tensor:
        if pooling != self.manifest["pooling"]:
            raise ValueError(f"the graph in {self.folder} pools with {self.manifest['pooling']}, not {pooling}")
        batch = self.tokenize(texts)
        feed = {name: batch[name].numpy().astype(np.int64) for name in self.manifest["inputs"]}
        (pooled,) = self.session.run([self.manifest["pooledOutput"]], feed)
        return torch.from_numpy(pooled)

    def parameter_count(self) -> tuple[int, int]:
        """(elements of the graph's initializers, bytes of its files): the variant's size as deployed."""
        import onnx

        graph = onnx.load(str(self.folder / self.manifest.get("model", "model.onnx")), load_external_data=False).graph
        elements = sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in graph.initializer)
        files = [self.manifest.get("model", "model.onnx")] + ([self.manifest["externalData"]] if self.manifest.get("externalData") else [])
        return elements, sum((self.folder / f).stat().st_size for f in files)


def load_onnx_encoder(folder: str | Path, *, max_length: int) -> OnnxEncoder:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from .export_onnx import special_tokens_added

    d = Path(folder)
    m = read_export(d)
    try:
        tok = AutoTokenizer.from_pretrained(d, trust_remote_code=False, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types; the user needs one sentence
        raise ModelError(f"--onnx {d}: cannot load its tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); export the encoder again") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.truncation_side = m.get("truncationSide", tok.truncation_side)
    pre, post = special_tokens_added(tok)
    if (pre, post) != (m.get("prependTokenIds", pre), m.get("appendTokenIds", post)):
        raise ModelError(
            f"--onnx {d}: its tokenizer adds tokens {pre} before and {post} after a text, where {MANIFEST} measured "
            f"{m.get('prependTokenIds')} and {m.get('appendTokenIds')}; the folder's files do not belong together, export the encoder again"
        )
    tp = m["textPipeline"]
    pipeline = TextPipeline(tp["chatPrefix"], tp["chatSuffix"], tp["instructionFormat"])
    options = ort.SessionOptions()
    # onnxruntime ignores OMP_NUM_THREADS, which torch (and so a torch evaluation on the same machine) honours.
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        options.intra_op_num_threads = int(os.environ["OMP_NUM_THREADS"])
    try:
        session = ort.InferenceSession(str(d / m.get("model", "model.onnx")), options, providers=[PROVIDER])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
        raise ModelError(f"--onnx {d}: onnxruntime cannot load the graph ({str(e).splitlines()[0] if str(e) else type(e).__name__}); export the encoder again") from None
    outputs = {o.name for o in session.get_outputs()}
    if m["pooledOutput"] not in outputs:
        raise ModelError(f"--onnx {d}: the graph has no output {m['pooledOutput']!r}, which {MANIFEST} names; export the encoder again")
    return OnnxEncoder(folder=d, manifest=m, tokenizer=tok, session=session, max_length=max_length, pipeline=pipeline)
