"""Base classes of the solver layer: a fixed-grid `Scheme` and the `Coefficient` it declares.

A scheme advances ``du/dt = f(t, u)`` by one step::

    u_next, state = scheme.step(f, t, dt, u, state, **coefficients)

``f`` is the field *for this step* (untied networks pass a different callable per step), ``t``
the step's start time: `Scheme.solve` passes a 0-dim tensor on ``u``'s device and dtype (as
torchdiffeq and torchsde do), so fields may call ``torch.sin(t)``; stage times are
``t + c dt`` (tensors too). A direct ``step`` call passes on whatever ``t`` it is given.
``state`` is the scheme's explicit history (``None`` before the first step; multistep schemes
take a one-step start then), and ``coefficients`` are the per-step values of the scalars the
scheme declares in ``coefficients`` (e.g. LM's ``k``). Nothing is stored on ``self`` during a
solve, so one scheme object drives any number of unrolled steps.

`Scheme.solve` owns the grid loop (as torchdiffeq's ``FixedGridODESolver`` does); a scheme only
writes ``step``.
"""
from __future__ import annotations

import abc
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from . import checks

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def clock_dtype(u: torch.Tensor) -> torch.dtype:
    """The dtype of the time tensors a field receives: ``u``'s, except float32 for 16-bit and
    non-floating states (a bf16 clock cannot tell t = 1 from 1 + 1/128)."""
    return u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32


# Grids of up to this many points (steps x (1 + stages)) are made once and kept (`_cached`);
# longer ones are made `_CHUNK` steps at a time as the solve reaches them (`LazyGrid`), so the
# memory of a solve does not grow with its number of steps.
CACHED_POINTS = 4096
_CHUNK = 1024


def _grid(t0, dt: float, steps: int, like: torch.Tensor) -> torch.Tensor:
    dtype = clock_dtype(like)
    if torch.is_tensor(t0):
        return torch.arange(steps + 1, dtype=dtype, device=like.device) * dt + t0.to(dtype)
    return torch.linspace(t0, t0 + steps * dt, steps + 1, dtype=dtype, device=like.device)


def time_grid(t0, dt: float, steps: int, like: torch.Tensor) -> Sequence[torch.Tensor]:
    """The grid times ``t_n = t0 + n dt``, n = 0..steps, as 0-dim tensors on ``like``'s device
    in `clock_dtype`: no per-step conversion and no host sync. ``t0`` is a number or a 0-dim
    tensor. For a number ``t0`` a short grid is made once and kept (`_cached`): making it (a
    linspace and an unbind) costs about 1 us a step on CPU, as much as the rest of the solver
    loop. A grid of more than `CACHED_POINTS` points is a `LazyGrid` (made in chunks as it is
    read: memory independent of ``steps``). The times are shared between solves, so a field
    must not modify ``t`` in place."""
    if steps + 1 > CACHED_POINTS:
        return LazyGrid(t0, dt, steps, (), like)
    if torch.is_tensor(t0) or torch.compiler.is_compiling():  # traced: fused away anyway
        return _grid(t0, dt, steps, like).unbind(0)
    return _cached(float(t0), float(dt), steps, (), clock_dtype(like), like.device)


def stage_times(t0, dt: float, steps: int, nodes: tuple[float, ...], like: torch.Tensor):
    """Per step n, the tuple of times ``t0 + (n + c) dt`` for ``c`` in ``nodes``, as 0-dim
    tensors made by one broadcast add and one unbind per solve (instead of one add per stage
    per step), and kept as `time_grid`'s are for a number ``t0`` (lazy for long grids)."""
    if steps * len(nodes) > CACHED_POINTS:
        return LazyGrid(t0, dt, steps, tuple(nodes), like)
    if torch.is_tensor(t0) or torch.compiler.is_compiling():
        return _stages(t0, dt, steps, nodes, like)
    return _cached(float(t0), float(dt), steps, tuple(nodes), clock_dtype(like), like.device)


@functools.lru_cache(maxsize=64)
def _cached(t0: float, dt: float, steps: int, nodes: tuple, dtype, device):
    with torch.inference_mode(False):  # plain tensors even when first made in inference mode
        like = torch.empty((), dtype=dtype, device=device)
        if not nodes:
            return _grid(t0, dt, steps, like).unbind(0)
        return _stages(t0, dt, steps, nodes, like)


