"""Shared fixtures and helpers: a tiny random Llama made here (always available), the demo model and evaluation
data (when set up), and the checks every verb's tests make of a run folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import l3prune  # noqa: E402,F401 - goes offline (l3prune/__init__.py) before any test imports huggingface_hub

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Each test session locks devices in its own folder: the one-run-per-device rule (devicelock.py) must not
# make two sessions on one machine (a developer's and CI's) refuse each other's runs.
if "L3PRUNE_LOCK_DIR" not in os.environ:
    import tempfile

    os.environ["L3PRUNE_LOCK_DIR"] = tempfile.mkdtemp(prefix="l3prune-test-locks-")

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocol"
DEMO_MODEL = REPO / ".demo" / "models" / "smollm2-135m"
DEMO_DATA = REPO / ".demo" / "data"
DEMO_TRIPLES = DEMO_DATA / "triples.jsonl"
WORKER = REPO / "worker"
# On a CPU shared with other jobs, OpenMP threads that spin while waiting for a busy core make every forward pass
# several times slower; sleeping instead changes nothing the tests check.
ENV = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def pytest_configure(config):
    # -m "not big" leaves out the tests that build models of gigabytes (test_export_onnx_2gib.py).
    config.addinivalue_line("markers", "big: builds and exports a model past 2 GiB (about 10 GB of temp disk, a minute or two)")


# Hand-written NLI-style triples (premise, entailment, contradiction) for the tiny model.
TRIPLES = [
    ("A man is playing a guitar on stage.", "A person plays an instrument.", "Nobody is making music."),
    ("The cat sleeps on the warm sofa.", "A cat is resting.", "The cat is chasing a mouse outside."),
    ("Two kids run across the park.", "Children are outside.", "The kids are asleep indoors."),
    ("A woman is cooking pasta in the kitchen.", "Someone is preparing food.", "The woman is swimming in a lake."),
    ("The train arrives at noon.", "A train comes at midday.", "The train was cancelled yesterday."),
    ("He reads a book in the library.", "A man is reading.", "He is playing football."),
    ("A dog catches a red ball.", "An animal is playing.", "The dog is sleeping."),
    ("The market is crowded on Sunday.", "Many people are at the market.", "The market is empty."),
    ("A chef slices fresh tomatoes.", "Vegetables are being cut.", "The chef is driving a bus."),
    ("Rain falls over the quiet town.", "It is raining.", "The sky is clear and dry."),
    ("A girl paints a tree.", "A child is making art.", "The girl is running a race."),
    ("Workers repair the old bridge.", "A bridge is being fixed.", "The bridge is being demolished."),
]


def write_triples(path: Path, n: int | None = None) -> Path:
    rows = TRIPLES if n is None else [TRIPLES[i % len(TRIPLES)] for i in range(n)]
    with open(path, "w", encoding="utf-8") as fh:
        for q, p, neg in rows:
            fh.write(json.dumps({"query": q, "positive": p, "negative": neg}) + "\n")
    return path


def make_tiny_llama(path: Path, num_layers: int = 4) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    split = pre_tokenizers.Whitespace().pre_tokenize_str
    words = sorted({piece for row in TRIPLES for text in row for piece, _ in split(text)})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=48, intermediate_size=96, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=2, bos_token_id=2, tie_word_embeddings=False,
    )
    # Larger-than-default init so that layers actually change the residual stream and depths differ.
    cfg.initializer_range = 0.2
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def make_remote_code_model(source: Path, dest: Path, marker: Path, *, via: str = "config.json") -> Path:
    """A copy of a model folder that asks for its own code, as a hostile repository would ship it: `via`'s auto_map
    names modeling_evil.py, whose import writes `marker`. The marker's absence proves the code never ran."""
    import shutil

    shutil.copytree(source, dest)
    (dest / "modeling_evil.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('the model folder\\'s own code ran\\n')\n"
        "from transformers import LlamaModel, PreTrainedTokenizerFast\n\n\n"
        "class EvilModel(LlamaModel):\n    pass\n\n\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n",
        encoding="utf-8")
    f = dest / via
    cfg = json.loads(f.read_text(encoding="utf-8"))
    cfg["auto_map"] = ({"AutoModel": "modeling_evil.EvilModel"} if via == "config.json"
                       else {"AutoTokenizer": [None, "modeling_evil.EvilTokenizer"]})
    f.write_text(json.dumps(cfg), encoding="utf-8")
    return dest


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_triples(tmp_path_factory) -> Path:
    return write_triples(tmp_path_factory.mktemp("data") / "triples.jsonl")


