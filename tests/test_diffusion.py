"""Tests of ddgan_core.diffusion: diffusers as an independent oracle, Monte Carlo, Bayes' rule.

Oracle conventions (diffusers 0.3x/0.4x): DDPMScheduler.step(eps, t, x_t, generator) draws its
noise as ``torch.randn(shape, generator=g, dtype=eps.dtype)`` only when t > 0; without
``set_timesteps`` it steps t -> t - 1, with ``set_timesteps(K)`` it steps between the kept
"leading" timesteps ``arange(K) * (T // K)`` using ``beta = 1 - abar_t / abar_prev`` (that is,
respacing). DDIMScheduler.step goes from t to ``t - T // K`` (negative: ``final_alpha_cumprod``,
1 with ``set_alpha_to_one``); ``use_clipped_model_output=True`` re-derives eps from the clipped x0.
diffusers keeps its schedule in float32; for the update tests it is upcast to float64 from its
own betas, so the update formulas are compared to ~1e-12 and the schedules separately to float32
precision.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddgan_core.diffusion import (
    SCHEDULES,
    GaussianDiffusion,
    make_beta_schedule,
    respace,
    space_timesteps,
)

try:  # the oracle; the other tests run without it
    import diffusers
except ImportError:  # pragma: no cover
    diffusers = None

needs_diffusers = pytest.mark.skipif(diffusers is None, reason="needs diffusers (the test extra)")

CASES = [
    ("linear", 1000),
    ("linear", 50),
    ("cosine", 1000),
    ("cosine", 50),
    ("cosine", 4),
    ("vp", 1000),
    ("vp", 50),
    ("vp", 4),
]
CASE_IDS = [f"{n}-T{T}" for n, T in CASES]


def _diffusers_kwargs(name: str, T: int) -> dict:
    if name == "linear":  # diffusers does not rescale by 1000 / T: pass the ends explicitly
        scale = 1000 / T
        return {"beta_schedule": "linear", "beta_start": 1e-4 * scale, "beta_end": 0.02 * scale}
    if name == "cosine":
        return {"beta_schedule": "squaredcos_cap_v2"}
    return {"trained_betas": make_beta_schedule("vp", T)}


def _upcast(sched) -> None:
    """Recompute a diffusers scheduler's tables in float64 from its own (float32) betas."""
    sched.betas = sched.betas.double()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)


def _ddpm(name: str, T: int, clip: bool = True, upcast: bool = True):
    sched = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        variance_type="fixed_small",
        prediction_type="epsilon",
        clip_sample=clip,
        **_diffusers_kwargs(name, T),
    )
    if upcast:
        _upcast(sched)
    return sched


def _ddim(name: str, T: int, clip: bool):
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=T,
        prediction_type="epsilon",
        clip_sample=clip,
        set_alpha_to_one=True,
        **_diffusers_kwargs(name, T),
    )
    _upcast(sched)
    return sched


def _same_chain(sched) -> GaussianDiffusion:
    """Our diffusion built from exactly the betas diffusers holds."""
    return GaussianDiffusion(sched.betas.double().numpy())


