"""torch 2.13's CPU GroupNorm backward segfaults on a channels_last input that does not require
grad (only the weight's gradient is needed). `odenets.fields.basic.GroupNorm` (what
``norm="group"`` builds) makes such an input contiguous. The crash kills the interpreter, so the
path runs in a subprocess: without the guard it exits with SIGSEGV."""
import subprocess
import sys

import torch
from torch import nn

from odenets.fields import make_norm

# a pre-activation GroupNorm field applied to data: its first GroupNorm sees the channels_last
# images themselves (no grad), and the backward needs the GroupNorm weights' gradients
SCRIPT = """
import torch, odenets
from odenets.fields import PreActBasicField
torch.manual_seed(0)
flow = odenets.build(PreActBasicField(16, norm="group"), solver="euler", steps=2)
x = torch.randn(2, 16, 32, 32)
grads = []
for images in (x.contiguous(memory_format=torch.channels_last), x):
    flow.zero_grad()
    flow(images).square().sum().backward()
    grads.append([p.grad.clone() for p in flow.parameters()])
# float32 convolutions in the two layouts sum in different orders: compare to the largest entry
same = all((a - b).abs().max() <= 1e-4 * b.abs().max() for a, b in zip(*grads))
print("grads match" if same else "grads differ")
"""


def test_groupnorm_backward_on_channels_last_data_does_not_crash():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"exit status {done.returncode} (-11: segfault): {done.stderr[-800:]}"
    assert done.stdout.strip() == "grads match"


def test_group_norm_is_a_groupnorm_with_the_same_output():
    """Still an nn.GroupNorm (the optimiser's no-weight-decay rule finds it), same output in
    either layout, with and without the guard's copy."""
    norm = make_norm("group", 16)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 16
    plain = nn.GroupNorm(16, 16)
    plain.load_state_dict(norm.state_dict())
    x = torch.randn(2, 16, 6, 6)
    for images in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(norm(images), plain(x))