def _stages(t0, dt: float, steps: int, nodes: tuple[float, ...], like: torch.Tensor):
    grid = _grid(t0, dt, steps, like)[:-1]
    c = torch.tensor(nodes, dtype=grid.dtype, device=like.device) * dt
    flat = (grid[:, None] + c).reshape(-1).unbind(0)
    k = len(nodes)
    return [flat[n * k:(n + 1) * k] for n in range(steps)]


class LazyGrid(Sequence):
    """`time_grid` (no ``nodes``: ``steps + 1`` times) or `stage_times` (``steps`` tuples) of a
    long grid, made `_CHUNK` steps at a time when first read and forgotten two chunks later:
    memory O(chunk) for any ``steps``, about the cost of an uncached grid per step. Time n is
    ``t0 + n dt`` computed in float64 (a number ``t0``) before the cast to `clock_dtype`."""

    def __init__(self, t0, dt: float, steps: int, nodes: tuple[float, ...], like: torch.Tensor):
        self.t0, self.dt, self.steps, self.nodes = t0, float(dt), int(steps), tuple(nodes)
        self.dtype, self.device = clock_dtype(like), like.device
        self._chunks: dict[int, Sequence] = {}

    def __len__(self) -> int:
        return self.steps + (0 if self.nodes else 1)

    def __getitem__(self, n):
        if not isinstance(n, int):
            raise TypeError(f"LazyGrid indices are integers, got {type(n).__name__}")
        size = len(self)
        if n < 0:
            n += size
        if not 0 <= n < size:
            raise IndexError(f"grid index {n} out of range for {size} points")
        start = n - n % _CHUNK
        chunk = self._chunks.get(start)
        if chunk is None:
            if len(self._chunks) >= 2:  # keep the chunk before (reverse and pairwise reads)
                self._chunks.pop(next(iter(self._chunks)))
            chunk = self._chunks[start] = self._make(start, min(start + _CHUNK, size))
        return chunk[n - start]

    def _make(self, a: int, b: int):
        if torch.is_tensor(self.t0) or torch.compiler.is_compiling():
            return _chunk(self.t0, self.dt, a, b, self.nodes, self.dtype, self.device)
        return _cached_chunk(float(self.t0), self.dt, a, b, self.nodes, self.dtype, self.device)


def _chunk(t0, dt: float, a: int, b: int, nodes: tuple, dtype, device):
    """Times ``a..b-1`` of a `LazyGrid` (per-step tuples of stage times when ``nodes``)."""
    n = torch.arange(a, b, dtype=torch.float64, device=device) * dt
    times = n.to(dtype) + t0.to(dtype) if torch.is_tensor(t0) else (n + t0).to(dtype)
    if not nodes:
        return times.unbind(0)
    c = torch.tensor(nodes, dtype=dtype, device=device) * dt
    flat, k = (times[:, None] + c).reshape(-1).unbind(0), len(nodes)
    return [flat[i * k:(i + 1) * k] for i in range(b - a)]


@functools.lru_cache(maxsize=32)  # repeated solves of grids up to 32 chunks in all hit it
def _cached_chunk(t0: float, dt: float, a: int, b: int, nodes: tuple, dtype, device):
    with torch.inference_mode(False):  # shared between solves: plain tensors
        return _chunk(t0, dt, a, b, nodes, dtype, device)


class Repeat(Sequence):
    """``[item] * n`` without the list: the fields of a tied solve (one field every step), with
    memory independent of ``n``."""

    def __init__(self, item, n: int):
        self.item, self.n = item, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Repeat(self.item, len(range(*i.indices(self.n))))
        if not -self.n <= i < self.n:
            raise IndexError(f"step {i} out of range for {self.n} steps")
        return self.item

    def __iter__(self):
        return itertools.repeat(self.item, self.n)

    def distinct(self) -> list:
        return [self.item] if self.n else []


def distinct(fields) -> list:
    """The distinct fields of a sequence (by identity, in order of first use): ``fields.distinct()``
    when the sequence knows them (`Repeat`), else one pass over it."""
    known = getattr(fields, "distinct", None)
    if callable(known):
        return known()
    seen = {}
    for f in fields:
        seen.setdefault(id(f), f)
    return list(seen.values())


# The meanings of a pair of fields per step (`Scheme.pair`, and a two-part field's ``pair``).
PAIRS = {
    "coupled": "(F, G) of the partitioned system y' = F(z), z' = G(y) (leapfrog)",
    "force_damping": "(G, gamma): force G(y) and damping rates of y'' + gamma y' = G "
                     "(damped_leapfrog)",
    "branches": "two whole fields f1, f2 mixed as eta f1 + (1 - eta) f2 "
                "(euler_maruyama noise='shake')",
}