def _sample_ts(T: int) -> list[int]:
    return sorted({0, 1, T // 3, T // 2, T - 2, T - 1})


def _inputs(B: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xt = torch.randn(B, 2, 3, 3, generator=g, dtype=dtype)
    eps = torch.randn(B, 2, 3, 3, generator=g, dtype=dtype)
    noise = torch.randn(B, 2, 3, 3, generator=g, dtype=dtype)
    return xt, eps, noise


# ---------------------------------------------------------------------------------------------
# schedules against diffusers and the published numbers
# ---------------------------------------------------------------------------------------------


@needs_diffusers
@pytest.mark.parametrize(("name", "T"), CASES, ids=CASE_IDS)
def test_schedule_matches_diffusers(name, T):
    betas = make_beta_schedule(name, T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    d = GaussianDiffusion(betas)
    sched = _ddpm(name, T, upcast=False)
    np.testing.assert_allclose(sched.betas.double().numpy(), betas, rtol=1e-6, atol=0)
    np.testing.assert_allclose(
        sched.alphas_cumprod.double().numpy(), d.alphas_cumprod, rtol=1e-5, atol=1e-7
    )

    # posterior variance and q_sample, once diffusers is in float64
    _upcast(sched)
    d = _same_chain(sched)
    var = np.array([float(sched._get_variance(t)) for t in range(1, T)])
    np.testing.assert_allclose(d.posterior_variance[1:], var, rtol=1e-12)
    assert d.posterior_variance[0] == 0.0  # diffusers clamps this one to 1e-20
    ts = torch.tensor(_sample_ts(T))
    x0, _, noise = _inputs(len(ts), seed=1)
    torch.testing.assert_close(
        d.q_sample(x0, ts, noise), sched.add_noise(x0, noise, ts), rtol=1e-12, atol=1e-12
    )


def test_linear_schedule_rescales_with_T_and_accepts_overrides():
    b = make_beta_schedule("linear", 1000)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    b = make_beta_schedule("linear", 50)
    assert b[0] == pytest.approx(2e-3) and b[-1] == pytest.approx(0.4)
    b = make_beta_schedule("linear", 10, beta_start=0.01, beta_end=0.3)
    np.testing.assert_allclose(b, np.linspace(0.01, 0.3, 10))


def test_cosine_schedule_follows_alpha_bar_function():
    T, s = 200, 0.008
    d = GaussianDiffusion(make_beta_schedule("cosine", T))

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    expected = np.array([f((t + 1) / T) / f(0) for t in range(T)])
    uncapped = d.betas < 0.999
    assert uncapped.sum() > T - 5  # only the very last betas hit max_beta
    np.testing.assert_allclose(d.alphas_cumprod[uncapped], expected[uncapped], rtol=1e-10)
    assert make_beta_schedule("cosine", T, max_beta=0.5).max() == 0.5


def test_vp_schedule_published_values():
    np.testing.assert_array_equal(
        np.round(make_beta_schedule("vp", 4), 3), [0.478, 0.849, 0.956, 0.987]
    )
    for T in (1, 2, 4, 8):
        abar_T = GaussianDiffusion(make_beta_schedule("vp", T)).alphas_cumprod[-1]
        assert abar_T == pytest.approx(4.3e-5, rel=0.01), T
    # the closed form behind it: abar(1) / abar(eps_small)
    expected = math.exp(-0.5 * 19.9 - 0.1) / math.exp(-0.5 * 1e-6 * 19.9 - 1e-4)
    abar = GaussianDiffusion(make_beta_schedule("vp", 1000)).alphas_cumprod[-1]
    assert abar == pytest.approx(expected, rel=1e-10)


def test_attributes_are_float64_and_consistent():
    d = GaussianDiffusion(make_beta_schedule("cosine", 10))
    assert d.num_timesteps == 10
    for name in (
        "betas",
        "alphas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    ):
        arr = getattr(d, name)
        assert arr.dtype == np.float64 and arr.shape == (10,), name
    assert d.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_allclose(d.alphas_cumprod_prev[1:], d.alphas_cumprod[:-1])
    assert d.posterior_log_variance_clipped[0] == d.posterior_log_variance_clipped[1]
    np.testing.assert_allclose(
        d.posterior_log_variance_clipped[1:], np.log(d.posterior_variance[1:])
    )
    assert set(SCHEDULES) == {"linear", "cosine", "vp"}
    one = GaussianDiffusion([0.5])  # T = 1 works, with a finite clipped log-variance
    assert np.isfinite(one.posterior_log_variance_clipped).all()


# ---------------------------------------------------------------------------------------------
# ancestral and DDIM updates against diffusers
# ---------------------------------------------------------------------------------------------


@needs_diffusers
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize(("name", "T"), CASES, ids=CASE_IDS)
def test_ancestral_step_matches_ddpm_scheduler(name, T, clip):
    sched = _ddpm(name, T, clip=clip)
    d = _same_chain(sched)
    ts = _sample_ts(T)
    xt, eps, _ = _inputs(len(ts), seed=T)
    expected, noise = [], []
    for i, t in enumerate(ts):
        seed = 1000 + i
        noise.append(torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64))
        out = sched.step(eps[i : i + 1], t, xt[i : i + 1],
                         generator=torch.Generator().manual_seed(seed))
        expected.append(out.prev_sample)
    got = d.p_sample_from_eps(eps, xt, torch.tensor(ts), noise=torch.cat(noise), clip=clip)
    torch.testing.assert_close(got, torch.cat(expected), rtol=1e-10, atol=1e-10)


@needs_diffusers
@pytest.mark.parametrize(
    ("name", "T", "K"), [("linear", 1000, 10), ("cosine", 50, 5), ("vp", 1000, 25)]
)
def test_respaced_ancestral_step_matches_ddpm_scheduler_with_inference_steps(name, T, K):
    sched = _ddpm(name, T, clip=True)
    sched.set_timesteps(K)
    kept = space_timesteps(T, f"ddim{K}")
    assert kept == sorted(sched.timesteps.tolist())
    rd, timestep_map = respace(_same_chain(sched), kept)
    assert rd.num_timesteps == K
    xt, eps, noise = _inputs(K, seed=K)
    expected = []
    for i in range(K):
        step_noise = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(i),
                                 dtype=torch.float64)
        noise[i] = step_noise[0]
        out = sched.step(eps[i : i + 1], int(timestep_map[i]), xt[i : i + 1],
                         generator=torch.Generator().manual_seed(i))
        expected.append(out.prev_sample)
    got = rd.p_sample_from_eps(eps, xt, torch.arange(K), noise=noise)
    torch.testing.assert_close(got, torch.cat(expected), rtol=1e-10, atol=1e-10)


@needs_diffusers
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize(("name", "T"), CASES, ids=CASE_IDS)
def test_ddim_step_matches_ddim_scheduler(name, T, clip):
    K = {1000: 20, 50: 10, 4: 4}[T]
    sched = _ddim(name, T, clip)
    sched.set_timesteps(K)
    d = _same_chain(sched)
    ts = sched.timesteps.clone()
    t_prev = (ts - T // K).clamp(min=-1)
    xt, eps, noise = _inputs(K, seed=K + T)
    for eta in (0.0, 0.5, 1.0):
        expected = [
            sched.step(eps[i : i + 1], int(t), xt[i : i + 1], eta=eta,
                       use_clipped_model_output=True, variance_noise=noise[i : i + 1]).prev_sample
            for i, t in enumerate(ts)
        ]
        got = d.ddim_step(eps, xt, ts, t_prev, eta=eta, noise=noise, clip=clip)
        torch.testing.assert_close(got, torch.cat(expected), rtol=1e-10, atol=1e-10)


@needs_diffusers
def test_float32_end_to_end_against_diffusers_float32():
    """float32 tensors: we stay within 1e-6 of the float64 update; native diffusers within 1e-4.

    diffusers keeps abar in float32 and forms beta_t = 1 - abar_t / abar_{t-1} and 1 - abar_t
    from it: at small t this cancellation costs it ~5e-5 (relative), while our coefficients are
    float64 and only the final products are rounded. The float64 reference is our own update,
    checked against float64 diffusers to 1e-10 by the tests above.
    """
    T, K = 1000, 50
    d = GaussianDiffusion(make_beta_schedule("linear", T))
    ddpm = _ddpm("linear", T, clip=True, upcast=False)
    ts = _sample_ts(T)
    xt, eps, _ = _inputs(len(ts), seed=3, dtype=torch.float32)
    native = torch.cat([
        ddpm.step(eps[i : i + 1], t, xt[i : i + 1],
                  generator=torch.Generator().manual_seed(i)).prev_sample
        for i, t in enumerate(ts)
    ])
    noise = torch.cat([torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(i))
                       for i in range(len(ts))])
    ours = d.p_sample_from_eps(eps, xt, torch.tensor(ts), noise=noise)
    ref = d.p_sample_from_eps(eps.double(), xt.double(), torch.tensor(ts), noise=noise.double())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(native.double(), ref, rtol=1e-4, atol=1e-4)

    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, clip_sample=False)
    ddim.set_timesteps(K)
    t_prev = (ddim.timesteps - T // K).clamp(min=-1)
    xt, eps, noise = _inputs(K, seed=4, dtype=torch.float32)
    native = torch.cat([
        ddim.step(eps[i : i + 1], int(t), xt[i : i + 1], eta=0.7,
                  variance_noise=noise[i : i + 1]).prev_sample
        for i, t in enumerate(ddim.timesteps)
    ])
    ours = d.ddim_step(eps, xt, ddim.timesteps, t_prev, eta=0.7, noise=noise, clip=False)
    ref = d.ddim_step(eps.double(), xt.double(), ddim.timesteps, t_prev, eta=0.7,
                      noise=noise.double(), clip=False)
    assert ours.dtype == torch.float32
    # x0 is not clipped here, so |x| reaches ~1/sqrt(abar) ~ 150 at the last steps: use rtol
    torch.testing.assert_close(ours.double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(native.double(), ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# internal consistency
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [True, False])
def test_ddim_with_eta_one_and_unit_stride_is_the_ancestral_step(clip):
    d = GaussianDiffusion(make_beta_schedule("cosine", 30))
    ts = torch.arange(30)
    xt, eps, noise = _inputs(30, seed=5)
    ddim = d.ddim_step(eps, xt, ts, ts - 1, eta=1.0, noise=noise, clip=clip)
    ddpm = d.p_sample_from_eps(eps, xt, ts, noise=noise, clip=clip)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-10, atol=1e-10)


def test_respaced_ddim_equals_ddim_on_original_chain():
    d = GaussianDiffusion(make_beta_schedule("vp", 100))
    rd, tmap = respace(d, space_timesteps(100, [4, 3]))
    K = rd.num_timesteps
    idx = torch.arange(K)
    orig = torch.as_tensor(tmap)
    orig_prev = torch.cat([torch.tensor([-1]), orig[:-1]])
    xt, eps, noise = _inputs(K, seed=6)
    a = rd.ddim_step(eps, xt, idx, idx - 1, eta=0.3, noise=noise)
    b = d.ddim_step(eps, xt, orig, orig_prev, eta=0.3, noise=noise)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_predictions_invert_each_other_and_q_sample():
    d = GaussianDiffusion(make_beta_schedule("linear", 1000))
    ts = torch.tensor(_sample_ts(1000))
    x0, eps, _ = _inputs(len(ts), seed=7)
    xt = d.q_sample(x0, ts, noise=eps)
    torch.testing.assert_close(d.predict_x0_from_eps(xt, ts, eps), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d.predict_eps_from_x0(xt, ts, x0), eps, rtol=1e-9, atol=1e-9)
    # row i uses its own t: compare with the scalar formula of eq. (2)
    for i, t in enumerate(ts.tolist()):
        a = d.alphas_cumprod[t]
        torch.testing.assert_close(xt[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * eps[i])


def test_p_sample_at_t0_is_the_clipped_prediction_without_noise():
    d = GaussianDiffusion(make_beta_schedule("cosine", 10))
    x0_pred = torch.linspace(-3, 3, 8, dtype=torch.float64).reshape(2, 4)
    xt = torch.zeros(2, 4, dtype=torch.float64)
    t = torch.zeros(2, dtype=torch.long)
    out = d.p_sample_from_x0(x0_pred, xt, t, noise=torch.full_like(xt, 100.0))
    torch.testing.assert_close(out, x0_pred.clamp(-1, 1))
    out = d.p_sample_from_x0(x0_pred, xt, t, noise=torch.full_like(xt, 100.0), clip=False)
    torch.testing.assert_close(out, x0_pred)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype):
    d = GaussianDiffusion(make_beta_schedule("cosine", 20))
    ts = torch.tensor([0, 7, 19])
    x0, eps, noise = (a.to(dtype) for a in _inputs(3, seed=8))
    ref = d.q_sample(x0.double(), ts, eps.double())
    xt = d.q_sample(x0, ts, eps)
    assert xt.dtype == dtype
    torch.testing.assert_close(xt.double(), ref, rtol=1e-2, atol=1e-2)
    mean, var, log_var = d.q_posterior_mean_variance(x0, xt, ts)
    assert mean.dtype == var.dtype == log_var.dtype == dtype and var.shape == x0.shape
    assert d.p_sample_from_eps(eps, xt, ts, noise).dtype == dtype
    assert d.ddim_step(eps, xt, ts, ts - 1, eta=0.5, noise=noise).dtype == dtype


# ---------------------------------------------------------------------------------------------
# Monte Carlo and Bayes' rule
# ---------------------------------------------------------------------------------------------


def test_iterated_q_step_matches_q_sample_in_distribution():
    """n i.i.d. 1-D chains (one batch row of n values): eq. (1) applied t + 1 times is eq. (2)."""
    d = GaussianDiffusion(make_beta_schedule("cosine", 50))
    n, x0_value = 200_000, 0.8
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((1, n), x0_value, dtype=torch.float64)
    x = x0
    checkpoints = {0, 5, 20, 49}
    for t in range(50):
        tt = torch.tensor([t])
        x = d.q_step(x, tt, noise=torch.randn(1, n, generator=g, dtype=torch.float64))
        if t not in checkpoints:
            continue
        mean, var, _ = d.q_mean_variance(x0, tt)
        mu, v = float(mean[0, 0]), float(var[0, 0])
        assert mu == pytest.approx(math.sqrt(d.alphas_cumprod[t]) * x0_value)
        direct = d.q_sample(x0, tt, noise=torch.randn(1, n, generator=g, dtype=torch.float64))
        se_mean, se_var = math.sqrt(v / n), v * math.sqrt(2.0 / n)
        for sample in (x, direct):
            assert abs(float(sample.mean()) - mu) < 5 * se_mean, t
            assert abs(float(sample.var()) - v) < 5 * se_var, t


@pytest.mark.parametrize(("name", "T", "t"), [("cosine", 50, 1), ("cosine", 50, 30),
                                              ("vp", 4, 1), ("vp", 4, 3), ("linear", 1000, 500)])
def test_posterior_is_bayes_rule_on_a_grid(name, T, t):
    """q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) q(x_t | x_{t-1}), integrated numerically."""
    d = GaussianDiffusion(make_beta_schedule(name, T))
    x0 = 0.5
    a_prev, a_t, beta = d.alphas_cumprod[t - 1], d.alphas_cumprod[t], d.betas[t]
    xt = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * 0.7
    m_prior, v_prior = math.sqrt(a_prev) * x0, 1 - a_prev
    grid = np.linspace(m_prior - 12 * math.sqrt(v_prior), m_prior + 12 * math.sqrt(v_prior),
                       400_001)
    log_w = -((grid - m_prior) ** 2) / (2 * v_prior)
    log_w -= (xt - math.sqrt(1 - beta) * grid) ** 2 / (2 * beta)
    w = np.exp(log_w - log_w.max())
    m_num = float(np.sum(w * grid) / np.sum(w))
    v_num = float(np.sum(w * (grid - m_num) ** 2) / np.sum(w))

    tt = torch.tensor([t])
    mean, var, log_var = d.q_posterior_mean_variance(
        torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), tt
    )
    assert float(mean) == pytest.approx(m_num, rel=1e-7, abs=1e-9)
    assert float(var) == pytest.approx(v_num, rel=1e-6)
    assert float(log_var) == pytest.approx(math.log(v_num), abs=1e-6)


def test_posterior_closed_form_product_of_gaussians_for_every_t():
    d = GaussianDiffusion(make_beta_schedule("vp", 100))
    T = d.num_timesteps
    ts = torch.arange(T)
    x0 = torch.linspace(-1, 1, T, dtype=torch.float64)[:, None]
    xt = torch.linspace(2, -2, T, dtype=torch.float64)[:, None]
    mean, var, _ = d.q_posterior_mean_variance(x0, xt, ts)
    a_prev, beta = d.alphas_cumprod_prev[1:], d.betas[1:]
    precision = 1 / (1 - a_prev) + (1 - beta) / beta
    m = (np.sqrt(a_prev) * x0[1:, 0].numpy() / (1 - a_prev)
         + np.sqrt(1 - beta) * xt[1:, 0].numpy() / beta) / precision
    np.testing.assert_allclose(var[1:, 0].numpy(), 1 / precision, rtol=1e-10)
    np.testing.assert_allclose(mean[1:, 0].numpy(), m, rtol=1e-10, atol=1e-12)
    # t = 0: x_{-1} is x_0 itself, a point mass
    assert float(var[0, 0]) == 0.0 and float(mean[0, 0]) == pytest.approx(float(x0[0, 0]))


# ---------------------------------------------------------------------------------------------
# respacing
# ---------------------------------------------------------------------------------------------


def test_space_timesteps_hand_checked_cases():
    assert space_timesteps(1000, [10]) == list(range(0, 1000, 111))
    assert space_timesteps(1000, 10) == space_timesteps(1000, [10])
    assert space_timesteps(1000, "ddim10") == list(range(0, 1000, 100))
    assert space_timesteps(100, [1]) == [0]
    assert space_timesteps(10, [2, 3]) == [0, 4, 5, 7, 9]
    assert space_timesteps(10, "2,3") == [0, 4, 5, 7, 9]
    assert space_timesteps(11, [2, 2]) == [0, 5, 6, 10]  # first section gets the extra step
    assert space_timesteps(6, [3]) == [0, 2, 5]  # 2.5 rounds half to even, as Python's round
    assert space_timesteps(10, "ddim4") == [0, 3, 6, 9]
    assert space_timesteps(7, "ddim1") == [0]
    assert space_timesteps(7, 7) == list(range(7))


def test_respace_with_all_steps_is_the_original():
    d = GaussianDiffusion(make_beta_schedule("cosine", 100))
    rd, tmap = respace(d, space_timesteps(100, 100))
    np.testing.assert_array_equal(tmap, np.arange(100))
    for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
                 "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"):
        np.testing.assert_allclose(getattr(rd, name), getattr(d, name), rtol=1e-11, err_msg=name)


def test_respace_preserves_alphas_cumprod_at_kept_steps():
    d = GaussianDiffusion(make_beta_schedule("linear", 1000))
    kept = space_timesteps(1000, [10, 15, 5])
    assert len(kept) == 30
    rd, tmap = respace(d, reversed(kept))  # order of the input does not matter
    assert tmap.dtype == np.int64 and tmap.tolist() == kept
    np.testing.assert_allclose(rd.alphas_cumprod, d.alphas_cumprod[kept], rtol=1e-12)
    # eq. (2) is the same process at the kept steps
    x0, noise, _ = _inputs(30, seed=9)
    torch.testing.assert_close(
        rd.q_sample(x0, torch.arange(30), noise),
        d.q_sample(x0, torch.as_tensor(tmap), noise),
        rtol=1e-12,
        atol=1e-12,
    )


# ---------------------------------------------------------------------------------------------
# error paths
# ---------------------------------------------------------------------------------------------


def test_schedule_errors():
    with pytest.raises(ValueError, match=r"name must be one of .*got 'quadratic'"):
        make_beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match=r"num_timesteps must be an integer >= 1, got 0"):
        make_beta_schedule("cosine", 0)
    with pytest.raises(ValueError, match=r"num_timesteps must be an integer, got 2.5"):
        make_beta_schedule("vp", 2.5)
    with pytest.raises(ValueError, match=r"beta_end must be a finite number, got nan"):
        make_beta_schedule("linear", 100, beta_end=float("nan"))
    with pytest.raises(ValueError, match=r"option 'beta_min' is not accepted.*'linear'"):
        make_beta_schedule("linear", 100, beta_min=0.1)
    with pytest.raises(ValueError, match=r"num_timesteps=10.*betas must lie in \(0, 1\)"):
        make_beta_schedule("linear", 10)  # 0.02 * 1000 / 10 = 2 > 1
    # T = 20 ends at beta = 1 exactly: abar_T = 0, infinite x0-from-eps coefficients, NaN samples
    with pytest.raises(ValueError, match=r"num_timesteps=20.*needs num_timesteps >= 21"):
        make_beta_schedule("linear", 20)
    assert make_beta_schedule("linear", 21).max() < 1.0


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.5], [0.1, float("nan")], [[0.1]], []])
def test_bad_betas(betas):
    with pytest.raises(ValueError, match=r"betas"):
        GaussianDiffusion(betas)


