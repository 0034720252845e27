"""The train spec: protocol/specs/train.schema.json, from a spec file and flags, or read back from run.json for
--resume. Defaults, bounds and messages all come from the schema (specs.py); what is left here is where a spec
comes from."""
from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from .. import specs
from ..fileio import MAX_RUN_JSON_BYTES, JsonFileError, read_json, run_folder_link_problem, show

STALE_HEARTBEAT_S = 30.0
PATHS = ("model", "data")

TrainSpec = specs.spec_class("train", "TrainSpec", __name__)
SPEC_FIELDS = specs.fields("train")
# Every spec field has a flag (dest = the field's name); --resume refuses them all but consent, which is never
# taken from run.json (specs.CONSENT_FIELDS): a resumed run gets it from its own command line or not at all.
FLAG_FIELDS = SPEC_FIELDS
# devices too: a resumed run may go onto another number of processes (the launch, not the recipe, changed).
RESUME_FLAGS = (*specs.CONSENT_FIELDS, "devices")
SPEC_FLAGS = {
    "keep": {"help": "number of layers to keep (the first N)"},
    "mergeAtEnd": {"flag": "--merge", "help": "save the merged pruned model to <run-dir>/model at the end (default: yes)"},
}


def _derive(values: dict) -> dict:
    """loraAlpha null (the default): 2 x loraR, the paper's rule; run.json stores the number."""
    if values.get("loraAlpha") is None:
        r = values.get("loraR", specs.defaults("train")["loraR"])
        return {"loraAlpha": float(2 * r)}
    return {}


def _resolve(given: specs.Given) -> TrainSpec:
    # Links resolved too, so that --resume from another working directory finds the very same files.
    return TrainSpec(**specs.resolve("train", given, derive=_derive, paths=PATHS, resolve_links=True))


def make_spec(raw: dict, *, source: str) -> TrainSpec:
    """A train spec from a dict of fields (camelCase or snake_case), checked and resolved; source names the dict
    in messages."""
    return _resolve(specs.Given(specs.from_dict("train", raw, source), source=source, from_file=True))


def spec_from_args(args: argparse.Namespace) -> TrainSpec:
    return _resolve(specs.gather("train", args))


def resume_spec(args: argparse.Namespace, *, check_status: bool = True) -> TrainSpec:
    """The spec of the run in --run-dir, from its run.json, if that run can be resumed; consent is this command
    line's (run.json's trustRemoteCode is only the record of the last invocation's)."""
    given = [f for f in specs.flags_given("train", args) if f not in {f"--{specs.kebab(k)}" for k in RESUME_FLAGS}]
    given += ["--spec"] if args.spec else []
    if given:
        raise ValueError(f"--resume takes the spec from run.json; leave out {given[0]}")
    # A run folder can come from a cloned repository: one with links in it is refused before anything is read.
    problem = run_folder_link_problem(args.run_dir)
    if problem:
        raise ValueError(f"cannot resume: {problem}")
    rj = Path(args.run_dir) / "run.json"
    try:
        state = read_json(rj, limit=MAX_RUN_JSON_BYTES)
    except JsonFileError as e:
        if e.missing:
            raise ValueError(f"nothing to resume: {rj} does not exist; start a run without --resume") from None
        raise ValueError(f"cannot resume: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot resume: {rj} does not hold a JSON object; it is not a run.json the worker wrote")
    if state.get("verb") != "train" or not isinstance(state.get("spec"), dict):
        raise ValueError(f"cannot resume: {rj} is not a train run (verb {show(state.get('verb'))})")
    source = f"run.json in {args.run_dir}"
    if not check_status:
        # torchrun ranks > 0: rank 0 decides (and may already have set the status back to running).
        return _stored_spec(state["spec"], source, args)
    status = state.get("status")
    if status == "succeeded":
        raise ValueError(f"cannot resume: the run in {args.run_dir} already finished; start a new run")
    if status == "running" and _alive(state.get("pid")) and not _stale(state.get("heartbeatAt")):
        raise ValueError(f"cannot resume: the run in {args.run_dir} is still running (pid {show(state.get('pid'))}); cancel it first")
    return _stored_spec(state["spec"], source, args)


def _stored_spec(stored: dict, source: str, args: argparse.Namespace) -> TrainSpec:
    values = specs.from_dict("train", stored, source)
    for k in specs.CONSENT_FIELDS:
        values[k] = getattr(args, k, None) is True
    if getattr(args, "devices", None) is not None:
        values["devices"] = args.devices
    return _resolve(specs.Given(values, source=source, from_file=True))


def _alive(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: a pid past the C range is no process
        return False
    except PermissionError:
        return True
    return True


def _stale(iso) -> bool:
    try:
        t = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return True
    if t.tzinfo is None:
        # A time without a zone (not what the worker writes) is read as UTC rather than failing to compare.
        t = t.replace(tzinfo=dt.timezone.utc)
    try:
        return (dt.datetime.now(dt.timezone.utc) - t).total_seconds() > STALE_HEARTBEAT_S
    except OverflowError:  # year 1 or 9999 with an offset: outside what datetime can compare, and no heartbeat
        return True
