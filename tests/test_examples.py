"""The ported peer examples (examples/*.py) run in their --smoke configuration."""
import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["spiral_fit", "odenet_fashion_mnist", "latent_sde_sines"])
def test_example_smoke(name, capsys):
    out = _load(name).main(["--smoke"])
    values = out.get("losses") or [out["loss"]]
    assert values and all(math.isfinite(v) for v in values)
    assert capsys.readouterr().out.strip()
