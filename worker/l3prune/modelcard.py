"""The model card (README.md) of an exported sentence-transformers folder: the hub's YAML metadata, the cut, the
recipe, MTEB results and the initial-loss curve, all read from the run folders that made the variant.

Where each part comes from:
* base_model: the unpruned model's Hugging Face repo id (from its hub-cache path, config.json's _name_or_path or
  the folder's SOURCE.txt), else its folder name;
* the recipe: the train run's run.json spec (fromRun);
* model-index: the latest succeeded evaluate run of the same train run (a sibling folder in the runs root whose
  spec.fromRun is that run): its results/<Task>.json (MTEB TaskResult files) and its task_result events (task type);
* the loss curve: the latest succeeded analyze run of the same base model (spec.model), drawn as loss-curve.svg.
The metadata is written with PyYAML and read back before the card is kept: a card the hub would not parse is an
error here, not there.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import yaml

from .fileio import MAX_RUN_JSON_BYTES, JsonFileError, iter_jsonl, read_json

CARD = "README.md"
CURVE = "loss-curve.svg"
TAGS = ["sentence-transformers", "sentence-similarity", "feature-extraction", "l3prune", "layer-pruning", "mteb"]
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
RECIPE_FIELDS = ("keep", "steps", "batchSize", "miniBatchSize", "learningRate", "warmupSteps", "loraR", "loraAlpha",
                 "loraDropout", "targetModules", "scale", "pooling", "maxLength", "precision", "taskHomogeneous", "chatTemplate",
                 "seed", "data")


class CardError(Exception):
    pass


def _run_json(rd: Path) -> dict | None:
    try:
        state = read_json(rd / "run.json", limit=MAX_RUN_JSON_BYTES)
    except JsonFileError:
        return None
    return state if isinstance(state, dict) and isinstance(state.get("spec"), dict) else None


def _siblings(train_run: Path, verb: str, match) -> list[tuple[Path, dict]]:
    """Succeeded runs of `verb` beside the train run that satisfy match(spec), latest first."""
    found = []
    try:
        entries = list(train_run.parent.iterdir())
    except OSError:
        return []
    for rd in entries:
        if rd.is_symlink() or not rd.is_dir() or rd == train_run:
            continue
        state = _run_json(rd)
        if state and state.get("verb") == verb and state.get("status") == "succeeded" and match(state["spec"]):
            found.append((rd, state))
    return sorted(found, key=lambda x: str(x[1].get("endedAt") or ""), reverse=True)


def _events(rd: Path, kind: str) -> list[dict]:
    try:
        return [e for _, e in iter_jsonl(rd / "events.jsonl", CardError) if isinstance(e, dict) and e.get("event") == kind]
    except (CardError, OSError):
        return []


def base_model_id(source: str) -> str:
    p = Path(source)
    m = re.search(r"models--([^/]+?)--([^/]+)/snapshots/", p.as_posix())
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    try:
        cfg = read_json(p / "config.json")
        name = cfg.get("_name_or_path") if isinstance(cfg, dict) else None
        if isinstance(name, str) and REPO_ID.match(name):
            return name
    except JsonFileError:
        pass
    try:
        first = (p / "SOURCE.txt").read_text(encoding="utf-8", errors="replace").split()[:3]
        # "SmolLM2-135M-Instruct (HuggingFaceTB, ..." names the repo as name (org, ...
        if len(first) >= 2 and first[1].startswith("("):
            org = first[1].strip("(),")
            if REPO_ID.match(f"{org}/{first[0]}"):
                return f"{org}/{first[0]}"
    except OSError:
        pass
    return p.name


def mteb_results(train_run: Path) -> tuple[list[dict], Path | None]:
    """model-index results (one per task) from the latest evaluate run of train_run, and that run's folder."""
    runs = _siblings(train_run, "evaluate", lambda s: s.get("fromRun") == str(train_run))
    if not runs:
        return [], None
    rd, _ = runs[0]
    done = {e.get("task"): e for e in _events(rd, "task_result")}
    results = []
    for f in sorted((rd / "results").glob("*.json")):
        try:
            doc = read_json(f)
        except JsonFileError:
            continue
        if not isinstance(doc, dict):
            continue
        name = str(doc.get("task_name") or f.stem)
        split, entries = next(iter((doc.get("scores") or {}).items()), (None, None))
        if not entries or not isinstance(entries, list) or not isinstance(entries[0], dict):
            continue
        entry = entries[0]
        main = entry.get("main_score")
        if not isinstance(main, (int, float)):
            continue
        # The main score under its own name too (cosine_spearman, ndcg_at_10), as mteb's model cards carry it.
        metrics = [{"type": "main_score", "value": float(main)}]
        metric = (done.get(name) or {}).get("metric")
        if isinstance(metric, str) and isinstance(entry.get(metric), (int, float)) and metric != "main_score":
            metrics.append({"type": metric, "value": float(entry[metric])})
        results.append({
            "task": {"type": str((done.get(name) or {}).get("taskType") or "Unknown")},
            "dataset": {"name": f"MTEB {name}", "type": name, "config": str(entry.get("hf_subset") or "default"), "split": str(split),
                        "revision": str(doc.get("dataset_revision") or "")},
            "metrics": metrics,
        })
    return results, rd


