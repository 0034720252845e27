"""One encoder variant, named the ways a user names it (a model folder, a cut, a LoRA adapter, a finished train
run), loaded as one pruned, merged, frozen Encoder.

evaluate and export-onnx both start here, so the variant that is scored is the variant that is exported. A LoRA
adapter was trained on the model pruned to its depth, so the model is pruned first and merged after; base model +
adapter and a train run's merged model/ are then the same network.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from . import specs
from .encoder import Encoder, ModelError, find_layers, load_encoder, prune
from .fileio import MAX_RUN_JSON_BYTES, JsonFileError, read_json, read_json_object, run_folder_link_problem

# Written by train into its merged model/: how that model was trained (protocol/encoder-info.schema.json).
ENCODER_INFO = "l3prune_encoder.json"


def read_encoder_info(model_dir: str | Path) -> dict:
    """The merged model's l3prune_encoder.json, or {} when there is none or it does not match its schema: the
    folder then loads as any model folder, with the flags' or the schema's defaults."""
    try:
        info = read_json(Path(model_dir).expanduser() / ENCODER_INFO)
    except JsonFileError:
        return {}
    return info if not specs.errors("encoder-info", info) else {}


@dataclass
class VariantSource:
    model: str
    adapter: str | None = None
    keep: int | None = None
    # How the variant was trained (pooling, maxLength); flags the user gives win over these. Never consent: a train
    # run may have been shipped, so its trustRemoteCode is no reason to run code now (specs.CONSENT_FIELDS).
    trained_with: dict = field(default_factory=dict)


def resolve_source(model: str | None, adapter: str | None, keep: int | None, from_run: str | None, *, purpose: str) -> VariantSource:
    """The model folder, adapter and cut that --model/--adapter/--keep/--from-run name; `purpose` is the verb
    ("evaluate", "export") that error sentences tell the user to do with another run."""
    trained_with: dict = {}
    if from_run:
        if adapter:
            raise ValueError("give either --adapter or --from-run, not both (--from-run takes the run's adapter)")
        rd = Path(from_run).expanduser()
        problem = run_folder_link_problem(rd)
        if problem:
            raise ValueError(f"--from-run: {problem}")
        state = read_json_object(rd / "run.json", "--from-run needs a train run folder", limit=MAX_RUN_JSON_BYTES)
        if state.get("verb") != "train" or not isinstance(state.get("spec"), dict):
            raise ValueError(f"--from-run {rd} is not a train run (verb {state.get('verb')!r}); pass the folder of a train run")
        if state.get("status") != "succeeded":
            raise ValueError(f"the train run in {rd} has not finished (status {state.get('status')!r}); {purpose} a run that succeeded")
        tspec = state["spec"]
        trained_with = {k: tspec.get(k) for k in ("pooling", "maxLength")}
        if model is None and (rd / "model" / "config.json").is_file():
            model = str(rd / "model")
        else:
            # No merged model (mergeAtEnd false), or --model names the base model (it moved): base + the run's
            # adapter, pruned to the run's depth.
            model = model or tspec.get("model")
            adapter = str(rd / "adapter")
            if not (rd / "adapter" / "adapter_config.json").is_file():
                raise ValueError(f"the train run in {rd} has neither a merged model/ nor an adapter/; there is no encoder to {purpose}")
            keep = keep if keep is not None else tspec.get("keep")
    if not model or not isinstance(model, str):
        raise ValueError("no --model given; pass a local model folder with --model, or a finished train run with --from-run")
    if not from_run:
        saved = read_encoder_info(model)
        if saved:
            trained_with = {"pooling": saved["pooling"], "maxLength": saved["maxLength"]}
    return VariantSource(model=model, adapter=adapter, keep=keep, trained_with=trained_with)


# ---------------------------------------------------------------------------------------------------------------
# loading: prune, merge, freeze
def config_layers(model_dir: str | Path) -> int | None:
    try:
        cfg = read_json(Path(model_dir) / "config.json")
    except JsonFileError:
        return None
    if not isinstance(cfg, dict):
        return None
    n = cfg.get("num_hidden_layers") or (cfg.get("text_config") or {}).get("num_hidden_layers")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def adapter_weights(adapter: Path) -> Path:
    if not adapter.is_dir():
        raise ModelError(f"adapter folder {adapter} does not exist; pass the adapter/ folder of a train run with --adapter")
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"adapter folder {adapter} has no adapter_config.json; it must be a peft adapter (save_pretrained)")
    f = adapter / "adapter_model.safetensors"
    if not f.is_file():
        if (adapter / "adapter_model.bin").exists():
            raise ModelError(f"adapter folder {adapter} holds only pickle weights (adapter_model.bin); save it with safe_serialization=True")
        raise ModelError(f"adapter folder {adapter} has no adapter_model.safetensors")
    return f


def adapter_depth(weights: Path, layer_attr: str) -> int | None:
    """Layers the adapter has weights for (highest layer index + 1), from the tensor names alone."""
    from safetensors import safe_open

    pat = re.compile(rf"(?:^|\.){re.escape(layer_attr)}\.(\d+)\.")
    with safe_open(str(weights), framework="pt") as fh:
        idx = [int(m.group(1)) for k in fh.keys() if (m := pat.search(k))]
    return max(idx) + 1 if idx else None


def merge_adapter(model: nn.Module, adapter: Path, weights: Path) -> nn.Module:
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        cfg = PeftConfig.from_pretrained(str(adapter))
    except Exception as e:  # noqa: BLE001 - peft raises many types; the user needs one sentence
        raise ModelError(f"adapter folder {adapter}: cannot read adapter_config.json ({type(e).__name__}: {e})") from None
    cfg.inference_mode = True
    with warnings.catch_warnings():
        # transformers' deprecation notices from inside peft; nothing the user can act on.
        warnings.simplefilter("ignore", FutureWarning)
        pm = get_peft_model(model, cfg)
    res = set_peft_model_state_dict(pm, load_file(str(weights)))
    # peft only warns about weights that do not fit; an adapter that silently does nothing would be a lie.
    unexpected = list(getattr(res, "unexpected_keys", None) or [])
    missing = [k for k in (getattr(res, "missing_keys", None) or []) if "lora_" in k]
    if unexpected or missing:
        raise ModelError(
            f"adapter {adapter} does not fit this model ({'unexpected' if unexpected else 'missing'} weights such as "
            f"{(unexpected or missing)[0]}); pass the base model and --keep it was trained with"
        )
    return pm.merge_and_unload().eval()


def check_keep(keep: int, n: int) -> None:
    if not 1 <= keep <= n:
        raise ValueError(f"--keep {keep} is out of range: the model has {n} layers; choose 1..{n}")


def load_variant(model: str, keep: int | None, adapter: str | None, *, max_length: int, device: str = "cpu",
                 trust_remote_code: bool = False) -> tuple[Encoder, dict]:
    """The frozen encoder and {originalNumLayers, sourceModel}: the depth and folder of the unpruned model."""
    enc = load_encoder(model, device=device, max_length=max_length, trust_remote_code=trust_remote_code)
    loaded = enc.num_layers
    # A train run's merged model/: its source is the unpruned model it was cut from.
    source = read_encoder_info(model).get("sourceModel") or model
    original = config_layers(source) or loaded
    if adapter:
        weights = adapter_weights(Path(adapter))
        depth = adapter_depth(weights, find_layers(enc.model)[1])
        if depth is not None:
            if depth > loaded:
                raise ModelError(f"adapter {adapter} has weights for {depth} layers but the model has {loaded}; pass the base model it was trained on")
            if keep is not None and keep > depth:
                raise ValueError(f"--keep {keep} is more than the {depth} layers the adapter was trained on; choose 1..{depth}")
            prune(enc.model, depth)
        elif keep is not None:
            check_keep(keep, enc.num_layers)
            prune(enc.model, keep)
        enc.model = merge_adapter(enc.model, Path(adapter), weights)
    if keep is not None:
        check_keep(keep, enc.num_layers)
        if keep < enc.num_layers:
            prune(enc.model, keep)
    enc.model.eval()
    for p in enc.model.parameters():
        p.requires_grad_(False)
    return enc, {"originalNumLayers": original, "sourceModel": str(Path(source).absolute())}
