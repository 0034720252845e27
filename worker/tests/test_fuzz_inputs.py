"""Generates 2,900 cases: 2,100 data JSONL files through read_triples, 800 train specs (500 dicts through make_spec, 150 spec files through spec_from_args, 150 run.json files through resume_spec).

Seeded random generation, no extra dependencies. Every data file either gives triples whose fields are strings
(text a tokenizer accepts) or raises a DataError of one line naming file:line (file alone when no line is at
fault); every spec is either accepted, resolved and valid against protocol/specs/train.schema.json, or refused with a
one-line ValueError/TypeError. Nothing else may escape, and no case may take long.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from l3prune.data import DataError, read_triples

DATA_CASES = 2100
SPEC_DICT_CASES = 500
SPEC_FILE_CASES = 150
RESUME_CASES = 150
PER_CASE_S = 5.0


@contextmanager
def bounded(what: str):
    """A hard time bound per case (SIGALRM), where the platform has one; plus the measured time."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} took over {PER_CASE_S} s")

    armed = hasattr(signal, "setitimer")
    if armed:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, PER_CASE_S)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def one_line(message: str) -> bool:
    # str.splitlines breaks on every Unicode line boundary, not only \n.
    return len(message.splitlines()) <= 1 and len(message) < 1000


# ---------------------------------------------------------------------------------------------------------------
# Data lines. Each generator returns (bytes without the line end, verdict, expected triple or None), verdict
# being "ok", "blank", "bad" (must be refused at this line) or "unknown" (a mutation: either is fine).
TEXTS = ["A man plays a guitar.", "Ünïcødé — «quotes» 日本語 🚀", "tab\tinside", "x", "  padded  ", "line\u2028sep", "nul\u0000char", "é" * 300]


def rand_text(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(TEXTS)
    alphabet = "abc xyz\u00e9\u65e5\U0001f680\u0085\u000b\u000c\u001c\u2029\"\\/"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) + "q"


def valid_line(rng: random.Random):
    obj = {"query": rand_text(rng), "positive": rand_text(rng), "negative": rand_text(rng)}
    if rng.random() < 0.3:
        obj["instruction"] = rng.choice([None, "Retrieve passages", rand_text(rng)])
    if rng.random() < 0.3:
        obj["task"] = rng.choice([None, "nli", rand_text(rng)])
    if rng.random() < 0.2:
        obj["extra"] = rng.choice([1, None, [1, 2], {"a": "b"}])
    keys = list(obj)
    rng.shuffle(keys)
    obj = {k: obj[k] for k in keys}
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.5)
    expected = (obj["query"], obj["positive"], obj["negative"], obj.get("instruction"), obj.get("task"))
    return text.encode("utf-8"), "ok", expected


WRONG = [1, -1, 0, 1.5, float("nan"), float("inf"), True, False, None, [], ["q"], {}, {"text": "q"}]


def bad_field_line(rng: random.Random):
    obj = {"query": "q", "positive": "p", "negative": "n"}
    field = rng.choice(["query", "positive", "negative", "instruction", "task"])
    kind = rng.choice(["missing", "wrong", "empty", "surrogate"])
    if kind == "missing" and field in ("query", "positive", "negative"):
        del obj[field]
    elif kind == "wrong":
        value = rng.choice(WRONG)
        if value is None and field in ("instruction", "task"):
            value = 5  # None is allowed for optional fields
        obj[field] = value
    elif kind == "empty" and field in ("query", "positive", "negative"):
        obj[field] = rng.choice(["", " ", "\t\n", "\u3000"])
    else:
        # A JSON escape of an unpaired surrogate: json.loads makes it a str no tokenizer takes.
        text = json.dumps(obj)
        pos = text.index(f'"{obj.get(field, "q")}"') if field in obj else None
        escape = rng.choice(["\\ud800", "\\udfff", "\\udc80x", "a\\ud83d"])
        if pos is None:
            text = text[:-1] + f', "{field}": "{escape}"}}'
        else:
            text = text[: pos + 1] + escape + text[pos + 1 :]
        return text.encode("utf-8"), "bad", None
    return json.dumps(obj, allow_nan=True).encode("utf-8"), "bad", None


