"""Pretrained weights shipped with the package: no network access, ever.

    model = odenets.create("lm_resnet20", pretrained=True)        # timm: pretrained=True too

``weights.json`` beside this file is the registry, ``{preset: entry}``; an entry names its file
(``<preset>.pt``, a plain state dict, in this folder), its ``sha256`` (checked on every load), and
what the weights are: ``dataset``, ``num_classes``, ``in_channels``, ``model_args``,
``recipe``, ``seed``, ``test_acc``, ``epochs``. They reach the model's ``pretrained_cfg`` (timm's
place for them). A preset without an entry raises a ValueError naming the presets that have
weights. Files are made from finished training runs by ``odenets export-pretrained RUN_DIR
--name NAME`` (`export`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..atomic import write_atomic, write_text

WEIGHTS_DIR = Path(__file__).resolve().parent  # tests point this at a temporary folder
REGISTRY = "weights.json"
CFG_KEYS = ("dataset", "recipe", "seed", "test_acc", "epochs", "sha256", "file")


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


def export(run_dir, name: str, out_dir=None) -> Path:
    """Make ``<name>.pt`` (the last checkpoint's model weights, ~1 MB for resnet20) and its
    registry entry in ``out_dir`` (default `WEIGHTS_DIR`) from a finished run directory."""
    from ..train.model import load_run_model
    from ..train.rundir import SUMMARY
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY
    summary = _read_json(summary_path) if summary_path.is_file() else {}
    if summary.get("status") != "finished":
        raise ValueError(f"{run_dir}: not a finished run ({summary_path} says status "
                         f"{summary.get('status')!r}); export the weights of finished runs only")
    model, cfg, state = load_run_model(run_dir)
    if ":" in cfg.model or cfg.model != name:
        raise ValueError(f"{run_dir}: the run trained model {cfg.model!r}, not preset {name!r}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    final = summary.get("final") or {}
    table = _read_json(out / REGISTRY) if (out / REGISTRY).is_file() else {}
    if not isinstance(table, dict):
        raise ValueError(f"{out / REGISTRY} is not a registry (a JSON object of entries)")
    write_atomic(path, lambda f: torch.save(weights, f), binary=True)  # a full disk: old file kept
    table[name] = dict(file=path.name, sha256=sha256(path), dataset=cfg.dataset,
                       num_classes=model.num_classes, in_channels=model.config.in_channels,
                       model_args=dict(cfg.model_args or {}), seed=cfg.seed,
                       recipe=getattr(cfg, "recipe", None), epochs=state["epoch"],
                       test_acc=final.get("test_acc"))
    write_text(out / REGISTRY, json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
