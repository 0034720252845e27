"""The demo study: how much of the demo model can go, measured with the worker's own verbs.

One command (README): `bash scripts/study.sh`. It runs, on the demo model and data:
  1. `analyze`  the initial loss at every depth → L³Prune's small and large cuts;
  2. `train`    the same recipe and steps for every variant: prune p ∈ {0, 20, 40, 60, 80} % and both cuts;
  3. `evaluate` every trained variant on the built-in tasks (STS, retrieval, classification, clustering, pairs);
and writes docs/study/results.json, docs/study/table.md (the table) and docs/study/pareto.svg (the plot).

Run folders go to .l3prune/study/<variant>/; a variant whose run already succeeded is not redone, so an
interrupted study continues where it stopped. `--check` reruns everything in a fresh folder and compares
the new table with the committed one (scores to ±tolerance), which is how "the committed table matches a
rerun" is checked.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL = ROOT / ".demo" / "models" / "smollm2-135m"
DATA = ROOT / ".demo" / "data" / "triples.jsonl"
PRUNE_PERCENTS = (0, 20, 40, 60, 80)
LATENCY_BATCH = 16  # the evaluate verb's default batch


def shown(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def worker(verb: str, run_dir: Path, *args: str) -> dict:
    """Runs one worker verb to completion (or reuses a succeeded run) and returns its run.json."""
    state = run_dir / "run.json"
    if state.exists():
        run = json.loads(state.read_text())
        if run.get("status") == "succeeded":
            print(f"  reuse {shown(run_dir)} (succeeded)", flush=True)
            return run
        # A half-finished run is started over; its folder is moved aside, never deleted.
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.stale-{int(time.time())}"))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cmd = [PY, "-m", "l3prune", verb, "--run-dir", str(run_dir), *args]
    print(f"  {verb} → {shown(run_dir)}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"study: `{' '.join(cmd)}` failed: {proc.stderr.strip()[-800:]}")
    print(f"    {time.time() - started:.0f} s", flush=True)
    return json.loads(state.read_text())


def study(out_runs: Path, args: argparse.Namespace) -> dict:
    print("analyze", flush=True)
    analysis = worker("analyze", out_runs / "analyze", "--model", str(MODEL), "--data", str(DATA),
                      "--samples", str(args.samples), "--batch-size", "16")["result"]
    curve = next(e for e in map(json.loads, (out_runs / "analyze" / "events.jsonl").read_text().splitlines()) if e["event"] == "layer_losses")
    n = analysis["numLayers"]
    # The paper's keep rule, the one the extension and the worker share (protocol/keep-rule-vectors.json).
    from l3prune.cutrule import keep_for_prune_percent

    variants: list[dict] = [{"name": f"prune {p}%", "keep": keep_for_prune_percent(n, p), "percent": p} for p in PRUNE_PERCENTS]
    variants.append({"name": "L³Prune small", "keep": analysis["small"], "percent": None})
    variants.append({"name": "L³Prune large", "keep": analysis["large"], "percent": None})
    rows = []
    for v in variants:
        slug = v["name"].replace("L³Prune ", "l3prune-").replace("prune ", "p").replace("%", "").replace(" ", "-")
        print(f"{v['name']}: keep {v['keep']} of {n}", flush=True)
        train = worker("train", out_runs / f"train-{slug}", "--model", str(MODEL), "--data", str(DATA), "--keep", str(v["keep"]),
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                       "--warmup-steps", str(max(1, args.steps // 10)), "--checkpoint-every", str(args.steps), "--seed", "0")
        evaluation = worker("evaluate", out_runs / f"evaluate-{slug}", "--from-run", str(out_runs / f"train-{slug}"),
                            "--max-examples", str(args.max_examples), "--data-dir", str(DATA.parent))["result"]
        rows.append({
            **v,
            "slug": slug,
            "numLayers": n,
            "finalTrainLoss": train["result"]["finalLoss"],
            "params": evaluation["params"],
            "bytes": evaluation["bytes"],
            "scores": evaluation["scores"],
            "averageScore": evaluation["averageScore"],
            "latencyMsPerBatch": evaluation["latencyMsPerBatch"],
            "textsPerSecond": evaluation["textsPerSecond"],
        })
    measure_latencies(rows, out_runs, args.latency_rounds)
    return {
        "model": MODEL.name,
        "data": DATA.name,
        "initialLoss": {"small": analysis["small"], "large": analysis["large"], "samples": args.samples,
                        "losses": [round(x, 4) for x in curve["losses"]]},
        "recipe": {"steps": args.steps, "batchSize": args.batch_size, "maxLength": args.max_length, "maxExamples": args.max_examples},
        "latency": {"rounds": args.latency_rounds, "batchSize": LATENCY_BATCH, "threads": _threads(),
                    "method": "all variants loaded in one process and timed round-robin; median over rounds of each round's median"},
        "command": "bash scripts/study.sh",
        "rows": rows,
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def measure_latencies(rows: list[dict], out_runs: Path, rounds: int) -> None:
    """Encode latency of every trained variant, measured after all training and evaluation, in one process and
    round-robin, so that a busy moment of a shared machine touches every variant alike (each evaluation also
    times its encoder, but alone and at whatever moment it ran)."""
    import statistics

    from l3prune import evaltasks
    from l3prune.evaluate import measure_latency
    from l3prune.variant import load_variant
    from l3prune.verbs import quiet_libraries

    quiet_libraries()

    texts = evaltasks.latency_texts(DATA.parent) or ["A short sentence to time the encoder."]
    encoders = {}
    for r in rows:
        spec = json.loads((out_runs / f"train-{r['slug']}" / "run.json").read_text())["spec"]
        enc, _ = load_variant(str(out_runs / f"train-{r['slug']}" / "model"), None, None, max_length=spec["maxLength"])
        encoders[r["slug"]] = (enc, spec["pooling"])
    print(f"latency: {len(rows)} variants, {rounds} rounds, batch {LATENCY_BATCH}", flush=True)
    times: dict[str, list[float]] = {slug: [] for slug in encoders}
    for _ in range(rounds):
        for slug, (enc, pooling) in encoders.items():
            times[slug].append(measure_latency(enc, texts, pooling, LATENCY_BATCH, "cpu")[0])
    for r in rows:
        ms = statistics.median(times[r["slug"]])
        r["latencyMsPerBatch"] = round(ms, 3)
        r["textsPerSecond"] = round(LATENCY_BATCH * 1000 / ms, 3)


def table(result: dict) -> str:
    tasks = sorted({t for r in result["rows"] for t in r["scores"]})
    full = next(r for r in result["rows"] if r["percent"] == 0)
    head = ["variant", "layers", "params", "share of full", *tasks, "average", "ms/batch", "speed-up", "N/n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["name"], f"{r['keep']}/{r['numLayers']}", f"{r['params'] / 1e6:.1f} M", f"{r['params'] / full['params']:.2f}",
                 *(f"{r['scores'].get(t, float('nan')):.3f}" for t in tasks), f"{r['averageScore']:.3f}",
                 f"{r['latencyMsPerBatch']:.0f}", f"×{full['latencyMsPerBatch'] / r['latencyMsPerBatch']:.2f}",
                 f"×{r['numLayers'] / r['keep']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("study: matplotlib is not installed, so no plot (pip install matplotlib)", file=sys.stderr)
        return False
    rows = sorted(result["rows"], key=lambda r: r["keep"])
    full = next(r for r in rows if r["percent"] == 0)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([r["keep"] / r["numLayers"] for r in rows if r["percent"] is not None],
            [r["averageScore"] for r in rows if r["percent"] is not None], "o-", label="prune p %")
    for r in rows:
        if r["percent"] is None:
            ax.plot(r["keep"] / r["numLayers"], r["averageScore"], "D", markersize=8, label=f"{r['name']} (keep {r['keep']})")
    ax.axhline(full["averageScore"], color="grey", linestyle=":", label="full model, same training")
    ax.set_xlabel("share of layers kept (cost ∝ layers kept)")
    ax.set_ylabel("average score (5 tasks)")
    ax.set_title(f"{result['model']}: score against kept layers, {result['recipe']['steps']} training steps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    return True


def compare(committed: dict, rerun: dict, tolerance: float) -> list[str]:
    problems = []
    for a, b in zip(committed["rows"], rerun["rows"]):
        if a["keep"] != b["keep"]:
            problems.append(f"{a['name']}: keep {a['keep']} committed, {b['keep']} now")
        for task, score in a["scores"].items():
            if not math.isclose(score, b["scores"].get(task, float("nan")), abs_tol=tolerance):
                problems.append(f"{a['name']} {task}: {score:.4f} committed, {b['scores'].get(task)} now")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--samples", type=int, default=256, help="triples for the initial loss")
    p.add_argument("--max-examples", type=int, default=200, help="cap per evaluation task")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "study")
    p.add_argument("--runs", type=Path, default=ROOT / ".l3prune" / "study")
    p.add_argument("--check", action="store_true", help="rerun in a fresh folder and compare with the committed results.json")
    p.add_argument("--tolerance", type=float, default=0.005)
    p.add_argument("--latency-rounds", type=int, default=7, help="round-robin rounds of the latency phase")
    args = p.parse_args()
    if args.check:
        committed = json.loads((args.out / "results.json").read_text())
        recipe = committed["recipe"]
        args.steps, args.batch_size, args.max_length, args.max_examples = recipe["steps"], recipe["batchSize"], recipe["maxLength"], recipe["maxExamples"]
        args.samples = committed["initialLoss"]["samples"]
        rerun = study(args.runs.with_name(f"{args.runs.name}-check-{int(time.time())}"), args)
        problems = compare(committed, rerun, args.tolerance)
        print(table(rerun))
        print("\n".join(problems) if problems else f"study: the rerun matches the committed table (±{args.tolerance})")
        return 1 if problems else 0
    result = study(args.runs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    md = table(result)
    (args.out / "table.md").write_text(md + "\n")
    plot(result, args.out / "pareto.svg")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
