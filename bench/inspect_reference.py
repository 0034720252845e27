"""Reference timings for bench/inspect.bench.ts: the same synthetic Llama-3-8B checkpoint listed with
safetensors.safe_open (keys + shapes of every shard) and built by transformers on the meta device
(config + model skeleton, no weights). Prints one JSON object of median milliseconds."""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
folder, repeats = sys.argv[1], int(sys.argv[2])

import torch  # noqa: E402  (imported before timing: import cost is not what we compare)
from safetensors import safe_open  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402


def median_ms(fn):
    for _ in range(5):  # warm-up, as the TypeScript side does
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def safe_open_listing():
    index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
    params = 0
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(os.path.join(folder, shard), framework="pt") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                params += n
    return params


def meta_build():
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


print(json.dumps({
    "safeOpenMs": median_ms(safe_open_listing),
    "transformersMetaMs": median_ms(meta_build),
    "safeOpenParams": safe_open_listing(),
    "transformersParams": meta_build(),
}))
