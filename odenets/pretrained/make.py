"""Making pretrained-weights files: ``<name>.pt`` and its ``weights.json`` entry, from either

* a finished ``odenets train`` run directory (its last checkpoint), or
* a campaign record ``<dir>/records/<model>__s<seed>__<key>.json`` (benchmarks/converged.py)
  with its final weights beside it (same stem, ``.pt``). The record names the recipe only by
  its config name; the full recipe dict (dataset, epochs, lr...) is the campaign summary's
  ``<dir>.json`` (next to ``<dir>/``), or a ``recipe_json`` file given instead.

Either way the weights are loaded strictly into a freshly created preset for the dataset's
classes and input channels before they are saved, so a file that does not fit is never
written.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import write_atomic, write_text
from ..data import get_spec
from ..models import create
from ..train.model import load_run_model
from ..train.rundir import SUMMARY
from . import REGISTRY, sha256

# record fields copied into the registry entry as they are
RECORD_FIELDS = ("seed", "test_acc", "val_acc", "epochs", "recipe_key", "git_commit", "git_dirty")


def from_run(run_dir: Path, name: str, out: Path) -> Path:
    """Weights and entry from a finished run directory (`odenets.train`)."""
    summary_path = run_dir / SUMMARY
    summary = _read_object(summary_path, "run summary") if summary_path.is_file() else {}
    if summary.get("status") != "finished":
        raise ValueError(f"{run_dir}: not a finished run ({summary_path} says status "
                         f"{summary.get('status')!r}); export the weights of finished runs only")
    model, cfg, state = load_run_model(run_dir)
    if ":" in cfg.model or cfg.model != name:
        raise ValueError(f"{run_dir}: the run trained model {cfg.model!r}, not preset {name!r}")
    final = summary.get("final") or {}
    return write(out, name, model, dict(
        dataset=cfg.dataset, model_args=dict(cfg.model_args or {}), seed=cfg.seed,
        recipe=getattr(cfg, "recipe", None), epochs=state["epoch"], test_acc=final.get("test_acc"),
        val_acc=final.get("val_acc"), source=str(run_dir),
        precision={"off": "fp32", "bf16": "bf16"}.get((summary.get("speed") or {}).get("amp"))))


def from_record(path: Path, name: str, out: Path, recipe_json=None) -> Path:
    """Weights and entry from a campaign record JSON with its ``.pt`` beside it."""
    record = _read_object(path, "campaign record")
    if record.get("model") != name:
        raise ValueError(f"{path} is a record of model {record.get('model')!r}, not preset {name!r}")
    weights = path.parent / str(record.get("weights") or path.with_suffix(".pt").name)
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: its weights {weights} are missing (a campaign keeps "
                                f"them beside the record when it runs with weights kept)")
    recipe = _recipe(path, record, recipe_json)
    dataset = recipe.get("dataset")
    spec = get_spec(dataset) if isinstance(dataset, str) else None
    if spec is None:
        raise ValueError(f"{path}: the recipe names no dataset (got {dataset!r}); pass a recipe "
                         f"with one (--recipe-json)")
    model_args = dict(record.get("model_args") or {})
    model = create(name, num_classes=spec.num_classes, in_channels=spec.input_size[0], **model_args)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: the file is not a state dict
        raise ValueError(f"{weights} is not a readable weights file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{weights} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # a compiled module's
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise ValueError(f"{weights} does not fit preset {name!r} built for {spec.name} "
                         f"({spec.num_classes} classes, {spec.input_size[0]} channel(s)): "
                         f"{first[0].strip()}") from None
    info = {k: record.get(k) for k in RECORD_FIELDS}
    return write(out, name, model, dict(info, dataset=spec.name, model_args=model_args,
                                        recipe=recipe, precision=record.get("amp_used"),
                                        source=path.name))


def write(out: Path, name: str, model, info: dict) -> Path:
    """Save ``model``'s weights as ``out/<name>.pt`` (CPU, as trained) and its entry (``info``
    plus file, sha256, num_classes, in_channels) in ``out/weights.json``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    table = _read_object(out / REGISTRY, "registry") if (out / REGISTRY).is_file() else {}
    write_atomic(path, lambda f: torch.save(weights, f), binary=True)  # a full disk: old file kept
    table[name] = dict(info, file=path.name, sha256=sha256(path), num_classes=model.num_classes,
                       in_channels=model.config.in_channels)
    write_text(out / REGISTRY, json.dumps(table, indent=1, sort_keys=True) + "\n")
    return path


def _read_object(path: Path, what: str) -> dict:
    try:
        value = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable {what} (invalid JSON: {e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not a {what} (an object)")
    return value


def _recipe(path: Path, record: dict, recipe_json) -> dict:
    """The full recipe dict: ``recipe_json`` (a recipe, or a summary holding one under
    "recipe"), else the campaign summary ``<dir>.json`` of ``<dir>/records/<path>``, whose
    recipe key must be the record's."""
    if recipe_json is not None:
        source = Path(recipe_json)
        payload = _read_object(source, "recipe JSON")
    else:
        campaign = path.resolve().parent.parent
        source = campaign.parent / (campaign.name + ".json")
        if not source.is_file():
            raise FileNotFoundError(f"{path}: no campaign summary {source} beside its records "
                                    f"folder to read the recipe from; pass --recipe-json FILE")
        payload = _read_object(source, "campaign summary")
        if not isinstance(payload.get("recipe"), dict):
            raise ValueError(f"{source} has no 'recipe' object; pass --recipe-json FILE")
    recipe = payload["recipe"] if isinstance(payload.get("recipe"), dict) else payload
    key = payload.get("recipe_key")
    if key is not None and record.get("recipe_key") is not None and key != record["recipe_key"]:
        raise ValueError(f"{source} holds recipe key {key!r}, the record {path.name} "
                         f"{record['recipe_key']!r}: not its recipe; pass --recipe-json FILE")
    return dict(recipe)
