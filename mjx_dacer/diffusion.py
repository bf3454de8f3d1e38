"""The diffusion policy: VP noise schedule and the reverse chain (Eq. 7-9).

A diffusion step index t runs from T-1 (pure noise) down to 0 (the action).
Shapes: B for leading batch axes, A = action size, T = diffusion_steps.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

B_MIN = 0.1
B_MAX = 10.0
# Floor of the posterior variance before its log: the last step's variance is 0.
_LOG_VAR_FLOOR = 1e-20

# eps_theta(condition (B, C), noisy_action (B, A), t int) -> predicted noise (B, A); condition: the
# observations (B, S), or what the network computes from them once for a whole chain.
NoiseFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def vp_beta_schedule(T: int, b_min: float = B_MIN, b_max: float = B_MAX) -> np.ndarray:
    """beta_t of the variance-preserving schedule, t = 1..T (DACER_SPEC §1).

    alpha_t = exp(-b_min/T - 0.5 (b_max - b_min) (2t - 1) / T^2), beta_t = 1 - alpha_t.
    For T = 20: beta_1 ~ 0.0172, beta_20 ~ 0.3859.
    Returns: (T,) float64 numpy array (compile-time constants, never traced).
    """
    t = np.arange(1, T + 1, dtype=np.float64)
    alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2.0 * t - 1.0) / T**2)
    return 1.0 - alpha


@struct.dataclass
class DiffusionSchedule:
    """Per-step constants of the reverse chain, each of shape (T,), index t = 0..T-1.

    Held as numpy float32 arrays: they are built once on the host (in float64)
    and become constants of whatever program uses them.
    """

    betas: jax.Array
    alphas: jax.Array
    alpha_bars: jax.Array
    alpha_bars_prev: jax.Array  # alpha_bar_{t-1}, with alpha_bar_{-1} := 1
    posterior_mean_coef1: jax.Array  # c1, multiplies x0_hat
    posterior_mean_coef2: jax.Array  # c2, multiplies x_t
    posterior_log_var: jax.Array  # log of beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), floored

    @property
    def num_steps(self) -> int:
        return self.betas.shape[-1]


def make_schedule(T: int) -> DiffusionSchedule:
    """Precompute the constants of Eq. 7-9 for a T-step chain."""
    betas = vp_beta_schedule(T)
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    alpha_bars_prev = np.concatenate([np.ones(1), alpha_bars[:-1]])
    post_var = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
    constants = dict(
        betas=betas,
        alphas=alphas,
        alpha_bars=alpha_bars,
        alpha_bars_prev=alpha_bars_prev,
        posterior_mean_coef1=betas * np.sqrt(alpha_bars_prev) / (1.0 - alpha_bars),
        posterior_mean_coef2=(1.0 - alpha_bars_prev) * np.sqrt(alphas) / (1.0 - alpha_bars),
        posterior_log_var=np.log(np.maximum(post_var, _LOG_VAR_FLOOR)),
    )
    return DiffusionSchedule(**{k: v.astype(np.float32) for k, v in constants.items()})


def chain_noise(key: jax.Array, shape: tuple[int, ...], num_steps: int) -> tuple[jax.Array, jax.Array]:
    """The Gaussian draws of one reverse chain: x_T of `shape` (B, A) and the step noise z (T, B, A), from `key`."""
    key_init, key_steps = jax.random.split(key)
    return jax.random.normal(key_init, shape), jax.random.normal(key_steps, (num_steps,) + shape)


def reverse_chain(
    noise_fn: NoiseFn,
    schedule: DiffusionSchedule,
    condition: jax.Array,
    key: jax.Array,
    action_size: int,
    unroll: int = 1,
) -> jax.Array:
    """Sample a0 by running the reverse chain x_T -> x_0 (Eq. 7-9), its draws from `key` (`chain_noise`).

    Args:
      noise_fn: eps_theta(condition, x_t, t).
      schedule: constants from `make_schedule`.
      condition: (B, C), the states the actions are for, as noise_fn takes them: the observations
        (B, S), or their share of the network's first layer, computed once outside the T steps
        (`NoisePredictor.condition`).
      key: PRNG key for x_T and the per-step noise.
      action_size: A.
      unroll: as in `denoise`.
    Returns:
      a0: (B, A) actions in [-1, 1].
    """
    x_T, step_noise = chain_noise(key, condition.shape[:-1] + (action_size,), schedule.num_steps)
    return denoise(noise_fn, schedule, condition, x_T, step_noise, unroll)


def denoise(
    noise_fn: NoiseFn,
    schedule: DiffusionSchedule,
    condition: jax.Array,
    x_T: jax.Array,
    step_noise: jax.Array,
    unroll: int = 1,
) -> jax.Array:
    """The reverse chain x_T -> x_0 (Eq. 7-9) from given draws, as a `lax.scan`.

    Each step predicts x0_hat = sqrt(1/alpha_bar_t) x_t - sqrt(1/alpha_bar_t - 1) eps,
    clips it to [-1, 1], and moves to the Gaussian posterior q(x_{t-1} | x_t, x0_hat);
    noise is added at every step except the last, so a0 = posterior mean at t = 0
    lies in [-1, 1]. Differentiable end to end (Eq. 10 back-propagates through
    all T steps). Rows are independent: stacking two batches' conditions and draws
    gives each the a0 it would get alone, in one chain (`DACER.chain_actions`).

    Args:
      noise_fn, schedule, condition: as in `reverse_chain`.
      x_T: (B, A) the chain's start; step_noise: (T, B, A), z of step t at index t (`chain_noise`).
      unroll: steps per iteration of the compiled loop (`lax.scan`'s unroll; T or more: straight-line
        code). Unrolling removes the loop's per-iteration overhead and lets XLA fuse and schedule across
        step boundaries, at the price of a longer compile; the arithmetic, and so the actions, stay the same.
    Returns:
      a0: (B, A) actions in [-1, 1].
    """
    T = schedule.num_steps
    schedule = jax.tree.map(jnp.asarray, schedule)  # index by the traced step below

    def step(x_t, inputs):
        t, z = inputs
        eps = noise_fn(condition, x_t, t)
        ab = schedule.alpha_bars[t]
        x0_hat = jnp.sqrt(1.0 / ab) * x_t - jnp.sqrt(1.0 / ab - 1.0) * eps
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
        mean = schedule.posterior_mean_coef1[t] * x0_hat + schedule.posterior_mean_coef2[t] * x_t
        std = jnp.exp(0.5 * schedule.posterior_log_var[t])
        x_prev = mean + jnp.where(t > 0, std, 0.0) * z
        return x_prev, None

    ts = jnp.arange(T - 1, -1, -1)
    a0, _ = jax.lax.scan(step, x_T, (ts, step_noise[ts]), unroll=True if unroll >= T else unroll)
    return a0


def add_exploration_noise(
    a0: jax.Array, key: jax.Array, noise_scale: jax.Array, alpha: jax.Array
) -> jax.Array:
    """Behaviour action of Eq. 16: clip(a0 + lambda * alpha * N(0, I), -1, 1).

    Args:
      a0: (B, A) chain output; noise_scale: lambda; alpha: exp(log_alpha), scalars.
    Returns: (B, A) actions in [-1, 1].
    """
    noise = noise_scale * alpha * jax.random.normal(key, a0.shape)
    return jnp.clip(a0 + noise, -1.0, 1.0)