class DivergenceError(RuntimeError):
    """Raised when an iteration inside a scheme diverges or produces NaN/inf."""


@dataclass(frozen=True)
class Coefficient:
    """A per-step scalar of a scheme (e.g. LM's ``k``), fixed or learnable.

    Learnable values are stored as an unconstrained raw tensor and mapped into the open interval
    ``bounds = (a, b)`` by ``value = a + (b - a) * sigmoid(raw)``, so training can never leave the
    valid range. ``init`` is the uniform range that learnable values are drawn from.
    """

    name: str
    default: float
    init: tuple[float, float]
    bounds: tuple[float, float] | None = None
    learnable: bool = True
    doc: str = ""
    closed: tuple[bool, bool] = (False, False)  # fixed values may equal a bound (not learnable)

    def check(self, value: float, scheme: str) -> float:
        """Validate a fixed value against ``bounds`` (open ends, or closed where ``closed``
        says); returns it as float."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{scheme}: coefficient {self.name}={value} is not finite")
        if self.bounds is not None:
            (lo, hi), (at_lo, at_hi) = self.bounds, self.closed
            if not ((lo <= value if at_lo else lo < value) and (value <= hi if at_hi else value < hi)):
                where = f"{'[' if at_lo else '('}{lo}, {hi}{']' if at_hi else ')'}"
                open_ = "open interval " if self.closed == (False, False) else "interval "
                raise ValueError(f"{scheme}: coefficient {self.name}={value} is outside the "
                                 f"{open_}{where}; {self.doc}".rstrip("; "))
        return value

    def to_value(self, raw: torch.Tensor) -> torch.Tensor:
        """Map unconstrained raw parameters to values inside ``bounds``."""
        if self.bounds is None:
            return raw
        lo, hi = self.bounds
        return lo + (hi - lo) * torch.sigmoid(raw)

    def to_raw(self, value: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_value` (values must lie strictly inside ``bounds``)."""
        if self.bounds is None:
            return value
        lo, hi = self.bounds
        return torch.logit((value - lo) / (hi - lo))

    def init_raw(self, shape, generator: torch.Generator | None = None, dtype=None) -> torch.Tensor:
        """Raw values whose `to_value` is uniform on ``init``."""
        lo, hi = self.init
        value = lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=dtype or torch.float32)
        return self.to_raw(value.to(torch.float64)).to(dtype or torch.float32)


