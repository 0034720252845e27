"""`python -m l3prune mteb-tasks`: the MTEB tasks *Evaluate…* offers beside the built-in tasks, and which run offline.

One JSON line on stdout (protocol/mteb-tasks-report.schema.json): every public text task of the installed mteb
package of the given types and languages, with its main score, the hub dataset and revision it pins, and whether
that dataset is in the local Hugging Face datasets cache (mteb_adapter.cache_state), since the worker loads task
data offline unless the user allows a download. Without mteb the verb fails with one sentence saying how to
install it, and the extension offers the built-in tasks only.
"""
from __future__ import annotations

import sys

from . import specs
from .events import now_iso
from .verbs import Advice, Job, Outcome, Verb, main_for

MtebTasksSpec = specs.spec_class("mteb-tasks", "MtebTasksSpec", __name__)


def report(types, languages) -> dict:
    from . import mteb_adapter

    tasks = mteb_adapter.list_tasks(types, languages)
    return {"time": now_iso(), "mtebVersion": mteb_adapter.version(), "datasetsCache": mteb_adapter.datasets_cache_dir(),
            "tasks": tasks}


def _work(spec, job: Job) -> Outcome:
    return Outcome("mteb_tasks", report(spec.types, spec.languages))


VERB = Verb(
    name="mteb-tasks",
    help="list the MTEB tasks of the installed mteb package, each with whether its data is in the local datasets cache",
    resolve=lambda args, _world: MtebTasksSpec(**specs.resolve("mteb-tasks", specs.gather("mteb-tasks", args))),
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory while listing MTEB tasks", disk_full="the disk is full"),
    run_folder=False,
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
