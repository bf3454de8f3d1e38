"""DACER's losses as pure functions (DACER_SPEC §2-4); `DACER.update` composes them.

Each function takes parameters first, so `jax.value_and_grad` differentiates
it directly, and networks as callables, so the losses know nothing of flax.

Shapes: N = batch size; critics come in pairs, stacked on a leading axis of 2.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any
sg = jax.lax.stop_gradient

# DSAC-T constants (DACER_SPEC §3).
CRITIC_EPS = 0.1  # eps in the variance-based gradient scaling
SIGMA_BOUND_RATE = 0.005  # Polyak rate of the running sigma bound b
SAMPLE_CLIP = 3.0  # return samples use clip(N(0,1), -3, 3); targets clip to +-3b


def distributional_critic_loss(
    mu: jax.Array, sigma: jax.Array, y: jax.Array, y_sample: jax.Array, b: jax.Array
) -> jax.Array:
    """DSAC-T loss of one critic (Eq. 11 with DACER_SPEC §3's refinements).

    y_hat = sg(mu) + clip(y_s - sg(mu), -3b, 3b);
    L = -(b^2 + eps) * mean[ mu * sg(y - mu) / (sg(sigma)^2 + eps)
                            + sigma * ((sg(mu) - y_hat)^2 - sg(sigma)^2) / (sg(sigma)^3 + eps) ].
    The first term moves mu towards the expected target y, the second moves
    sigma towards the spread of the clipped return sample; the (b^2 + eps)
    factor rescales gradients by the typical variance.

    Args:
      mu, sigma: (N,) predicted mean and std.
      y: (N,) target mean; y_sample: (N,) target return sample; b: scalar bound.
    Returns: scalar loss.
    """
    mu_d, sigma_d = sg(mu), sg(sigma)
    y_hat = mu_d + jnp.clip(y_sample - mu_d, -SAMPLE_CLIP * b, SAMPLE_CLIP * b)
    mean_term = mu * sg(y - mu) / (sigma_d**2 + CRITIC_EPS)
    std_term = sigma * ((mu_d - y_hat) ** 2 - sigma_d**2) / (sigma_d**3 + CRITIC_EPS)
    return -(sg(b) ** 2 + CRITIC_EPS) * jnp.mean(mean_term + std_term)


def critic_targets(
    mu_next: jax.Array,
    sigma_next: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    key: jax.Array,
    reward_scale: jax.Array,
    gamma: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The targets y (mean) and y_s (a return sample) of Eq. 11, from the target critics at (s', a').

    Spec §3: the critic with the smaller mean at each sample gives both
    targets; no entropy term; truncated episodes still bootstrap.

    Args:
      mu_next, sigma_next: (2, N) target critics' mean and std at (s', a').
      reward, terminated: (N,). key: PRNG key of the return sample.
    Returns: (y, y_sample), each (N,), gradients stopped.
    """
    lower = jnp.argmin(mu_next, axis=0)  # critic with the smaller mean, per sample
    mu_min = jnp.take_along_axis(mu_next, lower[None], axis=0)[0]
    sigma_min = jnp.take_along_axis(sigma_next, lower[None], axis=0)[0]
    z_next = mu_min + sigma_min * jnp.clip(jax.random.normal(key, mu_min.shape), -SAMPLE_CLIP, SAMPLE_CLIP)
    discount = gamma * (1.0 - terminated)
    scaled_reward = reward_scale * reward
    return sg(scaled_reward + discount * mu_min), sg(scaled_reward + discount * z_next)


def critic_loss(
    critic_params: Params,
    critic_fn: Callable[[Params], tuple[jax.Array, jax.Array]],
    y: jax.Array,
    y_sample: jax.Array,
    sigma_bound: jax.Array,
    first_update: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """Sum over the twin critics of `distributional_critic_loss` (Eq. 11).

    b, per critic, starts at the first batch-mean sigma and is then
    Polyak-averaged with rate SIGMA_BOUND_RATE.

    Args:
      critic_fn: critic_params -> (mu, sigma), each (2, N), at the batch's (s, a).
      y, y_sample: (N,) from `critic_targets`. sigma_bound: (2,) b before this update.
      first_update: bool scalar, this is the first update (b is initialised).
    Returns: (loss, (new b (2,), mu (2, N), sigma (2, N))).
    """
    mu, sigma = critic_fn(critic_params)
    batch_sigma = jnp.mean(sg(sigma), axis=-1)
    b = jnp.where(first_update, batch_sigma, (1.0 - SIGMA_BOUND_RATE) * sigma_bound + SIGMA_BOUND_RATE * batch_sigma)
    losses = jax.vmap(distributional_critic_loss, in_axes=(0, 0, None, None, 0))(mu, sigma, y, y_sample, b)
    return jnp.sum(losses), (b, mu, sigma)


def actor_loss(
    policy_params: Params,
    action_fn: Callable[[Params], jax.Array],
    q_fn: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """Eq. 10: -mean over the batch of min(Q1, Q2) at behaviour actions sampled through the chain.

    Args:
      action_fn: policy_params -> (N, A) behaviour actions at the batch states.
      q_fn: (N, A) actions -> (2, N) the critics' means at the batch states.
    Returns: scalar loss.
    """
    q = q_fn(action_fn(policy_params))
    return -jnp.mean(jnp.min(q, axis=0))


def alpha_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: jax.Array) -> jax.Array:
    """Spec §2: -log_alpha * (H_target - H_hat); its gradient in log_alpha is H_hat - H_target.

    Raising alpha widens the behaviour noise of Eq. 16, so alpha grows while the
    estimated entropy H_hat (Eq. 15) lies below the target and shrinks above it.
    """
    return -log_alpha * (target_entropy - sg(entropy))
