"""Pretrained weights shipped with the package: no network access, ever.

    model = odenets.create("lm_resnet20", pretrained=True)        # timm: pretrained=True too

``weights.json`` beside this file is the registry, ``{preset: entry}``; an entry names its file
(``<preset>.pt``, a plain state dict, in this folder), its ``sha256`` (checked on every load), and
what the weights are: ``dataset``, ``num_classes``, ``in_channels``, ``model_args``,
``recipe`` (the training recipe), ``recipe_key``, ``seed``, ``test_acc``, ``val_acc``,
``epochs``, ``precision`` (fp32 or bf16 training), ``git_commit``. They reach the model's
``pretrained_cfg`` (timm's place for them). A preset without an entry raises a ValueError naming
the presets that have weights. Files are made from finished training runs or campaign records
by ``odenets export-pretrained RUN_DIR|RECORD.json --name NAME`` (`export`, `make`); ``odenets
eval --pretrained NAME`` evaluates them on their dataset's test split.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

WEIGHTS_DIR = Path(__file__).resolve().parent  # tests point this at a temporary folder
REGISTRY = "weights.json"
CFG_KEYS = ("dataset", "recipe", "recipe_key", "seed", "test_acc", "val_acc", "epochs",
            "precision", "git_commit", "sha256", "file")


def registry() -> dict:
    path = WEIGHTS_DIR / REGISTRY
    return json.loads(path.read_text()) if path.is_file() else {}


def available() -> list[str]:
    """Presets that ship weights."""
    return sorted(registry())


def entry(name: str) -> dict:
    """The registry entry of preset ``name``, or a ValueError naming those that have one."""
    table = registry()
    if name not in table:
        have = ", ".join(sorted(table)) or "none yet"
        raise ValueError(f"no pretrained weights for {name!r}; presets with weights: {have} "
                         f"(odenets downloads nothing: train with `odenets train` and make a "
                         f"weights file with `odenets export-pretrained RUN_DIR --name NAME`)")
    return table[name]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict(name: str) -> dict:
    """The weights of preset ``name``, their sha256 checked against the registry."""
    info = entry(name)
    path = WEIGHTS_DIR / info["file"]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights of {name!r}: {path} is missing from the "
                                f"installation (the registry {WEIGHTS_DIR / REGISTRY} lists it)")
    if sha256(path) != info["sha256"]:
        raise ValueError(f"pretrained weights of {name!r}: {path} does not match its sha256 in "
                         f"{REGISTRY} (a damaged or replaced file)")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_into(model, name: str, num_classes: int) -> None:
    """Load preset ``name``'s weights into ``model`` (built for ``num_classes``): a different
    number of classes keeps the fresh classifier (timm's rule); records the weights' entry in
    ``model.pretrained_cfg``."""
    info, weights = entry(name), state_dict(name)
    if num_classes != info["num_classes"]:
        weights = {k: v for k, v in weights.items() if not k.startswith("head.fc.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("head.fc.")] \
        if num_classes != info["num_classes"] else missing
    if missing or unexpected:
        raise ValueError(f"pretrained weights of {name!r} do not fit the model built: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]} (model_args in the "
                         f"registry: {info.get('model_args', {})})")
    model.pretrained_cfg.update({k: info[k] for k in CFG_KEYS if k in info},
                                num_classes=info["num_classes"])


def export(source, name: str, out_dir=None, recipe_json=None) -> Path:
    """Make ``<name>.pt`` (~1 MB for resnet20) and its registry entry in ``out_dir`` (default
    `WEIGHTS_DIR`) from ``source``: a finished run directory, or a campaign record ``.json``
    with its ``.pt`` beside it (``recipe_json``: the recipe, when no campaign summary is
    beside the records folder). `odenets.pretrained.make`."""
    from . import make
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    source = Path(source)
    if source.is_dir():
        if recipe_json is not None:
            raise ValueError(f"{source} is a run directory, which holds its recipe: "
                             f"--recipe-json is for campaign records only")
        return make.from_run(source, name, out)
    if source.suffix != ".json" or not source.is_file():
        raise FileNotFoundError(f"{source} is neither a run directory nor a campaign record "
                                f"(.json): nothing to export")
    return make.from_record(source, name, out, recipe_json)