@pytest.fixture(scope="session")
def demo_model() -> Path:
    if not (DEMO_MODEL / ".complete").exists():
        message = f"demo model {DEMO_MODEL} is absent; run scripts/setup-worker.sh to build it"
        # CI runs the set-up first, so there a missing demo model is a broken set-up, not a reason to skip.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DEMO_MODEL


@pytest.fixture(scope="session")
def schemas():
    """The checkout's protocol/ schemas (not the worker's packaged copy: what the extension reads is the reference),
    in one registry so their relative $refs resolve."""
    from referencing import Registry, Resource

    loaded = {f.relative_to(PROTOCOL).as_posix()[: -len(".schema.json")]: json.loads(f.read_text(encoding="utf-8"))
              for f in sorted(PROTOCOL.rglob("*.schema.json"))}
    registry = Registry().with_resources([(s["$id"], Resource.from_contents(s)) for s in loaded.values()])
    return {**loaded, "registry": registry}


def spec_validator(schemas, verb: str, resolved: bool = True):
    """A validator of a verb's spec as run.json holds it (every field: $defs/resolved), or as a spec file may."""
    import jsonschema

    s = schemas[f"specs/{verb}"]
    return jsonschema.Draft202012Validator({"$ref": s["$id"] + ("#/$defs/resolved" if resolved else "")}, registry=schemas["registry"])


@pytest.fixture(scope="session")
def eval_data() -> Path:
    """The demo data folder with the evaluation sets (sts.jsonl, eval/)."""
    if not (DEMO_DATA / "eval" / ".complete").exists():
        message = f"evaluation data {DEMO_DATA / 'eval'} is absent; run scripts/setup-worker.sh to build it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return DEMO_DATA


# ---------------------------------------------------------------------------------------------------------------
# the worker as the extension runs it, and what every run folder must satisfy
def worker_cli(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m l3prune ARGS` in a subprocess, as the extension starts it."""
    return subprocess.run([sys.executable, "-m", "l3prune", *args], capture_output=True, text=True, timeout=timeout, cwd=WORKER,
                          env={**ENV, **(env or {})})


def run_inproc(verb: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """The real CLI entry in this process (no interpreter start-up): for checks that end before any model loads.
    Signal handlers are put back afterwards."""
    from l3prune.__main__ import main

    try:
        rc = main([verb, *argv])
    except SystemExit as e:  # argparse
        rc = e.code
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def read_events(run_dir: Path, heartbeats: bool = True) -> list[dict]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    return events if heartbeats else [e for e in events if e["event"] != "heartbeat"]


def validate_run(run_dir: Path, schemas) -> tuple[dict, list[dict]]:
    """run.json and every event against the protocol's schemas; returns run.json and the events but heartbeats."""
    import jsonschema

    reg = schemas["registry"]
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schemas["run"], registry=reg).validate(run)
    # The worker stores the resolved spec: every field of its verb's schema.
    spec_validator(schemas, run["verb"]).validate(run["spec"])
    v = jsonschema.Draft202012Validator(schemas["events"], registry=reg)
    events = read_events(run_dir)
    for e in events:
        v.validate(e)
    return run, [e for e in events if e["event"] != "heartbeat"]


def assert_failed_cleanly(p: subprocess.CompletedProcess, run_dir: Path, schemas, *needles: str, kind: str = "user") -> dict:
    """Exit 2, one sentence on stderr naming each needle, and a run folder that says failed with that sentence."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert err.count("\n") == 0, f"one sentence on stderr, got: {err!r}"
    for n in needles:
        assert n in err, (n, err)
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "failed" and run["error"]["message"] in err and run["error"]["kind"] == kind
    assert events[-1]["event"] == "error" and events[-1]["kind"] == kind
    return run
