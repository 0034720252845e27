"""Every verb's spec, read from protocol/specs/<verb>.schema.json and nowhere else.

The schemas (a packaged copy of the checkout's protocol/, see protocol/README.md) say each field's type, bounds
and default; the extension generates its types and UI defaults from the same files. This module turns them into
what the worker needs: command-line flags, the merge of a spec file with flags, defaults, validation with
jsonschema, a typed view of the result, and, for input that fails, one sentence naming the field and what it
must be. Adding a field to a schema therefore reaches the flags, the validation and the view with no edit here.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import jsonschema
from jsonschema import validators
from referencing import Registry, Resource

from . import hfcache
from .fileio import JsonFileError, read_json, show

PROTOCOL_DIR = Path(__file__).with_name("protocol")
FLOAT_MAX = sys.float_info.max

# The patterns the schemas use, in words. Keyed by the pattern itself so the schemas stay plain JSON Schema (no
# custom keyword for Ajv to reject); test_protocol_copy checks that every pattern in a spec schema is here.
PATTERN_WORDS = {
    "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$": "a path (not blank, no NUL character)",
    "^(auto|cpu|cuda(:[0-9]+)?)$": "auto, cpu, cuda or cuda:N",
    "\\S": "a name that is not blank",
    "^[a-z]{3}$": "a three-letter ISO 639-3 language code (eng, deu, ...)",
    "^(auto|all|cpu(:[1-9][0-9]{0,2})?|cuda:[0-9]{1,3}(,[0-9]{1,3}){0,255})$": "auto, all, cpu, cpu:K (K processes), cuda:N or cuda:N,M,...",
}
TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "a string", "boolean": "true or false",
              "array": "a list", "object": "a JSON object", "null": "null"}


# ---------------------------------------------------------------------------------------------------------------
# the schemas and a validator that reads them as JavaScript's Ajv does
@functools.cache
def _resources() -> dict[str, dict]:
    """Every schema of the packaged protocol/, by its path relative to it without .schema.json ("specs/train")."""
    out = {}
    for f in sorted(PROTOCOL_DIR.rglob("*.schema.json")):
        out[f.relative_to(PROTOCOL_DIR).as_posix()[: -len(".schema.json")]] = json.loads(f.read_text(encoding="utf-8"))
    if not out:
        raise RuntimeError(f"the worker's copy of the protocol schemas is missing ({PROTOCOL_DIR}); reinstall the worker")
    return out


@functools.cache
def registry() -> Registry:
    """All protocol schemas, so relative $refs between them (run.schema.json -> specs/train.schema.json) resolve."""
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in _resources().values())


def schema(name: str) -> dict:
    """A protocol schema by name: "run", "events", "encoder-manifest", "specs/train", ..."""
    return _resources()[name]


@functools.cache
def _ecma(pattern: str) -> re.Pattern:
    # In Python `$` also matches before a final newline, in ECMA-262 (Ajv, the extension) only at the end:
    # "cuda:0\n" must be refused on both sides. Our patterns end in `$` or are not anchored at all.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator, pattern, instance, _schema):
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_number(_checker, x) -> bool:
    # NaN and infinities are no JSON numbers (and NaN passes every bound, as every comparison with it is false).
    return isinstance(x, (int, float)) and not isinstance(x, bool) and (not isinstance(x, float) or math.isfinite(x))


def _is_integer(_checker, x) -> bool:
    # 10.0 is the integer 10 in JSON (and to Ajv, which cannot tell them apart); it is stored as 10.
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and math.isfinite(x) and x.is_integer())


_Validator = validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({"number": _is_number, "integer": _is_integer}),
)


@functools.cache
def _validator_for(name: str, pointer: str = "") -> Any:
    root = schema(name)
    # A sub-schema is reached by reference, so its own $refs ("#") resolve within its document.
    return _Validator({"$ref": f"{root['$id']}#{pointer}"} if pointer else root, registry=registry())


def validator(name: str, pointer: str = ""):
    """A Draft 2020-12 validator for a protocol schema (or the sub-schema at a JSON pointer, "/$defs/resolved")."""
    return _validator_for(name, pointer)


def errors(name: str, instance: Any, pointer: str = "") -> list[str]:
    """Every way instance breaks the schema, one line each, for tests and for files the worker reads back."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator(name, pointer).iter_errors(instance)]


