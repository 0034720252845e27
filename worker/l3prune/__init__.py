"""L³Prune Studio compute worker: decoder LLMs as text encoders, pruned by their initial layer-wise loss."""
import os as _os

__version__ = "0.1.0"

# What the user's environment said about going offline, before the default below: a download the user allowed
# (--allow-download, hfcache.py) still honours an HF_HUB_OFFLINE=1 of theirs, but not the worker's own default.
HUB_OFFLINE_GIVEN = {_name: _os.environ.get(_name) for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}

# The one place the worker goes offline, before any module of it imports huggingface_hub (which reads these
# once, at import): reading a local folder, or an MTEB task's cached data, must never reach the network,
# whatever the environment says; a download attempt fails fast instead of hanging on a machine without the hub.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_name, "1")