def loss_curve(train_run: Path, model: str | None) -> tuple[dict | None, Path | None]:
    """The layer_losses event of the latest analyze run of the train run's base model."""
    for rd, _ in _siblings(train_run, "analyze", lambda s: s.get("model") == model):
        ev = _events(rd, "layer_losses")
        if ev:
            return ev[-1], rd
    return None, None


def curve_svg(losses: list[float], keep: int | None, small: int | None, large: int | None) -> str:
    """The initial loss per depth as a small standalone SVG (no plotting library in the worker's environment)."""
    w, h, pad = 560, 260, 44
    n = len(losses)
    lo, hi = min(losses), max(losses)
    span = (hi - lo) or 1.0

    def x(d: int) -> float:
        return pad + (w - 2 * pad) * ((d - 1) / max(n - 1, 1))

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * ((v - lo) / span)

    pts = " ".join(f"{x(i + 1):.1f},{y(v):.1f}" for i, v in enumerate(losses))
    marks = []
    for d, label, colour in ((small, "small cut", "#2a9d8f"), (large, "large cut", "#e76f51"), (keep, "kept", "#264653")):
        if d and 1 <= d <= n:
            marks.append(f'<line x1="{x(d):.1f}" y1="{pad}" x2="{x(d):.1f}" y2="{h - pad}" stroke="{colour}" stroke-dasharray="4 3"/>'
                         f'<text x="{x(d) + 3:.1f}" y="{pad + 12 + 12 * len(marks)}" font-size="11" fill="{colour}">{label} {d}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">'
        f'<title>Initial layer-wise loss (InfoNCE) of the model truncated to each depth</title>'
        f'<rect width="{w}" height="{h}" fill="white"/>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{w / 2:.0f}" y="{h - 10}" font-size="12" text-anchor="middle">layers kept (depth)</text>'
        f'<text x="12" y="{h / 2:.0f}" font-size="12" transform="rotate(-90 12 {h / 2:.0f})" text-anchor="middle">initial loss</text>'
        f'<text x="{pad - 4}" y="{y(hi) + 4:.1f}" font-size="10" text-anchor="end">{hi:.3g}</text>'
        f'<text x="{pad - 4}" y="{y(lo) + 4:.1f}" font-size="10" text-anchor="end">{lo:.3g}</text>'
        f'<text x="{x(1):.1f}" y="{h - pad + 14}" font-size="10" text-anchor="middle">1</text>'
        f'<text x="{x(n):.1f}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{n}</text>'
        f'<polyline points="{pts}" fill="none" stroke="#1d3557" stroke-width="2"/>'
        + "".join(marks) + "</svg>\n"
    )


