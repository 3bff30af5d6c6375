"""The fused LM / LMM update (`solvers.fused.multistep_update`): the same values and gradients
as the straightforward formula, for every history length, layout and dtype it takes."""
import pytest
import torch

import solvers
from solvers.fused import multistep_update, reference


def _inputs(d, dtype=torch.float64, channels_last=False, seed=0, shape=(3, 4, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(memory_format=fmt).requires_grad_()

    u, f = leaf(*shape), leaf(*shape)
    history = [leaf(*shape) for _ in range(d)]
    b = [(0.3 * torch.randn((), generator=g, dtype=torch.float32)).requires_grad_() for _ in range(d)]
    return u, history, f, b


def _grads(fn, u, history, f, b, upstream):
    out = fn(u, history, f, b, 0.25)
    leaves = [u, *history, f, *b]
    return out, torch.autograd.grad(out, leaves, upstream)


def _by_formula(u, history, f, b, dt):
    """u + dt f + sum_i b_i (h_i - h_{i-1}), h_0 = u: the scheme written out term by term."""
    h = [u, *history]
    out = u + dt * f
    for i in range(1, len(b) + 1):
        out = out + b[i - 1].to(u.dtype) * (h[i] - h[i - 1])
    return out


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_update_matches_the_formula_in_float64(d, channels_last):
    u, history, f, b = _inputs(d, channels_last=channels_last)
    upstream = torch.randn_like(u)
    out, grads = _grads(multistep_update, u, history, f, b, upstream)
    want, want_grads = _grads(_by_formula, u, history, f, b, upstream)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)  # b: float32 leaves


@pytest.mark.parametrize("d", [1, 3])
def test_fused_update_equals_the_plain_ops_to_rounding_in_float32(d):
    u, history, f, b = _inputs(d, dtype=torch.float32, channels_last=True)
    upstream = torch.randn_like(u).contiguous()  # another layout than u: the dots fall back
    out, grads = _grads(multistep_update, u, history, f, b, upstream)
    want, want_grads = _grads(reference, u, history, f, b, upstream)
    if d == 1:
        assert torch.equal(out, want)  # LM: the same lerp and add, bit for bit
    torch.testing.assert_close(out, want)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected)


def test_fused_update_gradcheck_and_second_derivatives():
    u, history, f, b = _inputs(2, shape=(2, 2, 2, 1))
    b = [c.detach().double().requires_grad_() for c in b]
    fn = lambda u, h1, h2, f, b1, b2: multistep_update(u, (h1, h2), f, (b1, b2), 0.25)  # noqa: E731
    args = (u, *history, f, *b)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_lm_and_lmm_schemes_give_the_formula_values_and_gradients():
    torch.manual_seed(0)
    field = torch.nn.Conv2d(2, 2, 3, padding=1).double()
    u0 = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    for scheme, values in ((solvers.get("lm"), dict(k=torch.tensor([0.0, -0.2, 0.4, 0.1]))),
                           (solvers.get("lmm", history=3, form="real"),
                            dict(r1=torch.tensor([0.1, 0.2, -0.3, 0.4]),
                                 r2=torch.tensor([0.0, 0.3, 0.2, -0.5])))):
        values = {k: v.requires_grad_() for k, v in values.items()}
        fields = [lambda t, u: field(u)] * 4
        out = scheme.solve(fields, u0, dt=0.5, coefficients=values)[0]
        grads = torch.autograd.grad(out.sum(), [u0, *values.values()])
        # by hand: the same steps with `reference` (Euler first, then the scheme's warm start)
        u, past = u0, ()
        for n in range(4):
            step_values = {k: v[n] for k, v in values.items()}
            b = scheme.sigma(step_values, len(past))[1:] if scheme.name == "lmm" else (
                [step_values["k"]] if past else [])
            f_n = field(u)
            u_next = reference(u, past, f_n, b, 0.5) if len(b) else u + 0.5 * f_n
            u, past = u_next, ((u,) + past)[: getattr(scheme, "history", 2) - 1]
        want = torch.autograd.grad(u.sum(), [u0, *values.values()])
        torch.testing.assert_close(out, u)
        for got, expected in zip(grads, want):
            torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_coefficient_gradient_of_bf16_activations_is_summed_in_float32(channels_last):
    """dL/db_i = <g, h_i - h_{i-1}> over ~50k bf16 elements: summed in float32, within 1e-3 of
    the float64 sum of the same bf16 values (a bf16 accumulation is off by ~1e-2 here; it was
    also 16x slower on CPU)."""
    u, history, f, b = _inputs(1, dtype=torch.bfloat16, channels_last=channels_last,
                               shape=(64, 16, 7, 7))
    upstream = torch.randn(u.shape, generator=torch.Generator().manual_seed(1)).to(
        torch.bfloat16).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out = multistep_update(u, history, f, b, 0.25)
    (grad_b,) = torch.autograd.grad(out, b, upstream)
    want = (upstream.double() * (history[0].double() - u.double())).sum()
    assert grad_b.dtype == torch.float32
    assert abs(grad_b.double() - want) <= 1e-3 * abs(want) + 1e-3


@pytest.fixture
def compiled():
    import solvers.fused as fused
    before = fused.compiled_kernels()
    fused.compiled_kernels(True)
    yield fused
    fused.compiled_kernels(before)


@pytest.mark.parametrize("d", [1, 3])
def test_compiled_backward_matches_the_formula_in_float64(compiled, d):
    u, history, f, b = _inputs(d, channels_last=True, shape=(2, 4, 3, 2))
    upstream = torch.randn(u.shape, dtype=u.dtype).to(memory_format=torch.channels_last)
    out, grads = _grads(multistep_update, u, history, f, b, upstream)
    assert type(out.grad_fn).__name__ == "_CompiledUpdateBackward" and compiled.compiled_kernels()
    want, want_grads = _grads(_by_formula, u, history, f, b, upstream)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    for got, expected in zip(grads, want_grads):
        assert got.stride() == expected.stride() or got.dim() == 0  # no layout change
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_compiled_backward_falls_back_with_a_warning_when_compiling_fails(compiled, monkeypatch):
    def no_compiler(fn):
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(compiled, "_kernel", no_compiler)
    u, history, f, b = _inputs(1)
    upstream = torch.randn_like(u)
    out = multistep_update(u, history, f, b, 0.25)
    with pytest.warns(UserWarning, match="compiled kernels turned off"):
        grads = torch.autograd.grad(out, [u, *history, f, *b], upstream)
    want = torch.autograd.grad(_by_formula(u, history, f, b, 0.25), [u, *history, f, *b], upstream)
    for got, expected in zip(grads, want):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert not compiled.compiled_kernels()
    with pytest.raises(ValueError, match="True, False or None"):
        compiled.compiled_kernels("yes")


@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_real_sizes_equal_the_plain_ops_in_float32(dt):
    """A ResNet-56 stage-1 activation (32, 16, 32, 32), channels_last, as the benchmark trains;
    the field gradient is g itself when dt = 1 (no copy), g dt otherwise."""
    u, history, f, b = _inputs(1, dtype=torch.float32, channels_last=True, shape=(32, 16, 32, 32))
    upstream = torch.randn(u.shape).to(memory_format=torch.channels_last)
    out = multistep_update(u, history, f, b, dt)
    grads = torch.autograd.grad(out, [u, *history, f, *b], upstream)
    want = reference(u, history, f, b, dt)
    want_grads = torch.autograd.grad(want, [u, *history, f, *b], upstream)
    assert torch.equal(out, want)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * u.numel() ** 0.5)
    assert torch.equal(grads[2], upstream * dt)