# ---------------------------------------------------------------------------------------------------------------
# a verb's spec schema
def kebab(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), name)


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _types(prop: dict) -> list[str]:
    t = prop.get("type")
    if t is None and "enum" in prop:
        return sorted({"boolean" if isinstance(v, bool) else "null" if v is None else "string" if isinstance(v, str) else "number" for v in prop["enum"]})
    return [t] if isinstance(t, str) else list(t or [])


def spec_schema(verb: str) -> dict:
    return schema(f"specs/{verb}")


def fields(verb: str) -> tuple[str, ...]:
    """The verb's spec fields in the schema's order (the order of messages, flags and run.json)."""
    return tuple(spec_schema(verb)["properties"])


def defaults(verb: str) -> dict[str, Any]:
    """THE defaults: the schema's, for every optional field."""
    return {k: copy.deepcopy(p["default"]) for k, p in spec_schema(verb)["properties"].items() if "default" in p}


# ---------------------------------------------------------------------------------------------------------------
# one sentence for the first problem
def _number(v) -> str:
    if isinstance(v, int) and abs(v) >= 2**32:
        for k in range(32, 129):
            if v == 2**k:
                return f"2^{k}"
            if v == -(2**k):
                return f"-2^{k}"
            if v == 2**k - 1:
                return f"2^{k}-1"
    return repr(v)


def _bounds(s: dict) -> str:
    lo, hi, xlo, xhi = s.get("minimum"), s.get("maximum"), s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
    if xlo == 0 and lo is None and xhi is None and hi in (None, FLOAT_MAX):
        return "a positive number"
    if lo is not None and hi is not None:
        return f"between {_number(lo)} and {_number(hi)}"
    parts = []
    if lo is not None:
        parts.append(f"at least {_number(lo)}")
    if xlo is not None:
        parts.append(f"more than {_number(xlo)}")
    if hi is not None and hi != FLOAT_MAX:
        parts.append(f"at most {_number(hi)}")
    if xhi is not None:
        parts.append(f"less than {_number(xhi)}")
    return " and ".join(parts)


def _token(v) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def _expectation(keyword: str, s: dict, fallback: str) -> str:
    """What the value must be, from the keyword that refused it and the schema around that keyword."""
    if keyword == "type":
        return " or ".join(TYPE_WORDS.get(t, t) for t in _types(s))
    if keyword == "enum":
        return "one of " + ", ".join(_token(v) for v in s["enum"])
    if keyword == "const":
        return _token(s["const"])
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _bounds(s)
    if keyword == "minLength":
        return "a non-empty string" if s["minLength"] == 1 else f"a string of at least {s['minLength']} characters"
    if keyword == "maxLength":
        return f"a string of at most {s['maxLength']} characters"
    if keyword == "pattern":
        return PATTERN_WORDS.get(s["pattern"], f"a string matching {s['pattern']}")
    if keyword == "minItems":
        n = s["minItems"]
        return f"a list of at least {n} {'entry' if n == 1 else 'entries'}"
    if keyword == "maxItems":
        return f"a list of at most {s['maxItems']} entries"
    if keyword == "uniqueItems":
        return "a list without repeated entries"
    return fallback


class SpecError(ValueError):
    """The spec cannot be used; the message is one sentence naming the field and what it must be."""


@dataclasses.dataclass
class Given:
    """What the user gave for a spec: values by field, the fields that came from flags, where the rest came from."""

    values: dict[str, Any]
    flags: set[str] = dataclasses.field(default_factory=set)
    source: str = "the spec"
    from_file: bool = False


