"""Networks of DACER: the noise-prediction MLP and the twin distributional critics.

Shapes use B for any leading batch axes, S = observation size, A = action size.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

TIME_FEATURES = 16  # sinusoidal features of the step index (DACER_SPEC §1)
TIME_HIDDEN = 32


def mish(x: jax.Array) -> jax.Array:
    """Mish, x * tanh(softplus(x)): the activation of the authors' code."""
    return x * jnp.tanh(jax.nn.softplus(x))


ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "mish": mish,
    "gelu": jax.nn.gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
}


def sinusoidal_embedding(t: jax.Array, dim: int = TIME_FEATURES) -> jax.Array:
    """Scaled sinusoidal features of an integer step index (DACER_SPEC §5, the authors' code).

    Args:
      t: step indices, shape (B,) or scalar, values in {0, ..., T-1}.
      dim: number of features (even); frequencies f_i = 10000^(-i/(dim/2)), i = 0..dim/2-1.
    Returns:
      (B, dim) array: [sin(t * f_i), cos(t * f_i)] / sqrt(dim).
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / half)
    angles = jnp.asarray(t, jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1) / math.sqrt(dim)


# The reference networks' dense-layer initialisation (DACER_SPEC §5): weights from a
# normal of std 1/sqrt(fan_in) truncated to +-2 std, without rescaling for the
# truncation, so their actual std is 0.8796/sqrt(fan_in); biases zero. jax's
# truncated-normal variance scaling divides by that 0.8796 to undo the truncation,
# so asking it for variance 0.8796^2 / fan_in gives exactly the reference's draw.
TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]
dense_init = nn.initializers.variance_scaling(TRUNCATED_NORMAL_STD**2, "fan_in", "truncated_normal")


def Dense(features: int) -> nn.Dense:
    """A dense layer initialised as the reference's (see `dense_init`)."""
    return nn.Dense(features, kernel_init=dense_init)


class MLP(nn.Module):
    """Dense layers with an activation between them and a linear output layer."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "mish"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATION_FNS[self.activation]
        for width in self.hidden_sizes:
            x = act(Dense(width)(x))
        return Dense(self.out_size)(x)


class NoisePredictor(nn.Module):
    """eps_theta(a_t, s, t) of Eq. 7: predicts the noise in a noisy action.

    The step index is embedded as sinusoidal features -> Dense(32) -> Mish ->
    Dense(16) and concatenated with the observation and the noisy action.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "mish"

    @nn.compact
    def __call__(self, obs: jax.Array, noisy_action: jax.Array, t: jax.Array) -> jax.Array:
        """obs (B, S), noisy_action (B, A), t (B,) or scalar int -> predicted noise (B, A)."""
        t = jnp.broadcast_to(t, noisy_action.shape[:-1])
        temb = sinusoidal_embedding(t)
        temb = Dense(TIME_FEATURES)(mish(Dense(TIME_HIDDEN)(temb)))
        x = jnp.concatenate([obs, noisy_action, temb], axis=-1)
        return MLP(self.hidden_sizes, self.action_size, self.activation)(x)


class DistributionalCritic(nn.Module):
    """One return distribution Z(s, a) ~ N(mu, sigma^2) (DSAC-T, Eq. 11)."""

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "mish"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """obs (B, S), action (B, A) -> (mu (B,), sigma (B,)) with sigma = softplus(raw) > 0."""
        out = MLP(self.hidden_sizes, 2, self.activation)(jnp.concatenate([obs, action], axis=-1))
        return out[..., 0], jax.nn.softplus(out[..., 1])


class TwinCritic(nn.Module):
    """Two independently initialised distributional critics evaluated together.

    Parameters are stacked on a leading axis of size 2, so the pair costs one
    batched matmul per layer instead of two.
    """

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "mish"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        """obs (B, S), action (B, A) -> (mu (2, B), sigma (2, B))."""
        twin = nn.vmap(
            DistributionalCritic,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )
        return twin(self.hidden_sizes, self.activation)(obs, action)


# ------------------------------------------------------------ SAC's networks
LOG_STD_MIN, LOG_STD_MAX = -20.0, 0.5  # DACER_SPEC §9: the baselines' log-std range


class TanhGaussianPolicy(nn.Module):
    """pi(a|s) = tanh(N(mean(s), std(s)^2)) of the maximum-entropy baselines (SAC, DSAC-T)."""

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """obs (B, S) -> (mean (B, A), log_std (B, A) clipped to [LOG_STD_MIN, LOG_STD_MAX]) before the tanh."""
        out = MLP(self.hidden_sizes, 2 * self.action_size, self.activation)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class QCritic(nn.Module):
    """One action value Q(s, a)."""

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """obs (B, S), action (B, A) -> Q (B,)."""
        return MLP(self.hidden_sizes, 1, self.activation)(jnp.concatenate([obs, action], axis=-1))[..., 0]


class TwinQ(nn.Module):
    """`num_critics` independently initialised Q critics (2: SAC, TD3; 1: DDPG), parameters stacked on a
    leading axis (as `TwinCritic`)."""

    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "gelu"
    num_critics: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """obs (B, S), action (B, A) -> Q (num_critics, B)."""
        twin = nn.vmap(QCritic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                       out_axes=0, axis_size=self.num_critics)
        return twin(self.hidden_sizes, self.activation)(obs, action)


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)) of the deterministic baselines (TD3, DDPG)."""

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "gelu"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """obs (B, S) -> actions (B, A) in (-1, 1)."""
        return jnp.tanh(MLP(self.hidden_sizes, self.action_size, self.activation)(obs))
