"""The README's Python example runs as written (it is the first code a user copies)."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    torch.testing.assert_close(namespace["u1"], torch.full((3,), torch.exp(torch.tensor(-1.0)).item()),
                               atol=1e-6, rtol=0)
    x = torch.randn(2, 16, 8, 8)
    for name in ("resnet_stage", "lm_stage", "poly_stage"):
        assert namespace[name](x).shape == x.shape, name
