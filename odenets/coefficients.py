"""The parametrisation of a flow's scheme coefficients (LM's k_n, stochastic depth's p_n).

Every `solvers.Coefficient` the scheme declares learnable (and not fixed by the caller) is one
raw parameter ``raw[name]`` of shape (steps,) — (steps, channels) when the scheme has
``per_channel=True`` — mapped into its open bounds by ``Coefficient.to_value`` (a sigmoid) once
per forward. So a learnable LM k_n always lies in (-1, 1) (zero-stability; in float32 a raw
value beyond about +-17 rounds onto the bound itself); fixed values outside the bounds are
rejected with a ValueError, nothing is clamped. Fixed per-step schedules (e.g. the survival
probabilities p_n of stochastic depth) are buffers ``coef_<name>``. `Flow` mixes this in, so the
names stay ``<flow>.raw.k`` and ``<flow>.coef_p`` in state dicts.
"""
from __future__ import annotations

import torch
from torch import nn


class SchemeCoefficients:
    """Mixin of an `nn.Module` that has ``scheme`` and ``steps``: owns the coefficients."""

    def _setup_coefficients(self, coefficients: dict | None, channels: int | None) -> None:
        scheme = self.scheme
        self._fixed = self._register_fixed(coefficients or {})
        self._learnable = tuple(c for c in scheme.learnable_coefficients()
                                if c.name not in self._fixed)
        self.raw = nn.ParameterDict()
        self._unreachable = ()  # see `drop_unreachable_coefficients`
        per_channel = bool(getattr(scheme, "per_channel", False))
        if per_channel and self._learnable and not channels:
            raise ValueError(f"{scheme.name}: per_channel=True needs channels= (the size of "
                             f"dim 1 of u) to shape one coefficient per channel")
        shape = (self.steps, channels) if per_channel else (self.steps,)
        for c in self._learnable:
            self.raw[c.name] = nn.Parameter(c.init_raw(shape))

    def drop_unreachable_coefficients(self, history_in: int) -> tuple[str, ...]:
        """Remove the learnable coefficients no step can use when ``history_in`` past states
        enter the flow; returns their names. A multistep scheme with a factor ``layout`` (`lmm`)
        uses a factor of sigma only once enough past states exist (its warm start), and step n
        has ``min(past_states, history_in + n)``: e.g. lmm4_resnet20's 2-3 steps per stage never
        reach r3. A dropped coefficient reads as 0 (a root at 0: the factor dropped, as the warm
        start does), so no parameter is left without a gradient (DDP needs none unused); old
        checkpoints holding it still load (the value is ignored, as it always was)."""
        self._history_in = history_in  # `odenets.resolve` rebuilds the flow with it
        layout = getattr(self.scheme, "layout", None)
        if not layout or not self._learnable:
            return ()
        reach = min(self.scheme.past_states, history_in + self.steps - 1)
        used, degree = set(), 0
        for factor in layout:  # ("real", name) or ("pair", sum_name, prod_name): degree 1 or 2
            degree += len(factor) - 1
            if degree > reach:
                break
            used.update(factor[1:])
        dropped = tuple(c.name for c in self._learnable if c.name not in used)
        for name in dropped:
            del self.raw[name]
        self._learnable = tuple(c for c in self._learnable if c.name in used)
        self._unreachable = self._unreachable + dropped
        if dropped and not getattr(self, "_drop_hook", False):
            self._register_load_state_dict_pre_hook(self._ignore_unreachable)
            self._drop_hook = True
        return dropped

    def _ignore_unreachable(self, state_dict, prefix, *args):
        for name in self._unreachable:
            state_dict.pop(f"{prefix}raw.{name}", None)

    def _register_fixed(self, coefficients: dict) -> tuple[str, ...]:
        declared = {c.name: c for c in self.scheme.coefficients}
        name_, fixed = self.scheme.name, []
        for name, value in coefficients.items():
            if name not in declared:
                raise ValueError(f"{name_}: unknown coefficient {name!r}; this scheme "
                                 f"declares {sorted(declared) or 'none'}")
            values = self._as_values(name, value).float().flatten()
            if values.numel() == 1:
                values = values.expand(self.steps).clone()
            if values.numel() != self.steps:
                raise ValueError(f"{name_}: coefficient {name} has {values.numel()} "
                                 f"values for steps={self.steps}")
            if not values.is_meta:
                for v in values.tolist():
                    declared[name].check(v, name_)
            if not torch.is_tensor(value):  # numbers: checked on the CPU, kept on the default
                values = values.to(torch.empty(0).device)  # device (meta under torch.device)
            self.register_buffer(f"coef_{name}", values)
            fixed.append(name)
        return tuple(fixed)

    def _as_values(self, name: str, value) -> torch.Tensor:
        try:
            return torch.as_tensor(value, dtype=torch.float64,
                                   device=None if torch.is_tensor(value) else "cpu")
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{self.scheme.name}: coefficient {name} must be a number or "
                             f"steps={self.steps} numbers, got {value!r}") from None

    def coefficient_values(self, like: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Current per-step values (with grad): learnable ones through their sigmoid map,
        fixed schedules as stored. Per-channel values are shaped to broadcast against ``like``."""
        values = {}
        for c in self._learnable:
            v = c.to_value(self.raw[c.name])
            if v.dim() == 2 and like is not None:
                v = v.view(v.shape + (1,) * (like.dim() - 2))
            values[c.name] = v
        for name in self._fixed:
            values[name] = getattr(self, f"coef_{name}")
        if self._unreachable:
            ref = next(iter(values.values()), None)
            zeros = torch.zeros(self.steps, device=ref.device if ref is not None else None,
                                dtype=ref.dtype if ref is not None else None)
            values.update(dict.fromkeys(self._unreachable, zeros))
        return values

    def coefficients(self) -> dict[str, torch.Tensor]:
        """Detached current values of the learnable coefficients, shape (steps,) or (steps, C)."""
        return {c.name: c.to_value(self.raw[c.name]).detach() for c in self._learnable}

    @torch.no_grad()
    def set_coefficients(self, **values):
        """Set learnable coefficients (scalar or per-step values strictly inside their bounds)."""
        learnable = {c.name: c for c in self._learnable}
        for name, value in values.items():
            if name not in learnable:
                raise ValueError(f"{self.scheme.name}: {name!r} is not a learnable coefficient of "
                                 f"this flow; learnable: {sorted(learnable) or 'none'}")
            c, raw = learnable[name], self.raw[name]
            value = self._as_values(name, value)
            for v in value.flatten().tolist():
                c.check(v, self.scheme.name)
            if value.dim() == 1 and raw.dim() == 2 and len(value) == self.steps:
                value = value[:, None]   # one value per step for every channel
            try:
                value = value.expand_as(raw)
            except RuntimeError:
                raise ValueError(f"{self.scheme.name}: {name} needs a scalar or values of shape "
                                 f"{tuple(raw.shape)} (steps={self.steps}), got shape "
                                 f"{tuple(value.shape)}") from None
            raw.copy_(c.to_raw(value.to(raw.device)).to(raw.dtype))
