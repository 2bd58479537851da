"""Flow-matching sampler: schedule shape, exact integration on analytic fields, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from worldplay.errors import WorldplayError
from worldplay.stream.sampler import (FlowSchedule, add_noise, euler_step, sample, shift_t, step,
                                      x0_from_v)


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("steps", [1, 4, 24])
def test_schedule_runs_from_one_to_zero_monotonically(steps, shift):
    ts = FlowSchedule(steps, shift).timesteps(dtype=torch.float64)
    assert ts.shape == (steps + 1,)
    assert ts[0].item() == 1.0 and ts[-1].item() == 0.0
    assert bool((ts[1:] < ts[:-1]).all())
    plain = FlowSchedule(steps, 1.0).timesteps(dtype=torch.float64)
    if shift > 1:   # shifting spends the steps nearer to noise
        assert bool((ts[1:-1] > plain[1:-1]).all())
    assert [a for a, _ in FlowSchedule(steps, shift).pairs()] == pytest.approx(ts[:-1].tolist())


def test_shift_formula_and_uniform_four_steps():
    assert FlowSchedule(4, 1.0).timesteps().tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    t = torch.tensor(0.5, dtype=torch.float64)
    assert shift_t(t, 3.0).item() == pytest.approx(1.5 / 2.0)   # 3·0.5 / (1 + 2·0.5)


def test_forward_process_and_x0_from_v_invert_each_other():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 5, generator=gen), torch.randn(3, 2, 5, generator=gen)
    t = torch.tensor([0.0, 0.3, 1.0])
    xt = add_noise(x0, eps, t)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[2], eps[2])
    assert torch.allclose(x0_from_v(xt, eps - x0, t), x0, atol=1e-6)
    # dx_t/dt = ε − x0: one Euler step along the straight path lands on the path again
    assert torch.allclose(euler_step(xt[1:2], (eps - x0)[1:2], 0.3, 0.1), add_noise(x0, eps, 0.1)[1:2], atol=1e-6)


def delta_field(x0: torch.Tensor):
    """Exact velocity when the data is the single point x0: ε = (x_t − (1−t)x0)/t, v = ε − x0."""
    def model_fn(x, t):
        return (x - x0) / t.view(-1, *([1] * (x.dim() - 1)))
    return model_fn


@pytest.mark.parametrize("mode", ["euler", "x0-renoise"])
@pytest.mark.parametrize("steps,shift", [(1, 1.0), (2, 3.0), (4, 3.0), (7, 5.0)])
def test_exact_field_reaches_the_data_point(mode, steps, shift):
    x0 = torch.tensor([[0.5, -2.0, 3.0]])
    gen = torch.Generator().manual_seed(7)
    out = sample(delta_field(x0), (1, 3), steps, gen, mode=mode, shift=shift, dtype=torch.float64)
    assert torch.allclose(out, x0.double(), atol=1e-10)


def test_euler_transports_a_gaussian_along_the_exact_flow():
    """Data N(mu, s²): the straight-path flow maps noise ε to mu + s·ε; fine Euler follows it."""
    mu, s = 1.5, 0.5

    def model_fn(x, t):
        t = t.view(-1, 1)
        sd = torch.sqrt((1 - t) ** 2 * s * s + t * t)                  # std of x_t
        dsd = (-(1 - t) * s * s + t) / sd                               # d std / dt
        return -mu + dsd / sd * (x - (1 - t) * mu)

    eps = torch.randn(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = [(sample(model_fn, (64, 1), n, None, noise=eps, dtype=torch.float64) - (mu + s * eps)).abs().max()
            for n in (200, 400)]
    assert errs[1] < 1e-2
    assert errs[1] / errs[0] == pytest.approx(0.5, abs=0.05)   # Euler is first order


@pytest.mark.parametrize("mode", ["euler", "x0-renoise"])
def test_same_generator_state_gives_same_sample(mode):
    def model_fn(x, t):
        return torch.tanh(x) * t.view(-1, 1, 1)

    def run(seed):
        return sample(model_fn, (2, 4, 4), 4, torch.Generator().manual_seed(seed), mode=mode, shift=3.0)

    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_renoise_uses_fresh_noise_and_euler_does_not():
    x, v = torch.zeros(1, 8), torch.ones(1, 8)
    a = step(x, v, 0.5, 0.25, "x0-renoise", torch.Generator().manual_seed(1))
    b = step(x, v, 0.5, 0.25, "x0-renoise", torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)
    # x0̂ = x − t·v = −0.5; re-noised: 0.75·x0̂ + 0.25·ε
    eps = torch.randn(1, 8, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, 0.75 * -0.5 + 0.25 * eps)
    assert torch.equal(step(x, v, 0.5, 0.25, "euler"), torch.full((1, 8), -0.25))
    assert torch.equal(step(x, v, 0.5, 0.0, "x0-renoise"), torch.full((1, 8), -0.5))


def test_bad_arguments_are_named():
    with pytest.raises(WorldplayError, match="unknown sampling mode 'ddim'"):
        sample(lambda x, t: x, (1, 2), 2, None, mode="ddim")
    with pytest.raises(WorldplayError, match="steps=0"):
        FlowSchedule(0)
    with pytest.raises(WorldplayError, match="shift"):
        FlowSchedule(4, -1.0)
    assert math.isclose(FlowSchedule().shift, 3.0)
