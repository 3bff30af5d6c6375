"""The random stream of a stochastic solve, an object of its own (like torchsde's Brownian objects).

A stochastic scheme draws its increments from a `Noise` passed to it, as it evaluates the field
passed to it: the scheme keeps nothing that changes during a solve, and whatever saves or
reseeds noise (a checkpoint, a distributed run) deals with one kind of object.
"""
from __future__ import annotations

import itertools
import weakref

import torch

from . import checks


class Noise:
    """A stream of random draws on any device, from one of three sources:

    * ``Noise(seed=s)``: one ``torch.Generator`` per device, made on first use and seeded with
      ``s``: device ``d`` draws what ``torch.Generator(d).manual_seed(s)`` would;
    * ``Noise(generator=g)``: the user's generator (draws on ``g.device`` only);
    * ``Noise()``: torch's global RNG (``torch.manual_seed`` governs it; nothing to save).

    Draws (``shape``, ``device``, ``dtype`` as for ``torch.randn``): `randn` ~ N(0, I), `normal`
    ~ N(0, std^2 I), `rand`
    ~ U[0, 1), `bernoulli` in {0, 1} with P(1) = ``p`` (a float or a 0-dim tensor), `randint`.
    One object continues its stream across solves; share it to share the stream.

    State: `state_dict` is ``{device: generator state}`` for the generators made from the seed
    so far, ``{"generator": state}`` for a user generator, ``{}`` for the global RNG;
    `load_state_dict` restores it (making seeded generators on their devices) and raises
    ValueError when the state comes from another kind of source.

    Under ``torch.compile`` a draw from a seed or generator is the opaque op ``solvers::draw``
    (`_draw`), which calls the same generator: the compiled graph does not break at each draw (dynamo cannot trace a
    ``generator=`` argument) and draws what eager mode draws, in the same order (each draw
    mutates ``_order``, a 0-dim tensor, so the compiler can neither reorder nor merge them).
    Draws from the global RNG are left to the compiler (inductor's own generator, as before).
    """

    _ids = itertools.count()

    def __init__(self, seed: int | None = None, generator: torch.Generator | None = None):
        if seed is not None and generator is not None:
            raise ValueError(f"noise: give seed or generator, not both (got seed={seed!r} and "
                             f"a generator)")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"noise: generator must be a torch.Generator, got {generator!r}")
        self.generator = generator
        self.seed = None if seed is None else _seed(seed)
        self._generators: dict[str, torch.Generator] = {}  # device -> generator made from seed
        self._lookup: dict = {}  # the device object of a draw -> its generator (no str per draw)
        self._id = next(Noise._ids)  # how a compiled draw finds this object (`_SOURCES`)
        self._order = torch.zeros((), dtype=torch.int64)  # orders compiled draws (see above)
        _SOURCES[self._id] = self

    @property
    def kind(self) -> str:
        """``"seed"``, ``"generator"`` or ``"global"``: where the draws come from."""
        return "generator" if self.generator is not None else "seed" if self.seed is not None \
            else "global"

    def generator_for(self, device) -> torch.Generator | None:
        """The generator that draws on ``device`` (``None``: torch's global RNG). Looked up once
        per device object (a solve passes its state's ``device`` every step)."""
        try:
            return self._lookup[device]
        except (KeyError, TypeError):  # TypeError: an unhashable device argument
            gen = self._generator_for(device)
        if isinstance(device, torch.device) and (device.type == "cpu" or device.index is not None):
            self._lookup[device] = gen  # not "cuda": which GPU that is may change
        return gen

    def _generator_for(self, device) -> torch.Generator | None:
        if self.generator is not None:
            if self.generator.device.type != torch.device(device).type:
                raise ValueError(f"noise: the generator is on {self.generator.device} but the "
                                 f"draw is on {device}")
            return self.generator
        if self.seed is None:
            return None
        gen = self._generators.get(str(device))  # a tensor's device: "cpu", "cuda:0", ...
        if gen is None:
            device = torch.device(device)
            if device.type == "cuda" and device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            gen = self._generators.get(str(device))
            if gen is None:
                gen = torch.Generator(device=device).manual_seed(self.seed)
                self._generators[str(device)] = gen
        return gen

    # -- draws (on the CPU unless ``device`` says otherwise) --------------------------------
    def randn(self, shape, device="cpu", dtype=None) -> torch.Tensor:
        if torch.compiler.is_compiling() and self.kind != "global":
            return self._compiled("normal", shape, 1.0, None, device, dtype)
        return torch.randn(shape, generator=self.generator_for(device), device=device, dtype=dtype)

    def normal(self, shape, std: float, device="cpu", dtype=None) -> torch.Tensor:
        """N(0, std^2 I) in one pass (``randn(...) * std`` without the temporary): the same
        normal variates as `randn` from the same state, scaled (``torch.normal`` is
        ``empty(shape).normal_(0, std)`` in one call)."""
        if torch.compiler.is_compiling() and self.kind != "global":
            return self._compiled("normal", shape, std, None, device, dtype)
        return torch.normal(0.0, std, shape, generator=self.generator_for(device), device=device,
                            dtype=dtype)

    def rand(self, shape, device="cpu", dtype=None) -> torch.Tensor:
        if torch.compiler.is_compiling() and self.kind != "global":
            return self._compiled("rand", shape, 0.0, None, device, dtype)
        return torch.rand(shape, generator=self.generator_for(device), device=device, dtype=dtype)

    def bernoulli(self, shape, p, device="cpu", dtype=None) -> torch.Tensor:
        if torch.compiler.is_compiling() and self.kind != "global":
            if torch.is_tensor(p):
                return self._compiled("bernoulli", shape, 0.0, p.detach(), device, dtype)
            return self._compiled("bernoulli", shape, float(p), None, device, dtype)
        out = torch.empty(shape, device=device, dtype=dtype)
        return out.bernoulli_(p, generator=self.generator_for(device))

    def _compiled(self, kind, shape, a, p, device, dtype) -> torch.Tensor:
        return _draw(self._order, self._id, kind, list(shape), float(a), p,
                     torch.device(device), dtype or torch.get_default_dtype())

    def randint(self, low: int, high: int, shape, device="cpu") -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator_for(device), device=device)

    # -- seed and state ---------------------------------------------------------------------
    def manual_seed(self, seed: int) -> Noise:
        """Restart the stream from ``seed`` on every device (generators made lazily); a user
        generator is reseeded in place."""
        seed = _seed(seed)
        if self.generator is not None:
            self.generator.manual_seed(seed)
        else:
            self.seed, self._generators, self._lookup = seed, {}, {}
        return self

    def state_dict(self) -> dict:
        if self.generator is not None:
            return {"generator": self.generator.get_state()}
        return {key: g.get_state() for key, g in self._generators.items()}

    def load_state_dict(self, state: dict) -> None:
        theirs = ("generator" if "generator" in state else "seed") if state else None
        if theirs is not None and theirs != self.kind:
            mine = "neither (it draws from the global RNG)" if self.kind == "global" else \
                f"a {self.kind}"
            raise ValueError(f"noise: the saved state is of a noise source with a {theirs}, "
                             f"but this one has {mine}")
        for key, value in state.items():
            gen = self.generator if key == "generator" else self.generator_for(key)
            gen.set_state(value)

    def __setstate__(self, state: dict) -> None:
        """A copy (``copy.deepcopy``, unpickling) is a source of its own for compiled draws."""
        self.__dict__.update(state)
        self._id, self._order = next(Noise._ids), torch.zeros((), dtype=torch.int64)
        _SOURCES[self._id] = self

    def __repr__(self) -> str:
        if self.generator is not None:
            return f"Noise(generator on {self.generator.device})"
        return f"Noise(seed={self.seed})" if self.seed is not None else "Noise(global RNG)"


_SOURCES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # Noise._id -> Noise


@torch.library.custom_op("solvers::draw", mutates_args=("order",))
def _draw(order: torch.Tensor, source: int, kind: str, shape: list[int], a: float,
          p: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """One draw of the `Noise` numbered ``source``, run as eager mode runs it: ``kind``
    "normal" (std ``a``), "rand" or "bernoulli" (probability ``p``, else ``a``)."""
    noise = _SOURCES[source]
    order.add_(1)
    if kind == "normal":
        return noise.normal(shape, a, device, dtype)
    if kind == "rand":
        return noise.rand(shape, device, dtype)
    return noise.bernoulli(shape, a if p is None else p, device, dtype)


@_draw.register_fake
def _(order, source, kind, shape, a, p, device, dtype):
    return torch.empty(shape, device=device, dtype=dtype)


def _seed(seed) -> int:
    if not checks.is_int(seed):
        raise ValueError(f"noise: seed must be an integer, got {seed!r}")
    return int(seed)
