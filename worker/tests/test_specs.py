"""protocol/specs/*.schema.json as the worker reads them: every field a flag, every default the schema's, every
refusal one sentence that names the field; and the schemas agree with the code that consumes them."""
from __future__ import annotations

import argparse
import json

import jsonschema
import pytest

from l3prune import specs

VERBS = ("analyze", "train", "evaluate", "export-onnx", "export-st", "encode", "convert-safetensors", "download-model", "devices", "preview-data", "mteb-tasks")


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


@pytest.mark.parametrize("verb", VERBS)
def test_each_spec_schema_is_complete_and_says_every_default(verb):
    s = specs.spec_schema(verb)
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$id"] == f"https://l3prune-studio.local/protocol/specs/{verb}.schema.json" and s["title"]
    assert s["additionalProperties"] is False
    required = set(s.get("required", []))
    conditionally = {"model"} if verb in ("evaluate", "export-onnx", "export-st", "encode") else set()  # or fromRun
    for name, prop in s["properties"].items():
        assert prop.get("description"), f"{verb}.{name} has no description"
        if name not in required | conditionally:
            assert "default" in prop, f"{verb}.{name} is optional but has no default"
            jsonschema.Draft202012Validator(prop).validate(prop["default"])
    # The form run.json stores: every field present.
    assert s["$defs"]["resolved"]["required"] == list(s["properties"])
    for node in walk(s):
        if "pattern" in node:
            assert node["pattern"] in specs.PATTERN_WORDS, f"no words for pattern {node['pattern']!r}: add them to specs.PATTERN_WORDS"


def test_the_code_agrees_with_the_schemas():
    from l3prune import evaltasks
    from l3prune.encoder import POOLINGS

    for verb in ("analyze", "train", "evaluate", "export-onnx"):
        assert tuple(specs.spec_schema(verb)["properties"]["pooling"]["enum"]) == POOLINGS
    ev = specs.spec_schema("evaluate")["properties"]
    assert tuple(ev["tasks"]["items"]["enum"]) == evaltasks.TASK_KEYS == tuple(ev["tasks"]["default"])
    assert ev["maxExamples"]["minimum"] == evaltasks.MIN_CAP
    from l3prune.__main__ import verbs

    run_verbs = [name for name, v in verbs().items() if v.run_folder]
    assert set(specs.schema("run")["properties"]["verb"]["enum"]) == set(run_verbs)
    assert set(run_verbs) | {"convert-safetensors", "download-model", "devices", "preview-data", "mteb-tasks"} == set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_spec_field_has_a_flag_and_the_typed_view_takes_the_schemas_defaults(verb):
    from l3prune.__main__ import verbs

    p = argparse.ArgumentParser()
    from l3prune.verbs import add_arguments

    add_arguments(p, verbs()[verb])
    dests = {a.dest for a in p._actions}
    assert set(specs.fields(verb)) <= dests
    if verb in ("convert-safetensors", "download-model"):
        return
    module = {"analyze": "analyze", "train": "train", "evaluate": "evaluate", "export-onnx": "export_onnx", "export-st": "export_st", "encode": "encode", "devices": "devices", "preview-data": "preview", "mteb-tasks": "mteb_tasks"}[verb]
    import importlib

    view = {"analyze": "AnalyzeSpec", "train": "TrainSpec", "evaluate": "EvalSpec", "export-onnx": "ExportSpec", "export-st": "ExportStSpec", "encode": "EncodeSpec", "devices": "DevicesSpec", "preview-data": "PreviewSpec", "mteb-tasks": "MtebTasksSpec"}[verb]
    cls = getattr(importlib.import_module(f"l3prune.{module}"), view)
    import dataclasses

    got = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory()) for f in dataclasses.fields(cls)
           if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    assert got == specs.defaults(verb)


def resolve_train(values: dict, flags=()):
    given = specs.Given({"model": "m", "data": "d", "keep": 2, **values}, flags=set(flags), source="spec file s.json", from_file=True)
    return specs.resolve("train", given, paths=("model", "data"))


