"""`python -m l3prune download-model --model ORG/NAME[@REVISION] [--allow-download]`: a Hugging Face model into the hub
cache, for the extension's "Open Hugging Face Model…" (which asks the user first) and for scripts.

The model resolves as every verb's --model does (hfcache.py): a cached snapshot is used as it is, with no network;
one the cache lacks is downloaded only with --allow-download (never from a spec file) and only while the
environment does not say offline, its safetensors, JSON and tokenizer files alone. No run folder: stdout carries a
`download` event per file (protocol/events.schema.json), then one JSON line {"event": "model_ready", "repoId",
"commit", "path", "downloaded"}; exit 0, or 2 with one sentence on stderr; SIGTERM stops the download
between reads (huggingface_hub resumes its partial blob next time).
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import hfcache, specs
from .verbs import Advice, Job, Outcome, Verb, main_for

DownloadSpec = specs.spec_class("download-model", "DownloadSpec", __name__)


def _resolve(args) -> DownloadSpec:
    given = specs.gather("download-model", args)
    model = given.values.get("model")
    if isinstance(model, str) and hfcache.parse(model) is None:
        raise ValueError(f"download-model takes the repo id of a model on the Hugging Face Hub (org/name or org/name@revision), "
                         f"not {model!r}; a model folder needs no download")
    return DownloadSpec(**specs.resolve("download-model", given, paths=("model",)))


def _work(spec: DownloadSpec, job: Job) -> Outcome:
    # verbs.run_verb has fetched the model by now (hfcache.fetch): spec.model is its checked snapshot folder,
    # <cache>/models--{org}--{name}/snapshots/<commit>.
    folder = Path(spec.model)
    repo_id = folder.parents[1].name[len("models--"):].replace("--", "/", 1)
    return Outcome("model_ready", {"repoId": repo_id, "commit": folder.name, "path": str(folder), "downloaded": "downloaded" in job.state})


VERB = Verb(
    name="download-model",
    help="the hub cache's snapshot of a Hugging Face repo id, downloaded first (safetensors, JSON, tokenizer files) with --allow-download",
    resolve=lambda args, _world: _resolve(args),
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory while downloading; free memory and try again",
                              disk_full=f"the disk holding the Hugging Face cache {hfcache.hub_cache()} is full; free some space "
                                        "and try again (the download resumes where it stopped)"),
    user_errors=(ValueError,),
    run_folder=False,
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
