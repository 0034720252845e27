"""A Hugging Face datasets cache built on disk as `datasets` leaves one after loading a hub dataset online once:
<HF_DATASETS_CACHE>/<org>___<name>/<config>/0.0.0/<revision>/ with the Arrow files and dataset_info.json, written by
datasets' own Parquet builder under the repo id. Offline, `datasets.load_dataset("<org>/<name>")` (and so an MTEB
task's load_data) reads exactly this layout (datasets.load.CachedDatasetModuleFactory); the hub cache of raw
files alone does not do.

`wrap_builtin` puts a built-in task's local data (evaltasks.LoadedTask) into the layout of a real MTEB task of the
same type, under that task's repo id, in the columns the task's loader reads; the texts are the built-in task's."""
from __future__ import annotations

import tempfile
from pathlib import Path

# One real MTEB task per built-in type. Clustering: RedditClustering.v2 embeds every document, as the built-in
# clustering task does (TwentyNewsgroupsClustering.v2 embeds a 4 % sample).
REAL_TASKS = {
    "STS": "STSBenchmark",
    "Retrieval": "SciFact",
    "Classification": "Banking77Classification",
    "Clustering": "RedditClustering.v2",
    "PairClassification": "SprintDuplicateQuestions",
}


def add_dataset(cache: Path, repo_id: str, revision: str, splits: dict[str, dict[str, list]], config: str = "default") -> Path:
    """Writes one config of repo_id (split -> columns) into the datasets cache at `cache`; returns its folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    with tempfile.TemporaryDirectory(prefix="l3prune-mteb-cache-") as tmp:
        files = {}
        for split, columns in splits.items():
            f = Path(tmp) / f"{config}-{split}.parquet"
            pq.write_table(pa.table(columns), f)
            files[split] = [str(f)]
        # Under its repo id the builder would insist on hf:// data files; "<org>___<name>" is the folder that
        # repo id gets (datasets.load.CachedDatasetModuleFactory), which is what the offline loader looks for.
        org, name = repo_id.split("/")
        builder = Parquet(cache_dir=str(cache), dataset_name=f"{org}___{name}", config_name=config, config_id=config, hash=revision,
                          data_files=files)
        builder.download_and_prepare()
        out = Path(builder.cache_dir)
        # The Arrow files are named after the builder's dataset name; the offline loader wants the repo's name.
        for f in out.glob(f"{org}___{name}-*.arrow"):
            f.rename(out / f.name.replace(f"{org}___{name}-", f"{name}-", 1))
        info = out / "dataset_info.json"
        info.write_text(info.read_text().replace(f'"{org}___{name}"', f'"{name}"'))
        return out


def wrap_builtin(cache: Path, task) -> str:
    """The built-in task's data as the real MTEB task REAL_TASKS[task.type] reads it; returns that task's name."""
    import mteb

    name = REAL_TASKS[task.type]
    real = mteb.get_task(name)
    repo, rev = real.metadata.dataset["path"], real.metadata.dataset["revision"]
    d, texts = task.data, task.texts
    if task.type == "STS":
        add_dataset(cache, repo, rev, {"test": {"sentence1": [texts[i] for i in d["a"]], "sentence2": [texts[i] for i in d["b"]],
                                                "score": [float(g) for g in d["gold"]]}})
    elif task.type == "Retrieval":
        qids = [f"q{j}" for j in range(len(d["qi"]))]
        dids = [f"d{j}" for j in range(len(d["di"]))]
        add_dataset(cache, repo, rev, {"corpus": {"_id": dids, "title": [""] * len(dids), "text": [texts[i] for i in d["di"]]}}, "corpus")
        add_dataset(cache, repo, rev, {"queries": {"_id": qids, "text": [texts[i] for i in d["qi"]]}}, "queries")
        pairs = [(qids[j], dids[k]) for j, rel in enumerate(d["relevant"]) for k in sorted(rel)]
        add_dataset(cache, repo, rev, {"test": {"query-id": [q for q, _ in pairs], "corpus-id": [c for _, c in pairs],
                                                "score": [1] * len(pairs)}})
    elif task.type == "Classification":
        add_dataset(cache, repo, rev, {"train": {"text": [texts[i] for i in d["tr"]], "label": list(d["ytr"])},
                                       "test": {"text": [texts[i] for i in d["te"]], "label": list(d["yte"])}})
    elif task.type == "Clustering":
        # The legacy layout the v2 task flattens (dataset_transform): rows of (sentences, labels) lists.
        add_dataset(cache, repo, rev, {"test": {"sentences": [[texts[i] for i in d["idx"]]], "labels": [list(d["labels"])]}})
    elif task.type == "PairClassification":
        add_dataset(cache, repo, rev, {"test": {"sent1": [[texts[i] for i in d["a"]]], "sent2": [[texts[i] for i in d["b"]]],
                                                "labels": [list(d["y"])]}})
    else:
        raise ValueError(task.type)
    return name