@pytest.mark.parametrize(
    "values, flags, sentence",
    [
        ({"steps": 0}, (), "spec field 'steps' must be at least 1, got 0"),
        ({"steps": 0}, ("steps",), "--steps must be at least 1, got 0"),
        ({"pooling": "max"}, (), "spec field 'pooling' must be one of mean, weighted_mean, last_token, got 'max'"),
        ({"loraR": "16"}, (), "spec field 'loraR' must be a whole number, got '16'"),
        ({"mergeAtEnd": 1}, (), "spec field 'mergeAtEnd' must be true or false, got 1"),
        ({"learningRate": float("nan")}, (), "spec field 'learningRate' must be a number, got nan"),
        ({"learningRate": 0}, (), "spec field 'learningRate' must be a positive number, got 0"),
        ({"seed": 2**64}, (), "spec field 'seed' must be between -2^63 and 2^64-1, got 18446744073709551616"),
        ({"model": "a\0b"}, (), "spec field 'model' must be a path (not blank, no NUL character), got 'a\\x00b'"),
        # Python's $ also matches before a final newline; Ajv's (the extension's) does not, and neither do we.
        ({"device": "cuda:0\n"}, (), "spec field 'device' must be auto, cpu, cuda or cuda:N, got 'cuda:0\\n'"),
        ({"device": "cuda:\u0663"}, (), "spec field 'device' must be auto, cpu, cuda or cuda:N"),
        ({"targetModules": ["q_proj", ""]}, (), "spec field 'targetModules' has '', which is not a non-empty string"),
    ],
)
def test_a_refused_spec_gets_one_sentence_naming_the_field(values, flags, sentence):
    with pytest.raises(specs.SpecError) as e:
        resolve_train(values, flags)
    assert sentence in str(e.value) and len(str(e.value).splitlines()) == 1


def test_missing_and_unknown_fields_are_named_with_what_to_do():
    with pytest.raises(specs.SpecError, match=r"^no 'keep' given \(neither as --keep nor in spec file s.json\); it is required$"):
        specs.resolve("train", specs.Given({"model": "m", "data": "d"}, source="spec file s.json", from_file=True))
    with pytest.raises(specs.SpecError, match=r"spec file s.json has unknown field 'stpes'; allowed: model, keep, data, steps, "):
        specs.from_dict("train", {"stpes": 3}, "spec file s.json")


def test_snake_case_is_accepted_integral_numbers_become_ints_and_defaults_fill_the_rest():
    raw = specs.from_dict("train", {"model": "m", "data": "d", "keep": 2.0, "batch_size": 8, "scale": 20}, "x")
    v = specs.resolve("train", specs.Given(raw))
    assert v["keep"] == 2 and isinstance(v["keep"], int) and v["batchSize"] == 8
    assert v["scale"] == 20.0 and isinstance(v["scale"], float)
    assert {k: v[k] for k in specs.defaults("train") if k not in ("batchSize", "scale")} == {
        k: d for k, d in specs.defaults("train").items() if k not in ("batchSize", "scale")}


def test_a_spec_file_that_is_not_json_is_one_sentence(tmp_path):
    for content, needle in ((b"{", "is not valid JSON (line 1"), (b'{"keep": NaN}', "NaN is not a JSON number"),
                            (b"[" * 100_000, "nested too deeply"), (b'{"keep": ' + b"7" * 5000 + b"}", "more digits"),
                            (b"\xff{}", "is not UTF-8"), (b"[]", "must hold a JSON object of train fields")):
        f = tmp_path / "s.json"
        f.write_bytes(content)
        with pytest.raises(specs.SpecError) as e:
            specs.read_spec_file("train", f)
        assert needle in str(e.value) and str(f) in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
    with pytest.raises(specs.SpecError, match="does not exist; pass an existing JSON file with --spec"):
        specs.read_spec_file("train", tmp_path / "none.json")


def test_the_encoder_info_train_writes_is_what_its_schema_says(tmp_path):
    ok = {"pooling": "mean", "maxLength": 24, "keep": 2, "sourceModel": "/models/m", "scale": 50.0}
    assert specs.errors("encoder-info", ok) == []
    assert specs.errors("encoder-info", {**ok, "pooling": "max"})
    from l3prune.variant import ENCODER_INFO, read_encoder_info

    (tmp_path / ENCODER_INFO).write_text(json.dumps(ok))
    assert read_encoder_info(tmp_path) == ok
    (tmp_path / ENCODER_INFO).write_text(json.dumps({**ok, "maxLength": "long"}))
    assert read_encoder_info(tmp_path) == {}, "a file that breaks its schema is ignored, not trusted"