def _subject(field: str, given: Given | None) -> str:
    if given is not None and field in given.flags:
        return f"--{kebab(field)}"
    return f"spec field '{field}'"


def _sentence(verb: str, err: jsonschema.ValidationError, given: Given | None) -> str:
    path = list(err.absolute_path)
    fallback = " ".join(err.message.split())[:200]
    if not path:
        where = given.source if given is not None and given.from_file else "a spec file"
        if err.validator == "required":
            missing = next((r for r in err.validator_value if r not in err.instance), err.validator_value[0])
            return f"no '{missing}' given (neither as --{kebab(missing)} nor in {where}); it is required"
        if err.validator == "additionalProperties":
            extra = next(k for k in err.instance if k not in spec_schema(verb)["properties"])
            return f"{given.source if given else 'the spec'} has unknown field {show(extra)}; allowed: {', '.join(fields(verb))}"
        if err.validator == "anyOf" and all(b.get("required") for b in err.validator_value):
            # Alternatives such as "model or fromRun": name them all.
            flags = " or ".join(f"--{kebab(b['required'][0])}" for b in err.validator_value)
            return f"no {flags} given (neither as a flag nor in {where}); one of them is required"
        return f"the {verb} spec is not valid ({fallback})"
    field = str(path[0])
    subject = _subject(field, given)
    want = _expectation(err.validator, err.schema, fallback)
    if len(path) > 1:
        return f"{subject} has {show(err.instance)}, which is not {want}"
    return f"{subject} must be {want}, got {show(err.instance)}"


def _first(verb: str, errs: Iterable[jsonschema.ValidationError]) -> jsonschema.ValidationError | None:
    order = {k: i for i, k in enumerate(fields(verb))}

    def rank(e: jsonschema.ValidationError):
        path = list(e.absolute_path)
        if not path:
            return ({"additionalProperties": 0, "required": 1}.get(e.validator, 3), 0, 0)
        # A wrong type says more than a bound that follows from it.
        return (2, order.get(str(path[0]), len(order)), 0 if e.validator == "type" else 1)

    errs = list(errs)
    return min(errs, key=rank) if errs else None


def check(verb: str, values: dict, given: Given | None = None, *, partial: bool = False) -> None:
    """Raise SpecError with one sentence if values break the verb's schema; partial: each field alone (what the
    user gave, before required fields and derived values are known)."""
    if partial:
        props = spec_schema(verb)["properties"]
        for k in fields(verb):
            if k in values:
                err = _first(verb, (_with_field(e, k) for e in _Validator(props[k], registry=registry()).iter_errors(values[k])))
                if err is not None:
                    raise SpecError(_sentence(verb, err, given))
        return
    err = _first(verb, validator(f"specs/{verb}").iter_errors(values))
    if err is not None:
        raise SpecError(_sentence(verb, err, given))


def _with_field(e: jsonschema.ValidationError, field: str) -> jsonschema.ValidationError:
    e.path.appendleft(field)
    return e


