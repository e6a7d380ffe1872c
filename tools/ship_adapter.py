"""Copy a trained LoRA adapter into the package, with its weights stored as float16.

    .venv/bin/python tools/ship_adapter.py /tmp/smollm2-inbedder inbedder_retrieval/adapters/smollm2-135m-inbedder

Copies the adapter config and ``inbedder.json`` (with ``base_model`` set to the registry
name of the shipped base; the tokenizer comes from the base model), and halves the adapter's size by casting its
weights to float16 (peft casts them back to the base model's dtype when loading).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

KEEP = ("adapter_config.json",)  # the tokenizer is the base model's (training did not change it)


def main(source: Path, target: Path, base: str = "smollm2-135m-instruct") -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    weights = load_file(str(source / "adapter_model.safetensors"))
    save_file({key: value.to(torch.float16) for key, value in weights.items()}, str(target / "adapter_model.safetensors"))
    config = json.loads((target / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2))
    settings = json.loads((source / "inbedder.json").read_text())
    settings["base_model"] = base
    (target / "inbedder.json").write_text(json.dumps(settings, indent=2))
    size = sum(path.stat().st_size for path in target.iterdir())
    print(f"Shipped {len(weights)} adapter tensors to {target} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