class Scheme(abc.ABC):
    """A one-step (or multistep) fixed-grid scheme for ``du/dt = f(t, u)``.

    Subclasses implement ``step`` and declare, as class (or, where options change them,
    instance) attributes:

    * ``name``, ``order``;
    * ``evals_per_step``: field evaluations per step, the cost (RK4 4, Verlet 1.5: F twice and
      G once on half-width fields; NFE = steps x this);
    * ``max_calls_per_field`` (a property from the above unless overridden): the most times one
      step calls one field (one member of a pair), i.e. how many slots per-call state of a field,
      such as normalisation statistics kept per call, needs (RK4 4, Verlet 2, Euler 1);
    * ``past_states``: how many past values the step carries in ``state`` (0: one-step; LM 1);
    * ``coefficients`` (a tuple of `Coefficient`), ``stochastic``, ``paired_field``, ``nodes``.
    """

    name: str = ""
    order: float = 0
    evals_per_step: float = 1
    past_states: int = 0
    coefficients: tuple[Coefficient, ...] = ()
    stochastic: bool = False
    paired_field: bool = False  # True: the field of one step is a pair (f1, f2) of callables
    # what the pair's members mean (`PAIRS`); a two-part field declares its own ``pair``, and a
    # scheme never reads a pair of another meaning (RevNet's (F, G) as (force, damping))
    pair: str | None = None
    # fractions c of the step at which `step` evaluates the field, when it takes them
    # precomputed as ``step(..., stage_t=(t_n + c_0 dt, ...))`` (explicit Runge-Kutta)
    nodes: tuple[float, ...] = ()

    @property
    def max_calls_per_field(self) -> int:
        """The most times one step calls one field: 1 for paired schemes (each member once),
        else ``ceil(evals_per_step)``."""
        return 1 if self.paired_field else max(1, math.ceil(self.evals_per_step))

    @abc.abstractmethod
    def step(self, f: Field, t, dt: float, u: torch.Tensor, state, **coefficients):
        """``(u_{n+1}, state_{n+1})`` from ``u_n`` and the history ``state`` (None at first)."""

    # -- fixed coefficient values -------------------------------------------------------------
    def fixed_coefficients(self) -> dict[str, float]:
        """Values used when the caller does not own the coefficients (e.g. `integrate`)."""
        fixed = {c.name: getattr(self, c.name, None) for c in self.coefficients}
        return {c.name: c.default if fixed[c.name] is None else fixed[c.name]
                for c in self.coefficients}

    def learnable_coefficients(self) -> tuple[Coefficient, ...]:
        """Coefficients a network builder should own as parameters (those not fixed by options)."""
        return tuple(c for c in self.coefficients if c.learnable and getattr(self, c.name, None) is None)

    # -- the grid loop ------------------------------------------------------------------------
    def solve(self, fields: Sequence[Field], u0: torch.Tensor, t0: float = 0.0, dt: float = 1.0,
              coefficients: Mapping[str, object] | None = None, state=None,
              return_path: bool = False, training: bool = True, activation=None):
        """Take ``len(fields)`` steps from ``u0``; step ``n`` uses ``fields[n]`` at time
        ``t0 + n dt``. ``coefficients[name]`` is a scalar or a per-step sequence/tensor indexed
        by ``n``. ``activation`` sigma, when given, follows every step: u_{n+1} = sigma(Phi_n(u_n))
        (post-activation ResNets, He et al. 2016a: ``relu(u + f(u))``; multistep histories then
        hold activated states). Returns ``(u_N, state)``, or ``(path, state)`` with ``path`` of
        shape ``(N + 1, *u0.shape)`` when ``return_path``. Times reach the fields as 0-dim
        tensors (`time_grid`, built once)."""
        coefficients = self.per_step_values(coefficients, len(fields))
        extra = {"training": training} if self.stochastic else {}
        u, path = u0, [u0] if return_path else None
        times = time_grid(t0, dt, len(fields), u0)
        stages = stage_times(t0, dt, len(fields), self.nodes, u0) if self.nodes else None
        if not coefficients and not extra and not return_path:  # the common fast path
            for n, f in enumerate(fields):
                if stages is not None:
                    u, state = self.step(f, times[n], dt, u, state, stage_t=stages[n])
                else:
                    u, state = self.step(f, times[n], dt, u, state)
                if activation is not None:
                    u = activation(u)
            return u, state
        fixed = {name: value for name, (value, per_step) in coefficients.items() if not per_step}
        fixed.update(extra)  # the keywords of every step, made once
        varying = [(name, value) for name, (value, per_step) in coefficients.items() if per_step]
        for n, f in enumerate(fields):
            kwargs = fixed
            if varying or stages is not None:
                kwargs = dict(fixed, **{name: value[n] for name, value in varying})
                if stages is not None:
                    kwargs["stage_t"] = stages[n]
            u, state = self.step(f, times[n], dt, u, state, **kwargs)
            if activation is not None:
                u = activation(u)
            if return_path:
                path.append(u)
        return (torch.stack(path) if return_path else u), state

    def per_step_values(self, coefficients, steps: int) -> dict:
        """``{name: (value, per_step)}`` for every declared coefficient: the given values (else
        the fixed/default ones), checked against the declaration and the number of steps."""
        values = dict(self.fixed_coefficients())
        values.update(coefficients or {})
        unknown = set(values) - {c.name for c in self.coefficients}
        if unknown:
            raise ValueError(f"{self.name}: unknown coefficient(s) {sorted(unknown)}; "
                             f"this scheme has {[c.name for c in self.coefficients]}")
        specs = {c.name: c for c in self.coefficients}
        out = {}
        for name, value in values.items():
            per_step = isinstance(value, (list, tuple)) or (torch.is_tensor(value) and value.dim() > 0)
            if per_step and len(value) != steps:
                raise ValueError(f"{self.name}: coefficient {name} has {len(value)} per-step values "
                                 f"for {steps} steps")
            for v in (value if per_step else (value,)):  # numbers only: tensors would need a sync
                if not torch.is_tensor(v):
                    if not checks.is_real(v):
                        raise ValueError(f"{self.name}: coefficient {name} must be a number, a "
                                         f"tensor or a per-step sequence of them, got {v!r}")
                    specs[name].check(v, self.name)
            out[name] = (value, per_step)
        return out

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def options(self) -> dict:
        """The options this scheme was built with (for repr and metadata)."""
        return {}