def test_t_and_shape_errors():
    d = GaussianDiffusion(make_beta_schedule("cosine", 10))
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\].*got t = 10"):
        d.q_sample(x, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 9\].*got t = -1"):
        d.q_step(x, torch.tensor([-1, 3]))
    with pytest.raises(ValueError, match=r"t must have an integer dtype, got torch.float32"):
        d.q_mean_variance(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"t has 3 entries but the batch has 2 rows"):
        d.q_sample(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"t must have shape \[B\], got shape \(2, 1\)"):
        d.q_sample(x, torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match=r"t must be an integer torch.Tensor"):
        d.q_sample(x, [1, 2])
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"noise must have the shape of x0 \(2, 3\), got \(2, 4\)"):
        d.q_sample(x, t, noise=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"xt must have the shape of x0 \(2, 3\), got \(3,\)"):
        d.q_posterior_mean_variance(x, torch.zeros(3), t)
    with pytest.raises(ValueError, match=r"eps must have the shape of xt"):
        d.p_sample_from_eps(torch.zeros(2, 1), x, t)
    with pytest.raises(ValueError, match=r"x0 must be a floating-point torch.Tensor"):
        d.q_sample(torch.zeros(2, 3, dtype=torch.long), t)
    with pytest.raises(ValueError, match=r"t_prev must be smaller than t.*t_prev = 2 for t = 2"):
        d.ddim_step(x, x, t, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"t_prev must lie in \[-1, 9\].*got t_prev = -2"):
        d.ddim_step(x, x, t, torch.tensor([-2, 0]))
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\], got eta = 1.5"):
        d.ddim_step(x, x, t, t - 1, eta=1.5)