# ---------------------------------------------------------------------------------------------------------------
# gathering: spec file, then flags
def from_dict(verb: str, raw: Any, source: str) -> dict:
    """A spec object's fields, snake_case spellings mapped to the schema's camelCase; unknown fields refused."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source} must hold a JSON object of {verb} fields")
    names = fields(verb)
    aliases = {snake(k): k for k in names}
    out = {}
    for k, v in raw.items():
        k = aliases.get(k, k)
        if k not in names:
            raise SpecError(f"{source} has unknown field {show(k)}; allowed: {', '.join(names)}")
        out[k] = v
    return out


# Consent to run a model folder's own code, or to download a model, belongs to the user and to this invocation: it
# is the flag and nothing else. A spec file, a run.json or a train run can sit in a cloned repository, so none of
# them may give it; the field stays in specs and run.json as the record of what this invocation was given.
CONSENT_FIELDS = ("trustRemoteCode", "allowDownload")
CONSENT_GRANTS = {"trustRemoteCode": "a model folder's own code runs", "allowDownload": "a model or an MTEB task's data is downloaded"}


def read_spec_file(verb: str, path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        raw = read_json(p)
    except JsonFileError as e:
        if e.missing or e.problem.startswith(("cannot", "is not a regular")):
            raise SpecError(f"spec file {e}; pass an existing JSON file with --spec") from None
        raise SpecError(f"spec file {e}; fix the file") from None
    values = from_dict(verb, raw, f"spec file {p}")
    for k in CONSENT_FIELDS:
        # Refused rather than ignored: a file that asks for it was written by someone expecting it to count.
        if values.get(k) not in (None, False):
            raise SpecError(f"spec file {p} sets {k} to {show(values[k])}, but {CONSENT_GRANTS[k]} only when "
                            f"--{kebab(k)} is on the command line; remove the field and pass the flag instead")
    return values


def apply_consent(spec: Any, args: argparse.Namespace) -> None:
    """Set every consent field of a resolved spec from this invocation's flags, whatever the spec was built from."""
    for k in CONSENT_FIELDS:
        if hasattr(spec, k):
            setattr(spec, k, getattr(args, k, None) is True)


def gather(verb: str, args: argparse.Namespace) -> Given:
    """--spec FILE's fields, then every flag that was given (a flag overrides the file)."""
    given = Given({}, source="the command line")
    if getattr(args, "spec", None):
        given.values.update(read_spec_file(verb, args.spec))
        given.source, given.from_file = f"spec file {Path(args.spec)}", True
    for k in fields(verb):
        v = getattr(args, k, None)
        if v is not None:
            given.values[k] = v
            given.flags.add(k)
    return given


def flags_given(verb: str, args: argparse.Namespace) -> list[str]:
    return [f"--{kebab(k)}" for k in fields(verb) if getattr(args, k, None) is not None]


# ---------------------------------------------------------------------------------------------------------------
# resolving: given values, derived values, defaults, then the whole checked
def _coerce(verb: str, values: dict) -> None:
    for k, p in spec_schema(verb)["properties"].items():
        v = values.get(k)
        types = _types(p)
        if isinstance(v, float) and "integer" in types:
            values[k] = int(v)
        elif isinstance(v, int) and not isinstance(v, bool) and "number" in types and "integer" not in types:
            values[k] = float(v)


def absolute(path: str, *, resolve_links: bool = False) -> str:
    # os.path's expanduser leaves "~nosuchuser/x" as it is, where Path.expanduser raises RuntimeError.
    p = Path(os.path.expanduser(path))
    return str(p.resolve() if resolve_links else p.absolute())


def resolve(verb: str, given: Given, *, derive: Callable[[dict], dict] | None = None, paths: Iterable[str] = (),
            resolve_links: bool = False) -> dict:
    """The full spec: given values (checked first, alone), then derive(given) (values that depend on others, such
    as a train run's pooling), then the schema's defaults; all checked together; paths made absolute, since
    run.json is read later by processes with another working directory."""
    check(verb, given.values, given, partial=True)
    values = dict(given.values)
    models = "model" in paths
    if models:
        # Before derive, which reads the model folder (a trained variant's l3prune_encoder.json).
        _cached_model(values)
    if derive is not None:
        values.update(derive(dict(values)))
        if models:
            _cached_model(values)  # a --from-run train run's base model
    for k, d in defaults(verb).items():
        values.setdefault(k, d)
    check(verb, values, given)
    _coerce(verb, values)
    for k in paths:
        if isinstance(values.get(k), str) and not (k == "model" and hfcache.pending(values[k])):
            values[k] = absolute(values[k], resolve_links=resolve_links)
    return values


def _cached_model(values: dict) -> None:
    """A model named by a Hugging Face repo id (org/name[@revision]) becomes its snapshot folder in the hub cache;
    one the cache lacks stays a repo id only when this invocation allows the download (verbs.run_verb fetches it
    once the run folder is open), and is refused in one sentence otherwise."""
    if isinstance(values.get("model"), str):
        values["model"] = hfcache.resolve_model(values["model"], allow_download=values.get("allowDownload") is True)