def not_object_line(rng: random.Random):
    value = rng.choice([[], ["q", "p", "n"], "q", 1, 1.5, None, True, [{"query": "q"}]])
    return json.dumps(value).encode("utf-8"), "bad", None


def hostile_json_line(rng: random.Random):
    kind = rng.choice(["bigint", "deep", "nan", "huge_float", "dupkeys", "trailing", "bom", "bytes"])
    if kind == "bigint":
        return b'{"query": ' + b"9" * rng.choice([4301, 10_000]) + b', "positive": "p", "negative": "n"}', "bad", None
    if kind == "deep":
        depth = rng.choice([900, 5_000, 100_000])
        return b'{"query": ' + b"[" * depth + b"]" * depth + b', "positive": "p", "negative": "n"}', "bad", None
    if kind == "nan":
        return rng.choice([b'{"query": NaN, "positive": "p", "negative": "n"}', b'{"query": "q", "positive": -Infinity, "negative": "n"}']), "bad", None
    if kind == "huge_float":
        return b'{"query": 1e400, "positive": "p", "negative": "n"}', "bad", None
    if kind == "dupkeys":
        # The last duplicate wins, as in every JSON parser.
        return b'{"query": 5, "query": "q", "positive": "p", "negative": "n"}', "ok", ("q", "p", "n", None, None)
    if kind == "trailing":
        return b'{"query": "q", "positive": "p", "negative": "n"} {"x": 1}', "bad", None
    if kind == "bom":
        return b'\xef\xbb\xbf{"query": "q", "positive": "p", "negative": "n"}', "bad", None
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).replace(b"\n", b"").replace(b"\r", b"")
    return raw, "unknown", None


