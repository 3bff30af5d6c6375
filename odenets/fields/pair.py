"""Two-part fields: shake-shake's two branches and the reversible (leapfrog) pair (F, G).

`odenets.build` hands schemes that take a pair of fields per step (``euler_maruyama`` with
``noise="shake"``, ``leapfrog``) the two parts, listed in ``branches``; schemes that take one
field call the module itself, whose ``forward`` is the natural single field.
"""
from __future__ import annotations

import torch
from torch import nn


class TwoBranch(nn.Module):
    """Shake-shake's two-branch field (Gastaldi 2017): branches f1, f2 on the same input.

    As one field (``forward``) it is the noise-free drift (f1(u) + f2(u)) / 2; with
    ``euler_maruyama(noise="shake")`` the step is u + eta f1(u) + (1 - eta) f2(u), eta ~ U(0, 1).
    """

    pair = "branches"  # what `branches` means (`solvers.base.PAIRS`)

    def __init__(self, branch1: nn.Module, branch2: nn.Module):
        super().__init__()
        self.branch1, self.branch2 = branch1, branch2

    @property
    def branches(self):
        return (self.branch1, self.branch2)

    def forward(self, u):
        return 0.5 * (self.branch1(u) + self.branch2(u))


class Coupled(nn.Module):
    """The coupled field of a reversible block (RevNet): u = (y, z) split in two halves along
    channels (dim 1) and the partitioned system

        y' = F(z),   z' = G(y)          F: (B, C/2, ...) -> (B, C/2, ...), G likewise

    As one field (``forward``) it is the separable whole-state field cat(F(z), G(y)); the
    ``leapfrog`` scheme uses the pair (F, G) and updates y and z in turn, which is invertible.
    """

    pair = "coupled"  # what `branches` means (`solvers.base.PAIRS`)

    def __init__(self, F: nn.Module, G: nn.Module):
        super().__init__()
        self.F, self.G = F, G

    @property
    def branches(self):
        return (self.F, self.G)

    def forward(self, u):
        y, z = u.chunk(2, dim=1)
        return torch.cat((self.F(z), self.G(y)), dim=1)