# ---------------------------------------------------------------------------------------------------------------
# typed views
class SpecView:
    """Base of the generated spec classes: attribute access to a checked spec, and its JSON for run.json."""

    verb: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check(self.verb, self.to_json())

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


_ANNOTATIONS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "array": "list", "object": "dict"}


def spec_class(verb: str, name: str, module: str | None = None) -> type:
    """A dataclass with one field per schema property (the schema's defaults; required fields first), checked
    against the schema when built."""
    required, optional = [], []
    for k, p in spec_schema(verb)["properties"].items():
        types = _types(p)
        ann = " | ".join(_ANNOTATIONS.get(t, "None") for t in types) if types else "object"
        if "default" in p:
            d = p["default"]
            f = dataclasses.field(default_factory=functools.partial(copy.deepcopy, d)) if isinstance(d, (list, dict)) else dataclasses.field(default=d)
            optional.append((k, ann, f))
        else:
            required.append((k, ann))
    cls = dataclasses.make_dataclass(name, [*required, *optional], bases=(SpecView,), namespace={"verb": verb})
    cls.__doc__ = f"The {verb} spec, as protocol/specs/{verb}.schema.json defines it."
    if module:
        cls.__module__ = module
    return cls


# ---------------------------------------------------------------------------------------------------------------
# flags
def _list_of(item: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda s: [item(x.strip()) for x in s.split(",") if x.strip()]


def _pairs(s: str) -> dict[str, str]:
    """An object field's flag: ``key=value,key=value`` (``--data-columns query=anchor,positive=pos``)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in s.split(",")):
        key, sep, value = part.partition("=")
        if not part:
            continue
        if not sep or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"takes key=value pairs separated by commas (query=anchor,positive=pos), got {part!r}")
        out[key.strip()] = value.strip()
    return out


def _scalar(s: str) -> Any:
    return {"true": True, "false": False}.get(s, s)


def flag_options(field: str, prop: dict) -> dict:
    """add_argument keywords for one spec field: name --kebab-case, dest the field, type from the schema."""
    types = [t for t in _types(prop) if t != "null"]
    text = prop.get("description", "").replace("%", "%%")
    # A description that already says what the default is (a train run's, ...) is left as it is.
    if "default" in prop and prop["default"] is not None and prop["default"] != [] and "default" not in text:
        d = prop["default"]
        text += f" (default {','.join(map(_token, d)) if isinstance(d, list) else _token(d)})"
    opts: dict[str, Any] = {"flag": f"--{kebab(field)}", "dest": field, "default": None, "help": text or None}
    enum = prop.get("enum")
    if types == ["boolean"]:
        opts["action"] = argparse.BooleanOptionalAction
    elif enum and all(isinstance(v, str) for v in enum):
        opts["choices"] = list(enum)
    elif enum:
        opts.update(type=_scalar, metavar="{" + ",".join(_token(v) for v in enum) + "}")
    elif types == ["integer"]:
        opts.update(type=int, metavar="N")
    elif types == ["number"]:
        opts.update(type=float, metavar="X")
    elif types == ["array"]:
        opts.update(type=_list_of(str), metavar="A,B")
    elif types == ["object"]:
        opts.update(type=_pairs, metavar="KEY=VALUE,...")
    else:
        opts["metavar"] = kebab(field).upper().replace("-", "_")
    return opts


def add_flags(p: argparse.ArgumentParser, verb: str, custom: dict[str, dict] | None = None) -> None:
    """One flag per spec field; custom[field] replaces or adds add_argument keywords ("flag" renames it)."""
    for k, prop in spec_schema(verb)["properties"].items():
        opts = {**flag_options(k, prop), **(custom or {}).get(k, {})}
        p.add_argument(opts.pop("flag"), **opts)
