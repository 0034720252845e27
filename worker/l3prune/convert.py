"""`python -m l3prune convert-safetensors --model DIR`: the user's opt-in for a model that ships only pickle weights.

Everywhere else L³Prune reads safetensors only, because unpickling a `.bin` can run code. When the user asks for
this conversion (the extension asks for consent first), the pickles are read with PyTorch's weights-only
unpickler, which builds tensors and plain containers and refuses every other object, and written next to them as
safetensors in the layout transformers reads (model.safetensors, or shards plus model.safetensors.index.json).
The folder may be a cloned repository's, with links planted under any name we would write: each file is written
into a folder this run creates (mkdtemp, ours alone), then renamed into place, which replaces a name and never
writes through it; the index goes through fileio's exclusive temp file.

stdout: one JSON line {"event": "converted", ...}; exit 0, or 2 with one sentence on stderr.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from . import hfcache, specs
from .encoder import ModelError
from .fileio import JsonFileError, read_json, write_json_atomic
from .verbs import Advice, Job, Outcome, Verb, disk_full, main_for

INDEX = "pytorch_model.bin.index.json"
SINGLE = "pytorch_model.bin"
SHARD_NAME = re.compile(r"^[\w.-]+\.bin$")


def pickle_shards(folder: Path) -> list[Path]:
    """The .bin files that hold the model, in order; names from an index must be plain files of this folder."""
    if (folder / INDEX).is_file():
        try:
            weight_map = read_json(folder / INDEX)["weight_map"]
            names = sorted(set(weight_map.values()))
        except JsonFileError as e:
            raise ModelError(f"{folder / INDEX} is not a valid shard index ({e.problem}); fix or remove it") from None
        except (KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{folder / INDEX} is not a valid shard index ({type(e).__name__}: {e}); fix or remove it") from None
        bad = [n for n in names if not isinstance(n, str) or not SHARD_NAME.match(n)]
        if bad:
            raise ModelError(f"{folder / INDEX} names {bad[0]!r}, which is not a .bin file of this folder; the index may not point outside it")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise ModelError(f"{folder / INDEX} names {missing[0]}, which is not in {folder}; the model is incomplete")
        return [folder / n for n in names]
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    raise ModelError(f"model folder {folder} has no {SINGLE} or {INDEX}; there are no pickle weights to convert")


def _load_tensors(path: Path) -> dict:
    import pickle

    import torch

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path} holds objects other than tensors ({first[:200]}); it was not converted, because loading it "
                         "could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ModelError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"{path} is not a state dict of named tensors; it cannot be converted")
    return state


def convert(model_dir: str | os.PathLike) -> dict:
    from safetensors.torch import save_file

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise ModelError(f"model folder {folder} has no config.json; it must be a Hugging Face model folder")
    if any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists():
        raise ModelError(f"model folder {folder} already has safetensors weights; there is nothing to convert")
    shards = pickle_shards(folder)
    names = ["model.safetensors"] if len(shards) == 1 else [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    weight_map: dict[str, str] = {}
    staged: list[tuple[Path, Path]] = []
    tensors = nbytes = 0
    stage = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder))
    try:
        for shard, name in zip(shards, names):
            state = _load_tensors(shard)
            # safetensors refuses tensors that share memory (tied embeddings); each gets its own copy.
            seen: set[int] = set()
            out = {}
            for key, t in state.items():
                ident = t.untyped_storage().data_ptr() if t.numel() else id(t)
                out[key] = t.contiguous().clone() if ident in seen else t.contiguous()
                seen.add(ident)
                weight_map[key] = name
                tensors += 1
                nbytes += t.numel() * t.element_size()
            tmp = stage / name
            save_file(out, str(tmp), metadata={"format": "pt"})
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                raise ModelError(f"{tmp} is not the file this conversion wrote; nothing was converted")
            staged.append((tmp, folder / name))
            del state, out
        for tmp, final in staged:
            os.replace(tmp, final)
        if len(shards) > 1:
            index = {"metadata": {"total_size": nbytes}, "weight_map": dict(sorted(weight_map.items()))}
            write_json_atomic(folder / "model.safetensors.index.json", index)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {"event": "converted", "model": str(folder.absolute()), "files": names, "tensors": tensors, "bytes": nbytes,
            "from": [s.name for s in shards]}


# ---------------------------------------------------------------------------------------------------------------
# the verb: no run folder, the result is one JSON line on stdout
ConvertSpec = specs.spec_class("convert-safetensors", "ConvertSpec", __name__)


def _resolve(args) -> ConvertSpec:
    spec = ConvertSpec(**specs.resolve("convert-safetensors", specs.gather("convert-safetensors", args)))
    ref = hfcache.parse(spec.model)
    if ref is not None:
        # The cache is huggingface_hub's: its snapshots are links into blobs, and L³Prune writes into none of it.
        raise ValueError(f"convert-safetensors writes safetensors files into a model folder, and {ref} is a Hugging Face "
                         "repo id, not a folder (L³Prune never writes into the Hugging Face cache); copy the model into a "
                         "folder of your own and convert that")
    return spec


def _work(spec: ConvertSpec, job: Job) -> Outcome:
    try:
        result = convert(spec.model)
    except OSError as e:
        if disk_full(e):
            raise
        raise ModelError(f"cannot write the safetensors files into {spec.model} ({e.strerror or e}); nothing was converted") from None
    return Outcome(result.pop("event"), result)


VERB = Verb(
    name="convert-safetensors",
    help="opt-in: read a model's pickle weights with the weights-only unpickler and write safetensors next to them",
    resolve=lambda args, _world: _resolve(args),
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory while converting; free memory and try again",
                              disk_full=f"the disk holding {job.spec.model} is full; nothing was converted, free some space and try again"),
    user_errors=(ModelError, ValueError),
    run_folder=False,
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