def _cell(v) -> str:
    s = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def write_card(folder: Path, *, spec: dict, info: dict, num_layers: int, hidden: int, parity: dict, query_prompt: str,
               instructed_example: tuple[str, str]) -> dict:
    """README.md (and loss-curve.svg when an analyze run exists) in folder; returns what went into it."""
    from .variant import config_layers

    source = str(info.get("sourceModel") or spec.get("model"))
    base = base_model_id(source)
    original = int(info.get("originalNumLayers") or config_layers(source) or num_layers)
    train_run = Path(spec["fromRun"]) if spec.get("fromRun") else None
    train_state = _run_json(train_run) if train_run else None
    tspec = dict(train_state["spec"]) if train_state else {}
    results, eval_run = mteb_results(train_run) if train_run else ([], None)
    curve, analyze_run = (None, None)
    if train_run and tspec:
        curve, analyze_run = loss_curve(train_run, tspec.get("model"))
    name = f"{base.split('/')[-1]}-l3prune-{num_layers}of{original}"

    meta: dict = {"base_model": base, "library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
                  "tags": list(TAGS)}
    if results:
        meta["model-index"] = [{"name": name, "results": results}]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    back = yaml.safe_load(front)
    if back != meta:
        raise CardError("the model card's YAML metadata does not read back as written")

    lines = ["---", front.rstrip("\n"), "---", "", f"# {name}", "",
             f"[{base}](https://huggingface.co/{base}) turned into a text encoder by **L³Prune** layer pruning "
             "(\"Large Language Models Are Overparameterized Text Encoders\"): the first "
             f"**{num_layers} of its {original} layers** are kept ({100 * (1 - num_layers / original):.0f} % of the layers pruned), "
             "then trained with LoRA on a contrastive (hard-negative InfoNCE) objective and merged.", "",
             "## Use", "",
             "```python",
             "from sentence_transformers import SentenceTransformer",
             "",
             "# trust_remote_code runs l3prune_st.py from this folder (the text pipeline below; it imports only torch and",
             "# sentence_transformers; read it first)",
             "model = SentenceTransformer(\"path/to/this/folder\", trust_remote_code=True)",
             "docs = model.encode([\"A man is playing a guitar.\"])",
             "queries = model.encode([\"guitar player\"], prompt_name=\"query\")",
             f"custom = model.encode([{instructed_example[1]!r}], prompt={instructed_example[0] + '; '!r})",
             "```", "",
             "## How texts are embedded", "",
             f"Embeddings are {hidden}-dimensional, L2-normalised (compare with cosine or dot product). A query carries its task "
             f"instruction as the prompt, in the form `\"<instruction>; \"` (the `query` prompt is `{query_prompt!r}`); documents "
             "take no prompt. Each text goes inside the model's chat user turn when its tokenizer has a chat template, and only "
             "the text's own tokens are pooled (the instruction and the chat prefix are attended to, not pooled), as in the paper's "
             "code. Stock `Pooling(include_prompt=False)` cannot express that rule, so the input module `l3prune_st.L3PruneTransformer` "
             "builds the string and the pooling mask and hands stock `Pooling` and `Normalize` the rest.", "",
             f"Parity: before this folder was written it was loaded with sentence-transformers and compared with the L³Prune "
             f"worker's own embeddings on {parity['texts']} texts (documents and instructed queries, some past the length limit): "
             f"minimum cosine {parity['minCosine']:.6f}, mean {parity['meanCosine']:.6f} (threshold {parity['threshold']}).", ""]
    lines += ["## The cut", "", f"| | |", "|---|---|", f"| base model | {base} |", f"| layers kept | {num_layers} of {original} |",
              f"| pooling | {spec.get('pooling')} |", f"| max length | {spec.get('maxLength')} tokens |", ""]
    svg_name = None
    if curve and isinstance(curve.get("losses"), list) and curve["losses"]:
        svg_name = CURVE
        (folder / CURVE).write_text(curve_svg([float(v) for v in curve["losses"]], num_layers, curve.get("small"), curve.get("large")),
                                    encoding="utf-8")
        lines += ["## Initial layer-wise loss", "",
                  f"![initial loss per depth]({CURVE})", "",
                  f"The contrastive loss of the untrained model truncated to each depth (analyze run `{analyze_run.name}`, "
                  f"{curve.get('samples')} triples): L³Prune's cut points are the minimum of each half, small = {curve.get('small')}, "
                  f"large = {curve.get('large')}.", ""]
    if tspec:
        lines += ["## Training recipe", "", f"From the train run `{train_run.name}` (run.json spec).", "", "| field | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(Path(tspec[k]).name if k == 'data' and isinstance(tspec[k], str) else tspec[k])} |"
                  for k in RECIPE_FIELDS if k in tspec]
        lines.append("")
    if results:
        lines += ["## Evaluation", "", f"MTEB-format results of the evaluate run `{eval_run.name}` (also in the metadata's model-index).", "",
                  "| task | type | main score |", "|---|---|---|"]
        lines += [f"| {html.escape(r['dataset']['type'])} | {r['task']['type']} | {r['metrics'][0]['value']:.4f} |" for r in results]
        lines.append("")
    lines += ["## Files", "", "- `model.safetensors`, `config.json`, tokenizer files: the pruned, merged model",
              "- `modules.json`, `sentence_bert_config.json` (with `text_pipeline`), `1_Pooling/`, `2_Normalize/`, "
              "`config_sentence_transformers.json` (prompts): the sentence-transformers pipeline",
              "- `l3prune_st.py`: the input module (text pipeline and pooling mask)", ""]
    (folder / CARD).write_text("\n".join(lines), encoding="utf-8")
    return {"results": len(results), "lossCurve": svg_name}
