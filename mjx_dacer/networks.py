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
    """Dense layers with an activation between them and a linear output layer.

    Layer i is named ``Dense_i``, as a compact module names its layers: the parameter layout that
    checkpoints and policy files store.
    Besides the whole network, the first layer can be taken apart (`first_layer_part`,
    `from_first_layer`): for an input that is the concatenation of parts, its pre-activation
    W_0^T [x_1; x_2; ...] + b_0 is the sum of the parts' products plus b_0, so a part that stays
    fixed over many calls (the state, along the reverse chain) can be multiplied once.
    """

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "mish"

    def setup(self):
        for i, width in enumerate((*self.hidden_sizes, self.out_size)):
            setattr(self, f"Dense_{i}", Dense(width))

    def _layer(self, i: int) -> nn.Dense:
        return getattr(self, f"Dense_{i}")

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, D) -> (B, out_size)."""
        return self.from_first_layer(self._layer(0)(x))

    def first_layer_part(self, x: jax.Array, rows: slice, bias: bool = False) -> jax.Array:
        """x (B, D_part) -> x @ W_0[rows] (B, H_0), plus b_0 if ``bias``: one part's share of the first layer.

        ``rows`` are the part's rows of W_0 ((D, H_0), D the whole input's size), e.g. slice(-3, None)
        for the last 3 input features. Only after `__call__` has created the parameters (init).
        """
        params = self._layer(0).variables["params"]
        out = x @ params["kernel"][rows]
        return out + params["bias"] if bias else out

    def from_first_layer(self, h: jax.Array) -> jax.Array:
        """The output from the first layer's pre-activation h (B, H_0): the activation, then the other layers."""
        act = ACTIVATION_FNS[self.activation]
        for i in range(1, len(self.hidden_sizes) + 1):
            h = self._layer(i)(act(h))
        return h


class NoisePredictor(nn.Module):
    """eps_theta(a_t, s, t) of Eq. 7: predicts the noise in a noisy action.

    The step index is embedded as sinusoidal features -> Dense(32) -> Mish ->
    Dense(16) and concatenated with the observation and the noisy action.

    Along the reverse chain s stays fixed while a_t and t change, so `condition`
    multiplies s into the first layer once and `conditioned` finishes each step
    from that product: the same network as `__call__` (up to float rounding)
    without the 348 x 512 product of Humanoid's state at every one of the T steps.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (256, 256, 256)
    activation: str = "mish"

    def setup(self):
        # The names of the compact module this was (one parameter layout across versions): it built the
        # time embedding as Dense(16)(mish(Dense(32)(.))), so the outer, 16-wide layer came first.
        self.Dense_0 = Dense(TIME_FEATURES)
        self.Dense_1 = Dense(TIME_HIDDEN)
        self.MLP_0 = MLP(self.hidden_sizes, self.action_size, self.activation)

    def time_features(self, t: jax.Array) -> jax.Array:
        """t (...) int -> (..., TIME_FEATURES): the step index's embedding."""
        return self.Dense_0(mish(self.Dense_1(sinusoidal_embedding(t))))

    def __call__(self, obs: jax.Array, noisy_action: jax.Array, t: jax.Array) -> jax.Array:
        """obs (B, S), noisy_action (B, A), t (B,) or scalar int -> predicted noise (B, A)."""
        t = jnp.broadcast_to(t, noisy_action.shape[:-1])
        x = jnp.concatenate([obs, noisy_action, self.time_features(t)], axis=-1)
        return self.MLP_0(x)

    # The first layer's input is [s; a_t; time features], so a_t and the time features are its last rows.
    def condition(self, obs: jax.Array) -> jax.Array:
        """obs (B, S) -> (B, H_0): the state's share of the first layer's pre-activation, bias included."""
        return self.MLP_0.first_layer_part(obs, slice(0, -(self.action_size + TIME_FEATURES)), bias=True)

    def conditioned(self, obs_share: jax.Array, noisy_action: jax.Array, t: jax.Array) -> jax.Array:
        """obs_share (B, H_0) from `condition`, noisy_action (B, A), t scalar or (B,) int -> predicted noise (B, A).

        A scalar t (the chain's case) embeds once for the whole batch: its share is one row, broadcast."""
        action_share = self.MLP_0.first_layer_part(noisy_action, slice(-(self.action_size + TIME_FEATURES),
                                                                       -TIME_FEATURES))
        time_share = self.MLP_0.first_layer_part(self.time_features(t), slice(-TIME_FEATURES, None))
        return self.MLP_0.from_first_layer(obs_share + action_share + time_share)


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