def invalid_utf8_line(rng: random.Random):
    line, _, _ = valid_line(rng)
    bad = rng.choice([b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe6\x97", b"\x80"])
    at = rng.randint(0, len(line))
    return line[:at] + bad + line[at:], "bad", None


def mutated_line(rng: random.Random):
    line, _, _ = valid_line(rng)
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] = rng.choice([rng.randrange(256), 0x22, 0x7D, 0x5C, 0x20])
    if rng.random() < 0.5:
        data = data[: rng.randint(0, len(data))]
    data = bytes(data).replace(b"\n", b" ").replace(b"\r", b" ")
    return data, "unknown", None


def blank_line(rng: random.Random):
    return rng.choice([b"", b" ", b"\t", b"   \t ", b"\x0c", b"\x0b"]), "blank", None


def long_line(rng: random.Random):
    n = rng.choice([10_000, 200_000, 1_000_000])
    obj = {"query": "q" * n, "positive": "p", "negative": "é" * (n // 10)}
    return json.dumps(obj, ensure_ascii=False).encode("utf-8"), "ok", (obj["query"], "p", obj["negative"], None, None)


LINE_KINDS = [
    (valid_line, 40), (bad_field_line, 10), (not_object_line, 3), (hostile_json_line, 6), (invalid_utf8_line, 5),
    (mutated_line, 10), (blank_line, 8), (long_line, 1),
]


def gen_file(rng: random.Random):
    """Bytes of a JSONL file and its lines' verdicts (one per line end, in order)."""
    lines = []
    for _ in range(rng.randint(0, 6)):
        make = rng.choices([k for k, _ in LINE_KINDS], weights=[w for _, w in LINE_KINDS])[0]
        lines.append(make(rng))
    out = bytearray()
    for i, (body, _, _) in enumerate(lines):
        out += body
        if i < len(lines) - 1 or rng.random() < 0.8:
            end = rng.choice([b"\n", b"\n", b"\n", b"\r\n", b"\r"])
            if end == b"\r" and i + 1 < len(lines) and not lines[i + 1][0]:
                end = b"\n"  # a lone CR before an empty line's LF would read as one CRLF
            out += end
    return bytes(out), lines


def check_data_file(path: Path, data: bytes, lines) -> str:
    path.write_bytes(data)
    try:
        with bounded(f"read_triples of {path.name}"):
            triples = read_triples(path)
    except DataError as e:
        message = str(e)
        assert one_line(message), f"one line: {message[:300]!r}"
        assert str(path) in message, f"the file is named: {message[:200]}"
        verdicts = [v for _, v, _ in lines]
        if "holds no triples" in message:
            assert all(v in ("blank", "unknown", "bad") for v in verdicts) and "bad" not in verdicts and "ok" not in verdicts
            return "error"
        m = re.search(re.escape(str(path)) + r":(\d+): ", message)
        assert m, f"a line error names file:line: {message[:200]}"
        at = int(m.group(1))
        first_bad = next((i + 1 for i, v in enumerate(verdicts) if v == "bad"), None)
        assert 1 <= at <= len(lines), f"line {at} of {len(lines)}"
        assert verdicts[at - 1] in ("bad", "unknown"), f"line {at} ({verdicts[at - 1]}) is refused: {message[:200]}"
        assert first_bad is None or at <= first_bad, f"the first bad line ({first_bad}) is the one reported, not {at}"
        return "error"
    verdicts = [v for _, v, _ in lines]
    assert "bad" not in verdicts, f"a bad line went through: {[b[:80] for b, v, _ in lines if v == 'bad']}"
    known = [exp for _, v, exp in lines if v == "ok"]
    assert len(known) <= len(triples) <= len(known) + verdicts.count("unknown")
    for t in triples:
        for value in (t.query, t.positive, t.negative):
            assert isinstance(value, str) and value.strip()
            value.encode("utf-8")  # text a tokenizer takes: no unpaired surrogates
        for value in (t.instruction, t.task):
            assert value is None or isinstance(value, str)
            if value is not None:
                value.encode("utf-8")
    if "unknown" not in verdicts:
        assert [(t.query, t.positive, t.negative, t.instruction, t.task) for t in triples] == known
    return "ok"


def test_fuzz_data_jsonl_2100_generated_files(tmp_path):
    rng = random.Random(20261129)
    outcomes = {"ok": 0, "error": 0}
    started = time.perf_counter()
    for i in range(DATA_CASES):
        data, lines = gen_file(rng)
        try:
            outcomes[check_data_file(tmp_path / f"case-{i}.jsonl", data, lines)] += 1
        except AssertionError as e:
            raise AssertionError(f"case {i}: {e}; file bytes: {data[:400]!r}") from None
        except Exception as e:  # anything but DataError escaping read_triples is the finding this test is for
            raise AssertionError(f"case {i}: read_triples raised {type(e).__name__}: {str(e)[:300]}; file bytes: {data[:400]!r}") from None
    elapsed = time.perf_counter() - started
    assert outcomes["ok"] > DATA_CASES / 10 and outcomes["error"] > DATA_CASES / 10, outcomes
    assert elapsed / DATA_CASES < 0.05, f"{elapsed:.1f} s for {DATA_CASES} files"
    # Not a file at all: a folder, a missing path, a path with a NUL.
    for weird in (tmp_path, tmp_path / "missing.jsonl", str(tmp_path / "nul\0.jsonl")):
        with pytest.raises(DataError) as e:
            read_triples(weird)
        assert one_line(str(e.value))


# ---------------------------------------------------------------------------------------------------------------
# Train specs.
FIELDS = {
    "steps": [1, 10], "batchSize": [1, 8], "learningRate": [1e-4, 2e-4, 1], "warmupSteps": [0, 5], "maxLength": [2, 128],
    "loraR": [1, 16], "loraAlpha": [1, 32.5], "loraDropout": [0, 0.05, 0.999], "targetModules": [["q_proj"], ["q_proj", "v_proj"]],
    "scale": [20, 50.0], "pooling": ["mean", "weighted_mean", "last_token"], "checkpointEvery": [1, 100], "seed": [0, -3, 2**40],
    "device": ["auto", "cpu", "cuda", "cuda:1"], "precision": ["auto", "bf16", "fp32"], "gradientCheckpointing": ["auto", True, False],
    "taskHomogeneous": [True, False], "mergeAtEnd": [True, False], "trustRemoteCode": [True, False],
}
HOSTILE = [
    None, True, False, 0, -1, -(2**63) - 1, 2**63, 2**64, 10**400, -(10**400), 1.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"),
    "", " ", "5", "auto", "cuda:\u0663", "cuda:-1", "CPU", "a\nb", "x" * 100_000, [], [""], [1], ["q_proj", None], {}, {"a": 1},
    "../../etc", "~", "~/models/m", "~nosuchuser_l3prune/m", "/abs/../../x", "a/./b/../../../c", "nul\0path", "\u202eevil", "C:\\models\\m",
]
PATHS = ["models/m", "../models/m", "../../../../../../../../tmp/x", "/abs/path/../m", "./data/../data/t.jsonl", "~/m", "~nosuchuser_l3prune/d", "a" * 5000, "dir/" * 300 + "m", "\u65e5\u672c/\U0001f680", " spaced ", "nul\0", "line\nbreak"]
SNAKE = {"batchSize": "batch_size", "learningRate": "learning_rate", "maxLength": "max_length", "loraR": "lora_r", "targetModules": "target_modules"}


def gen_spec_dict(rng: random.Random) -> dict:
    spec: dict = {"model": rng.choice(PATHS), "data": rng.choice(PATHS), "keep": rng.choice([1, 4, 2**31])}
    for name, values in FIELDS.items():
        if rng.random() < 0.3:
            spec[SNAKE.get(name, name) if rng.random() < 0.2 else name] = rng.choice(values)
    if rng.random() < 0.15:
        spec["device"] = rng.choice(["cuda:\u0663", "cuda:\uff11", "cuda:0\n", "cuda: 1", "cuda:01", "cuda:1e3", "cpu ", "gpu", "mps", "cuda:99999999999999999999"])
    for _ in range(rng.randint(0, 3)):
        r = rng.random()
        if r < 0.7:
            spec[rng.choice(["model", "data", "keep", *FIELDS])] = rng.choice(HOSTILE)
        elif r < 0.85:
            spec.pop(rng.choice(["model", "data", "keep"]), None)
        else:
            spec[rng.choice(["unknown", "Keep", "__proto__", "constructor", "a\nb", "x" * 10_000, ""])] = 1
    return spec


@pytest.fixture(scope="module")
def train_schema(schemas):
    """protocol/specs/train.schema.json as run.json holds a train spec: every field."""
    from conftest import spec_validator

    return spec_validator(schemas, "train")


def check_spec_outcome(make, schema) -> str:
    from l3prune.train import TrainSpec

    try:
        with bounded("spec validation"):
            spec = make()
    except (ValueError, TypeError) as e:
        message = str(e)
        assert one_line(message), f"one line: {message[:300]!r}"
        assert message.strip(), "a message at all"
        assert not message.startswith(("Exceeds the limit", "embedded null", "can't ", "'")), f"a clear sentence, not a bare library message: {message[:200]}"
        return "refused"
    assert isinstance(spec, TrainSpec)
    resolved = spec.to_json()
    # Accepted means valid: against the schema run.json's spec is checked with, and the paths resolved.
    schema.validate(resolved)
    for name in ("model", "data"):
        value = resolved[name]
        assert os.path.isabs(value) and os.path.normpath(value) == value, f"{name} is absolute and normalized: {value[:120]}"
        assert ".." not in Path(value).parts and "\0" not in value, f"no '..' survives in {name}"
    assert re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", resolved["device"]), f"device {resolved['device']!r} is one torch takes"
    json.dumps(resolved, allow_nan=False)  # run.json must be able to hold it
    return "accepted"


def run_spec_cases(cases, schema):
    outcomes = {"accepted": 0, "refused": 0}
    started = time.perf_counter()
    for i, (describe, make) in enumerate(cases):
        try:
            outcomes[check_spec_outcome(make, schema)] += 1
        except AssertionError as e:
            raise AssertionError(f"case {i} ({describe()[:300]}): {e}") from None
        except Exception as e:
            raise AssertionError(f"case {i} ({describe()[:300]}): {type(e).__name__} escaped: {str(e)[:300]}") from None
    return outcomes, time.perf_counter() - started


def test_fuzz_train_spec_dicts_500_through_make_spec(train_schema):
    from l3prune.train import make_spec

    rng = random.Random(7)
    specs = [gen_spec_dict(rng) for _ in range(SPEC_DICT_CASES)]
    cases = [(lambda s=s: repr(s), lambda s=s: make_spec(dict(s), source="the fuzz")) for s in specs]
    outcomes, elapsed = run_spec_cases(cases, train_schema)
    assert outcomes["accepted"] > SPEC_DICT_CASES / 10 and outcomes["refused"] > SPEC_DICT_CASES / 10, outcomes
    assert elapsed / SPEC_DICT_CASES < 0.05, f"{elapsed:.1f} s"


def flag_args(**given) -> argparse.Namespace:
    from l3prune.train import FLAG_FIELDS

    ns = argparse.Namespace(**{k: None for k in FLAG_FIELDS}, spec=None, resume=False, run_dir=None)
    for k, v in given.items():
        setattr(ns, k, v)
    return ns


def gen_json_bytes(rng: random.Random, value) -> bytes:
    r = rng.random()
    text = json.dumps(value, allow_nan=True, default=str) if value is not ... else "{}"
    if r < 0.6:
        return text.encode("utf-8")
    if r < 0.7:
        data = bytearray(text.encode("utf-8"))
        for _ in range(rng.randint(1, 3)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return rng.choice([
        b"", b"[]", b"null", b'"spec"', b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"{" * 3, b"[" * 100_000 + b"]" * 100_000,
        b'{"keep": ' + b"7" * 5000 + b"}", b'{"model": "m", "data": "d", "keep": 1, "keep": "x"}', b'{"model": "m", "data": "d", "keep": NaN}',
        text.encode("utf-8")[: len(text) // 2],
    ])


def test_fuzz_train_spec_files_150_through_spec_from_args(tmp_path, train_schema):
    from l3prune.train import spec_from_args

    rng = random.Random(8)
    cases = []
    for i in range(SPEC_FILE_CASES):
        spec_file = tmp_path / f"spec-{i}.json"
        spec_file.write_bytes(gen_json_bytes(rng, gen_spec_dict(rng)))
        flags = {}
        if rng.random() < 0.3:
            flags = {"keep": rng.choice([1, 3]), "model": "models/m", "data": "d.jsonl"}
        args = flag_args(spec=str(spec_file), **flags)
        cases.append((lambda f=spec_file: repr(f.read_bytes()[:300]), lambda a=args: spec_from_args(a)))
    outcomes, elapsed = run_spec_cases(cases, train_schema)
    assert outcomes["accepted"] > 5 and outcomes["refused"] > 5, outcomes
    assert elapsed / SPEC_FILE_CASES < 0.05, f"{elapsed:.1f} s"


def test_fuzz_resume_150_run_json_files_through_resume_spec(tmp_path, train_schema):
    from l3prune.events import now_iso
    from l3prune.train import resume_spec

    rng = random.Random(9)
    cases = []
    for i in range(RESUME_CASES):
        run_dir = tmp_path / f"run-{i}"
        run_dir.mkdir()
        state = {
            "schemaVersion": 1, "runId": run_dir.name, "verb": "train", "spec": gen_spec_dict(rng),
            "status": rng.choice(["failed", "cancelled", "running", "succeeded"]),
            # A live process other than this one (the parent), or one that cannot exist.
            "pid": rng.choice([os.getppid(), 2**22 + 12345, 0, -5, 10**30, "123", None]),
            "startedAt": now_iso(),
            "heartbeatAt": rng.choice([now_iso(), "2020-01-01T00:00:00.000Z", "2026-11-29T01:58:33", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "garbage", 5, None]),
            "endedAt": None, "error": None, "result": None,
        }
        if rng.random() < 0.2:
            state[rng.choice(["verb", "spec", "status"])] = rng.choice(HOSTILE[:20])
        (run_dir / "run.json").write_bytes(gen_json_bytes(rng, state if rng.random() < 0.9 else rng.choice([[], "x", 3, None])))
        check = rng.random() < 0.8
        cases.append((lambda d=run_dir: repr((d / "run.json").read_bytes()[:300]), lambda d=run_dir, c=check: resume_spec(flag_args(run_dir=str(d), resume=True), check_status=c)))
    # No run.json at all, and a folder where it should be.
    (tmp_path / "empty").mkdir()
    (tmp_path / "folder" / "run.json").mkdir(parents=True)
    for d in ("empty", "folder"):
        cases.append((lambda d=d: d, lambda d=d: resume_spec(flag_args(run_dir=str(tmp_path / d), resume=True))))
    outcomes, elapsed = run_spec_cases(cases, train_schema)
    assert outcomes["accepted"] > 3 and outcomes["refused"] > 20, outcomes
    assert elapsed / RESUME_CASES < 0.05, f"{elapsed:.1f} s"
