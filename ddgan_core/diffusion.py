"""Gaussian diffusion: beta schedules, the forward process, its posterior and the samplers' updates.

Everything a DDPM (Ho et al., 2020) or a Denoising Diffusion GAN (Xiao et al., 2022) needs from
the Gaussian forward process lives in :class:`GaussianDiffusion`, written after openai's
improved-diffusion ``gaussian_diffusion.py`` and with the papers' names:

* eq. (1)  q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)       -> :meth:`q_step`
* eq. (2)  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)             -> :meth:`q_sample`
* Ho et al. eq. (6)-(7)  q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)
                                                      -> :meth:`q_posterior_mean_variance`
* Song et al. (2021) eq. (12), the DDIM update                            -> :meth:`ddim_step`

Conventions. Timesteps are 0-based as in improved-diffusion and diffusers: ``t`` runs over
``0 .. T-1``, ``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])`` and ``x_{-1}`` is the data
``x_0`` (so ``alphas_cumprod_prev[0] = 1`` and the posterior at ``t = 0`` is a point mass on
``x_0``). The schedule is kept in float64 numpy arrays. Methods take torch tensors ``x`` of any
floating dtype and device, shaped ``[B, ...]``, and an integer tensor ``t`` of shape ``[B]`` (each
row may have its own timestep). Per-row coefficients are gathered and combined in float64 on
``x``'s device; the arithmetic on ``x`` runs in float64 for float64 input and in float32 otherwise,
and results come back in ``x``'s dtype.

Respacing (:func:`space_timesteps`, :func:`respace`) keeps a subset of the timesteps and rebuilds
the betas so that the kept ``alphas_cumprod`` are unchanged, as improved-diffusion's
``SpacedDiffusion`` does; the network is then called with the original timesteps through
``timestep_map``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "SCHEDULES",
    "GaussianDiffusion",
    "make_beta_schedule",
    "respace",
    "space_timesteps",
]

SCHEDULES = ("linear", "cosine", "vp")

_SCHEDULE_OPTIONS = {
    "linear": {"beta_start": None, "beta_end": None},
    "cosine": {"s": 0.008, "max_beta": 0.999},
    "vp": {"beta_min": 0.1, "beta_max": 20.0, "eps_small": 1e-3},
}


# --------------------------------------------------------------------------------------------
# beta schedules
# --------------------------------------------------------------------------------------------


def _check_count(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise a ValueError that names it."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < low or (high is not None and n > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {n}")
    return n


def make_beta_schedule(name: str, num_timesteps: int, **options: float) -> np.ndarray:
    """Return the ``num_timesteps`` betas (float64) of a named noise schedule.

    ``"linear"``
        DDPM's schedule (Ho et al., 2020, sec. 4): betas evenly spaced from ``beta_start`` to
        ``beta_end``. By default these are 1e-4 and 0.02 rescaled by ``1000 / T`` (improved-
        diffusion's ``get_named_beta_schedule``), so any ``T > 20`` spans the same noise range as
        T = 1000. Explicit ``beta_start`` / ``beta_end`` options are used as given (no rescaling).
    ``"cosine"``
        Nichol & Dhariwal (2021), eq. (17): ``abar(u) = cos^2(((u + s) / (1 + s)) pi / 2)`` with
        ``s = 0.008`` and ``beta_i = min(1 - abar((i + 1) / T) / abar(i / T), max_beta)``,
        ``max_beta = 0.999``.
    ``"vp"``
        DDGAN's discrete VP-SDE schedule (Xiao et al., 2022, from Song et al. 2021): times
        ``tau_i = i / T (1 - eps_small) + eps_small`` for ``i = 0..T``, ``abar(tau) =
        exp(-tau^2 (beta_max - beta_min) / 2 - tau beta_min)`` with ``beta_min = 0.1``,
        ``beta_max = 20``, ``eps_small = 1e-3``, and ``beta_i = 1 - abar(tau_i) / abar(tau_{i-1})``
        for ``i = 1..T``. The product of ``1 - beta`` is ``abar(1) / abar(eps_small) ~= 4.3e-5``
        whatever ``T``. (DDGAN's own code prepends a 0-th beta of 1e-8 for its forward chain; the
        0-based convention here has ``x_{-1} = x_0`` instead.)

    Raises ``ValueError`` for an unknown name or option, ``num_timesteps < 1``, a non-finite
    option, or options that give betas outside ``(0, 1)`` (a beta of 1 makes abar_T = 0 and the
    x0-from-eps coefficients infinite: DDPM's linear schedule at T = 20 ends at beta = 1).
    """
    if name not in SCHEDULES:
        raise ValueError(f"name must be one of {SCHEDULES}, got {name!r}")
    T = _check_count("num_timesteps", num_timesteps)
    allowed = _SCHEDULE_OPTIONS[name]
    opts = dict(allowed)
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(
                f"option {key!r} is not accepted by the {name!r} schedule; "
                f"allowed: {tuple(allowed)}"
            )
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"option {key} must be a finite number, got {value!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"option {key} must be a finite number, got {value!r}")
        opts[key] = value

    if name == "linear":
        scale = 1000.0 / T
        start = scale * 1e-4 if opts["beta_start"] is None else opts["beta_start"]
        end = scale * 0.02 if opts["beta_end"] is None else opts["beta_end"]
        betas = np.linspace(start, end, T, dtype=np.float64)
    elif name == "cosine":
        s, max_beta = opts["s"], opts["max_beta"]
        u = np.arange(T + 1, dtype=np.float64) / T
        abar = np.cos((u + s) / (1.0 + s) * (math.pi / 2.0)) ** 2
        betas = np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)
    else:  # "vp"
        bmin, bmax, eps = opts["beta_min"], opts["beta_max"], opts["eps_small"]
        tau = np.arange(T + 1, dtype=np.float64) / T * (1.0 - eps) + eps
        log_abar = -0.5 * tau**2 * (bmax - bmin) - tau * bmin
        # 1 - abar_i / abar_{i-1}, computed as -expm1(difference of logs) to keep small betas exact
        betas = -np.expm1(np.diff(log_abar))

    if not (np.all(np.isfinite(betas)) and np.all(betas > 0.0) and np.all(betas < 1.0)):
        hint = ""
        if name == "linear":
            hint = " (the default linear schedule needs num_timesteps >= 21)"
        raise ValueError(
            f"the {name!r} schedule with num_timesteps={T} and options {options} gives betas in "
            f"[{betas.min():.3g}, {betas.max():.3g}]; betas must lie in (0, 1){hint}"
        )
    return betas


# --------------------------------------------------------------------------------------------
# the diffusion
# --------------------------------------------------------------------------------------------


class GaussianDiffusion:
    """The Gaussian forward process given by ``betas`` and the updates derived from it.

    Attributes (float64 numpy arrays of length ``T = num_timesteps``, index ``t = 0..T-1``):
    ``betas``, ``alphas = 1 - betas``, ``alphas_cumprod`` (abar_t), ``alphas_cumprod_prev``
    (abar_{t-1}, 1 at t = 0), ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``,
    ``log_one_minus_alphas_cumprod``, ``sqrt_recip_alphas_cumprod``,
    ``sqrt_recipm1_alphas_cumprod``, ``posterior_variance`` (beta~_t of Ho et al. eq. 7),
    ``posterior_log_variance_clipped`` (its log with the t = 0 entry, log 0, replaced by t = 1's
    as improved-diffusion does; for T = 1, by log beta_0), ``posterior_mean_coef1`` and
    ``posterior_mean_coef2`` (the factors of x_0 and x_t in mu~_t, eq. 7).
    """

    def __init__(self, betas: Sequence[float] | np.ndarray) -> None:
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
        bad = ~(np.isfinite(betas) & (betas > 0.0) & (betas <= 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"betas must lie in (0, 1], got betas[{i}] = {betas[i]!r}")
        self.num_timesteps = T = int(betas.size)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        if not self.alphas_cumprod[0] < 1.0:
            raise ValueError(f"betas[0] = {betas[0]!r} is too small: 1 - betas[0] rounds to 1")
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])

        # q(x_t | x_0), eq. (2), and its inversions
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)

        # q(x_{t-1} | x_t, x_0), Ho et al. eq. (6)-(7)
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus
        first = self.posterior_variance[1] if T > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(
            np.append(first, self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / one_minus
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / one_minus
        )

        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_timesteps={self.num_timesteps}, "
            f"alphas_cumprod[-1]={self.alphas_cumprod[-1]:.3g})"
        )

    # -- helpers -------------------------------------------------------------------------------

    def validate_t(
        self,
        t: torch.Tensor,
        batch_size: int | None = None,
        *,
        name: str = "t",
        allow_minus_one: bool = False,
    ) -> torch.Tensor:
        """Check that ``t`` is a 1-D integer tensor of timesteps in ``[0, T-1]`` and return it.

        ``batch_size``, if given, must equal ``len(t)``. With ``allow_minus_one`` the value -1
        (DDIM's final step to x_0) is also accepted. Raises ``ValueError`` naming ``name``.
        """
        hi = self.num_timesteps - 1
        lo = -1 if allow_minus_one else 0
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be an integer torch.Tensor of shape [B], got {type(t)}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must have an integer dtype, got {t.dtype}")
        if t.ndim != 1:
            raise ValueError(f"{name} must have shape [B], got shape {tuple(t.shape)}")
        if batch_size is not None and t.shape[0] != batch_size:
            raise ValueError(
                f"{name} has {t.shape[0]} entries but the batch has {batch_size} rows "
                f"(shape of {name}: {tuple(t.shape)})"
            )
        if t.numel() > 0:
            t_min, t_max = int(t.min()), int(t.max())
            if t_min < lo or t_max > hi:
                value = t_min if t_min < lo else t_max
                raise ValueError(
                    f"{name} must lie in [{lo}, {hi}] (num_timesteps={self.num_timesteps}), "
                    f"got {name} = {value}"
                )
        return t

    def _check_x(self, x: torch.Tensor, name: str, t: torch.Tensor, tname: str = "t") -> None:
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            what = x.dtype if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f"{name} must be a floating-point torch.Tensor, got {what}")
        if x.ndim < 1:
            raise ValueError(f"{name} must have shape [B, ...], got a scalar")
        self.validate_t(t, x.shape[0], name=tname)

    @staticmethod
    def _check_same_shape(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
        if not isinstance(b, torch.Tensor) or b.shape != a.shape:
            got = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b)
            raise ValueError(
                f"{b_name} must have the shape of {a_name} {tuple(a.shape)}, got {got}"
            )

    def _gather(self, name: str, t: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``getattr(self, name)[t]`` as a float64 tensor of shape [B] on ``device``."""
        key = (name, device)
        table = self._on_device.get(key)
        if table is None:
            table = torch.from_numpy(getattr(self, name)).to(device)
            self._on_device[key] = table
        return table[t.to(device=device, dtype=torch.long)]

    @staticmethod
    def _work_dtype(x: torch.Tensor) -> torch.dtype:
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    @classmethod
    def _bcast(cls, coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reshape per-row coefficients [B] to [B, 1, ..., 1] in the working dtype of ``x``."""
        return coef.to(cls._work_dtype(x)).reshape((-1,) + (1,) * (x.ndim - 1))

    def _lincomb(self, *terms: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """sum_k coef_k * x_k with per-row coefficients, returned in the dtype of the first x."""
        x_first = terms[0][1]
        wd = self._work_dtype(x_first)
        out = None
        for coef, x in terms:
            term = self._bcast(coef, x_first) * x.to(wd)
            out = term if out is None else out + term
        return out.to(x_first.dtype)

    def _noise_like(self, x: torch.Tensor, noise: torch.Tensor | None, name: str) -> torch.Tensor:
        if noise is None:
            return torch.randn_like(x)
        self._check_same_shape(x, name, noise, "noise")
        return noise

    def _per_row(self, coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """[B] float64 coefficients as a tensor broadcast (a view) to x's shape and dtype."""
        return coef.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)).expand(x.shape)

    # -- forward process -----------------------------------------------------------------------

    def q_mean_variance(
        self, x0: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of q(x_t | x_0) (eq. 2).

        The variance tensors are expanded views of x0's shape.
        """
        self._check_x(x0, "x0", t)
        mean = self._lincomb((self._gather("sqrt_alphas_cumprod", t, x0.device), x0))
        var = self._per_row(1.0 - self._gather("alphas_cumprod", t, x0.device), x0)
        log_var = self._per_row(self._gather("log_one_minus_alphas_cumprod", t, x0.device), x0)
        return mean, var, log_var

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) (eq. 2): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        self._check_x(x0, "x0", t)
        noise = self._noise_like(x0, noise, "x0")
        return self._lincomb(
            (self._gather("sqrt_alphas_cumprod", t, x0.device), x0),
            (self._gather("sqrt_one_minus_alphas_cumprod", t, x0.device), noise),
        )

    def q_step(
        self, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One forward step x_{t-1} -> x_t ~ q(x_t | x_{t-1}) (eq. 1), with ``betas[t]``.

        ``sqrt(1 - beta_t) x_prev + sqrt(beta_t) noise``; at t = 0, x_prev is the data x_0.
        """
        self._check_x(x_prev, "x_prev", t)
        noise = self._noise_like(x_prev, noise, "x_prev")
        beta = self._gather("betas", t, x_prev.device)
        return self._lincomb((torch.sqrt(1.0 - beta), x_prev), (torch.sqrt(beta), noise))

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 6-7).

        mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) /
        (1 - abar_t) x_t and beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t. At t = 0 the mean is
        x_0 and the variance 0. The variance tensors are expanded views of x0's shape.
        """
        self._check_x(x0, "x0", t)
        self._check_same_shape(x0, "x0", xt, "xt")
        dev = x0.device
        mean = self._lincomb(
            (self._gather("posterior_mean_coef1", t, dev), x0),
            (self._gather("posterior_mean_coef2", t, dev), xt),
        )
        var = self._per_row(self._gather("posterior_variance", t, dev), x0)
        log_var = self._per_row(self._gather("posterior_log_variance_clipped", t, dev), x0)
        return mean, var, log_var

    # -- parameterisations ---------------------------------------------------------------------

    def predict_x0_from_eps(
        self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """Invert eq. (2) for x_0: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        self._check_x(xt, "xt", t)
        self._check_same_shape(xt, "xt", eps, "eps")
        return self._lincomb(
            (self._gather("sqrt_recip_alphas_cumprod", t, xt.device), xt),
            (-self._gather("sqrt_recipm1_alphas_cumprod", t, xt.device), eps),
        )

    def predict_eps_from_x0(
        self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """Invert eq. (2) for the noise: ``(x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t)``."""
        self._check_x(xt, "xt", t)
        self._check_same_shape(xt, "xt", x0, "x0")
        r = self._gather("sqrt_recip_alphas_cumprod", t, xt.device)
        rm1 = self._gather("sqrt_recipm1_alphas_cumprod", t, xt.device)
        return self._lincomb((r / rm1, xt), (-1.0 / rm1, x0))

    # -- reverse process -----------------------------------------------------------------------

    def p_mean_variance_from_x0(
        self, x0_pred: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, clip: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance, log-variance of p(x_{t-1} | x_t) = q(x_{t-1} | x_t, x0_pred).

        The ancestral kernel of DDPM ("fixed small" variance beta~_t, Ho et al. sec. 3.2) and of
        DDGAN's posterior sampling; ``x0_pred`` is clamped to [-1, 1] first when ``clip``.
        """
        if clip:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
        return self.q_posterior_mean_variance(x0_pred, xt, t)

    def p_sample_from_x0(
        self,
        x0_pred: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        """Ancestral step x_t -> x_{t-1} ~ q(x_{t-1} | x_t, x0_pred): ``mu~ + sqrt(beta~) noise``.

        No noise is added in the rows where t == 0 (the result is then the, possibly clipped,
        x0_pred).
        """
        self._check_x(xt, "xt", t)
        self._check_same_shape(xt, "xt", x0_pred, "x0_pred")
        noise = self._noise_like(xt, noise, "xt")
        mean, _, _ = self.p_mean_variance_from_x0(x0_pred, xt, t, clip=clip)
        std = torch.exp(0.5 * self._gather("posterior_log_variance_clipped", t, xt.device))
        std = torch.where(t.to(xt.device) > 0, std, torch.zeros_like(std))
        return self._lincomb((torch.ones_like(std), mean), (std, noise))

    def p_sample_from_eps(
        self,
        eps: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        """DDPM's ancestral step (Ho et al. Algorithm 2, in the x_0 form) from predicted noise.

        x0_pred = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clamped when ``clip``, then
        :meth:`p_sample_from_x0`.
        """
        x0_pred = self.predict_x0_from_eps(xt, t, eps)
        return self.p_sample_from_x0(x0_pred, xt, t, noise=noise, clip=clip)

    def ddim_step(
        self,
        eps: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        """DDIM update from x_t at t to x_{t_prev} (Song et al. 2021, eq. 12) given predicted noise.

        x_{t'} = sqrt(abar_{t'}) x0_pred + sqrt(1 - abar_{t'} - sigma^2) eps + sigma noise with
        sigma = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'}) (eq. 16).
        ``t_prev`` must be below ``t`` row-wise; -1 is the final step to x_0 (abar = 1, sigma = 0).
        When ``clip``, x0_pred is clamped to [-1, 1] and eps re-derived from the clamped x0_pred,
        as improved-diffusion does. ``eta`` in [0, 1]: 0 is deterministic DDIM, 1 with
        ``t_prev = t - 1`` is DDPM's ancestral step. ``noise`` is used only when eta > 0.
        """
        self._check_x(xt, "xt", t)
        self.validate_t(t_prev, xt.shape[0], name="t_prev", allow_minus_one=True)
        if not bool((t_prev.to(t.device) < t).all()):
            bad = int(torch.nonzero(t_prev.to(t.device) >= t)[0, 0])
            raise ValueError(
                f"t_prev must be smaller than t in every row, got t_prev = {int(t_prev[bad])} "
                f"for t = {int(t[bad])} (row {bad})"
            )
        eta_f = float(eta)
        if not (math.isfinite(eta_f) and 0.0 <= eta_f <= 1.0):
            raise ValueError(f"eta must lie in [0, 1], got eta = {eta!r}")
        self._check_same_shape(xt, "xt", eps, "eps")

        dev = xt.device
        x0_pred = self.predict_x0_from_eps(xt, t, eps)
        if clip:
            x0_pred = x0_pred.clamp(-1.0, 1.0)
            eps = self.predict_eps_from_x0(xt, t, x0_pred)
        abar = self._gather("alphas_cumprod", t, dev)
        tp = t_prev.to(device=dev, dtype=torch.long)
        abar_prev = torch.where(
            tp >= 0, self._gather("alphas_cumprod", tp.clamp(min=0), dev), torch.ones_like(abar)
        )
        sigma = eta_f * torch.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        dir_coef = torch.sqrt((1.0 - abar_prev - sigma**2).clamp(min=0.0))
        terms = [(torch.sqrt(abar_prev), x0_pred), (dir_coef, eps)]
        if eta_f > 0.0:
            terms.append((sigma, self._noise_like(xt, noise, "xt")))
        return self._lincomb(*terms)


# --------------------------------------------------------------------------------------------
# respacing
# --------------------------------------------------------------------------------------------


def _round_half_even(num: int, den: int) -> int:
    """round(num / den) with ties to even (Python's ``round``), in exact integer arithmetic."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        q += 1
    return q


def space_timesteps(num_timesteps: int, section_counts: int | str | Sequence[int]) -> list[int]:
    """Which of the ``num_timesteps`` original steps to keep, as a sorted list.

    Semantics of improved-diffusion's ``space_timesteps``:

    * a list ``[K_1, ..., K_n]`` (or the string ``"K_1,...,K_n"``) cuts ``0..T-1`` into n
      consecutive sections of nearly equal size (the first ``T mod n`` sections get one extra step)
      and takes ``K_i`` evenly spaced steps in section i, its first and last step included,
      positions rounded half-to-even;
    * an int ``K`` is the single section ``[K]``: e.g. ``space_timesteps(1000, 10)`` keeps
      0, 111, 222, ..., 999;
    * ``"ddimK"`` keeps ``range(0, T, stride)`` for the integer stride that gives exactly K steps
      (DDIM's and diffusers' "leading" spacing), e.g. ``"ddim10"`` of 1000 keeps 0, 100, ..., 900.
      Unlike improved-diffusion, ``"ddim1"`` is allowed (it keeps step 0).

    Each K must lie in [1, size of its section]; otherwise ``ValueError``.
    """
    T = _check_count("num_timesteps", num_timesteps)
    if isinstance(section_counts, str):
        text = section_counts.strip()
        if text.startswith("ddim"):
            try:
                K = int(text[len("ddim"):])
            except ValueError:
                raise ValueError(
                    "section_counts must look like 'ddimK' with an integer K, "
                    f"got {section_counts!r}"
                ) from None
            K = _check_count("section_counts (ddim K)", K, 1, T)
            for stride in range(1, T + 1):
                if len(range(0, T, stride)) == K:
                    return list(range(0, T, stride))
            raise ValueError(
                f"section_counts={section_counts!r}: no integer stride gives exactly {K} steps "
                f"out of num_timesteps={T}"
            )
        try:
            counts = [int(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(
                "section_counts must be an int, a list of ints, 'K1,K2,...' or 'ddimK', "
                f"got {section_counts!r}"
            ) from None
    elif isinstance(section_counts, (int, np.integer)) and not isinstance(section_counts, bool):
        counts = [int(section_counts)]
    else:
        counts = list(section_counts)
    if not counts or len(counts) > T:
        raise ValueError(
            f"section_counts must have between 1 and num_timesteps={T} sections, "
            f"got {len(counts)}: {section_counts!r}"
        )

    size_per, extra = divmod(T, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        K = _check_count(f"section_counts[{i}] (steps kept of a section of {size})", count, 1, size)
        if K == 1:
            kept.append(start)
        else:
            kept.extend(start + _round_half_even(j * (size - 1), K - 1) for j in range(K))
        start += size
    return sorted(set(kept))


def respace(
    diffusion: GaussianDiffusion, use_timesteps: Sequence[int] | np.ndarray
) -> tuple[GaussianDiffusion, np.ndarray]:
    """Keep the timesteps ``S = sorted(use_timesteps)`` of ``diffusion``; return the shorter chain.

    The new betas are ``beta_i = 1 - abar_{s_i} / abar_{s_{i-1}}`` (``abar_{s_{-1}} = 1``), so the
    new ``alphas_cumprod[i]`` equals the original ``alphas_cumprod[s_i]`` and eq. (2) is unchanged
    at the kept steps. Also returns ``timestep_map`` (int64 array): new index i -> original s_i,
    the timestep to feed the network.
    """
    T = diffusion.num_timesteps
    steps = np.unique(np.asarray(list(use_timesteps), dtype=np.float64))
    if steps.size == 0:
        raise ValueError("use_timesteps must keep at least one step, got none")
    if not np.all(steps == np.round(steps)):
        raise ValueError(f"use_timesteps must be integers, got {list(use_timesteps)!r}")
    bad = steps[(steps < 0) | (steps > T - 1)]
    if bad.size:
        raise ValueError(
            f"use_timesteps must lie in [0, {T - 1}] (num_timesteps={T}), got {int(bad[0])}"
        )
    timestep_map = steps.astype(np.int64)
    abar = diffusion.alphas_cumprod[timestep_map]
    abar_prev = np.append(1.0, abar[:-1])
    return GaussianDiffusion(1.0 - abar / abar_prev), timestep_map
