"""convert-safetensors: the opt-in path for models that ship only pickle weights."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import worker_cli


def pickle_copy(tiny_llama: Path, dest: Path, shards: int = 1) -> Path:
    """The tiny model as older checkpoints ship it: pytorch_model.bin (or shards and their index), no safetensors."""
    from safetensors.torch import load_file

    dest.mkdir(parents=True)
    for f in tiny_llama.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, dest / f.name)
    state = load_file(str(tiny_llama / "model.safetensors"))
    if shards == 1:
        torch.save(state, dest / "pytorch_model.bin")
    else:
        keys = sorted(state)
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            part = {k: state[k] for k in keys[i::shards]}
            torch.save(part, dest / name)
            weight_map.update({k: name for k in part})
        (dest / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert not list(dest.glob("*.safetensors")), "the copy holds pickles only"
    return dest


def embed(folder: Path) -> torch.Tensor:
    from l3prune.encoder import load_encoder

    enc = load_encoder(folder, max_length=24)
    return enc.encode(["A man is playing a guitar.", "Rain falls over the quiet town."], "mean")


def test_pickle_only_model_is_refused_until_converted_then_embeds_the_same(tiny_llama, tmp_path):
    from l3prune.encoder import ModelError, check_model_dir

    folder = pickle_copy(tiny_llama, tmp_path / "pickled")
    with pytest.raises(ModelError, match="pickle weights"):
        check_model_dir(folder)
    p = worker_cli("convert-safetensors", "--model", str(folder))
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["files"] == ["model.safetensors"] and result["from"] == ["pytorch_model.bin"] and result["tensors"] > 0
    check_model_dir(folder)
    assert torch.allclose(embed(folder), embed(tiny_llama), atol=1e-6)
    again = worker_cli("convert-safetensors", "--model", str(folder))
    assert again.returncode == 2 and "already has safetensors weights" in again.stderr


def test_sharded_pickles_become_sharded_safetensors_with_an_index(tiny_llama, tmp_path):
    folder = pickle_copy(tiny_llama, tmp_path / "sharded", shards=3)
    assert (folder / "pytorch_model.bin.index.json").is_file()
    p = worker_cli("convert-safetensors", "--model", str(folder))
    assert p.returncode == 0, p.stderr
    files = json.loads(p.stdout)["files"]
    assert len(files) == 3 and all((folder / f).is_file() for f in files)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(files)
    assert torch.allclose(embed(folder), embed(tiny_llama), atol=1e-6)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_is_written(tiny_llama, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"weight": RunsCode()}, fh)
    p = worker_cli("convert-safetensors", "--model", str(folder), env={"PWD": str(folder)})
    assert p.returncode == 2 and "objects other than tensors" in p.stderr and "could run code" in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0
    assert not (folder / "PWNED").exists() and not list(Path.cwd().glob("PWNED"))
    assert sorted(f.name for f in folder.iterdir()) == ["config.json", "pytorch_model.bin"]


@pytest.mark.parametrize(
    "index, needle",
    [
        ({"weight_map": {"a": "../outside.bin"}}, "not a .bin file of this folder"),
        ({"weight_map": {"a": "/etc/passwd"}}, "not a .bin file of this folder"),
        ({"weight_map": {"a": "missing.bin"}}, "the model is incomplete"),
        ({"nothing": 1}, "not a valid shard index"),
    ],
)
def test_an_index_cannot_point_outside_its_folder(tiny_llama, tmp_path, index, needle):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    p = worker_cli("convert-safetensors", "--model", str(folder))
    assert p.returncode == 2 and needle in p.stderr, p.stderr


def test_tied_weights_that_share_memory_are_written_as_separate_tensors(tiny_llama, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "tied"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")
    emb = torch.randn(8, 4)
    torch.save({"model.embed_tokens.weight": emb, "lm_head.weight": emb, "half": emb[:4]}, folder / "pytorch_model.bin")
    p = worker_cli("convert-safetensors", "--model", str(folder))
    assert p.returncode == 0, p.stderr
    out = load_file(str(folder / "model.safetensors"))
    assert torch.equal(out["lm_head.weight"], emb) and torch.equal(out["model.embed_tokens.weight"], emb) and torch.equal(out["half"], emb[:4])