def test_respacing_errors():
    d = GaussianDiffusion(make_beta_schedule("cosine", 10))
    with pytest.raises(ValueError, match=r"section_counts\[0\].*in \[1, 10\], got 0"):
        space_timesteps(10, [0])
    with pytest.raises(ValueError, match=r"section_counts\[0\].*in \[1, 10\], got 11"):
        space_timesteps(10, 11)
    with pytest.raises(ValueError, match=r"section_counts\[1\].*in \[1, 5\], got 6"):
        space_timesteps(10, [1, 6])
    with pytest.raises(ValueError, match=r"ddim K.*in \[1, 10\], got 11"):
        space_timesteps(10, "ddim11")
    with pytest.raises(ValueError, match=r"'ddim6'.*no integer stride gives exactly 6 steps"):
        space_timesteps(10, "ddim6")
    with pytest.raises(ValueError, match=r"num_timesteps must be an integer >= 1, got 0"):
        space_timesteps(0, [1])
    with pytest.raises(ValueError, match=r"use_timesteps must lie in \[0, 9\].*got 10"):
        respace(d, [0, 10])
    with pytest.raises(ValueError, match=r"use_timesteps must keep at least one step"):
        respace(d, [])


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    d = GaussianDiffusion(make_beta_schedule("cosine", 1000))
    ts = torch.tensor(_sample_ts(1000))
    x0, eps, noise = _inputs(len(ts), seed=10)
    cuda = torch.device("cuda")
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        a, e, n = (v.to(dtype) for v in (x0, eps, noise))
        xt = d.q_sample(a, ts, e)
        xt_gpu = d.q_sample(a.to(cuda), ts.to(cuda), e.to(cuda))  # t on the device
        assert xt_gpu.device.type == "cuda" and xt_gpu.dtype == dtype
        torch.testing.assert_close(xt_gpu.cpu(), xt, rtol=tol, atol=tol)
        cpu = d.q_posterior_mean_variance(a, xt, ts)
        gpu = d.q_posterior_mean_variance(a.to(cuda), xt.to(cuda), ts)  # t left on the CPU
        for c, g in zip(cpu, gpu, strict=True):
            torch.testing.assert_close(g.cpu(), c, rtol=tol, atol=tol)
        step = d.ddim_step(e, xt, ts, ts - 1, eta=0.5, noise=n)
        step_gpu = d.ddim_step(e.to(cuda), xt.to(cuda), ts.to(cuda), (ts - 1).to(cuda),
                               eta=0.5, noise=n.to(cuda))
        torch.testing.assert_close(step_gpu.cpu(), step, rtol=tol, atol=tol)
