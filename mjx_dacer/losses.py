"""The algorithms' losses as pure functions: DACER's (DACER_SPEC §2-4), composed by
`DACER.update`; SAC's (also DSAC-T's actor and alpha), composed by `SAC.update`;
TD3's and DDPG's, composed by `TD3.update`.

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
    entropy_term: jax.Array | float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """The targets y (mean) and y_s (a return sample) of Eq. 11, from the target critics at (s', a').

    Spec §3: the critic with the smaller mean at each sample gives both
    targets; no entropy term for DACER; truncated episodes still bootstrap.
    DSAC-T subtracts `entropy_term` = alpha * log pi(a'|s') from both bootstrapped values.

    Args:
      mu_next, sigma_next: (2, N) target critics' mean and std at (s', a').
      reward, terminated: (N,). key: PRNG key of the return sample. entropy_term: (N,) or 0.
    Returns: (y, y_sample), each (N,), gradients stopped.
    """
    lower = jnp.argmin(mu_next, axis=0)  # critic with the smaller mean, per sample
    mu_min = jnp.take_along_axis(mu_next, lower[None], axis=0)[0]
    sigma_min = jnp.take_along_axis(sigma_next, lower[None], axis=0)[0]
    z_next = mu_min + sigma_min * jnp.clip(jax.random.normal(key, mu_min.shape), -SAMPLE_CLIP, SAMPLE_CLIP)
    discount = gamma * (1.0 - terminated)
    scaled_reward = reward_scale * reward
    return sg(scaled_reward + discount * (mu_min - entropy_term)), sg(scaled_reward + discount * (z_next - entropy_term))


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
    action_fn: Callable[[Params], tuple[jax.Array, Any]],
    q_fn: Callable[[jax.Array], jax.Array],
) -> tuple[jax.Array, Any]:
    """Eq. 10: -mean over the batch of min(Q1, Q2) at behaviour actions sampled through the chain.

    Args:
      action_fn: policy_params -> ((N, A) behaviour actions at the batch states, aux); aux is anything
        else the same computation gives (DACER's fused chains: the critics' target actions), or None.
      q_fn: (N, A) actions -> (2, N) the critics' means at the batch states.
    Returns: (scalar loss, aux without gradient), for `jax.value_and_grad(..., has_aux=True)`.
    """
    actions, aux = action_fn(policy_params)
    q = q_fn(actions)
    return -jnp.mean(jnp.min(q, axis=0)), sg(aux)


def alpha_loss(log_alpha: jax.Array, entropy: jax.Array, target_entropy: jax.Array) -> jax.Array:
    """Spec §2: -log_alpha * (H_target - H_hat); its gradient in log_alpha is H_hat - H_target.

    Raising alpha widens the behaviour noise of Eq. 16, so alpha grows while the
    estimated entropy H_hat (Eq. 15) lies below the target and shrinks above it.
    """
    return -log_alpha * (target_entropy - sg(entropy))


# -------------------------------------------- SAC (Haarnoja et al. 2018, with automatic alpha)
def tanh_gaussian_sample(
    mean: jax.Array, log_std: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A reparameterised sample a = tanh(u), u ~ N(mean, std^2), and log pi(a|s).

    log pi(a|s) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)], with
    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|.

    Args: mean, log_std: (N, A). Returns: (actions (N, A) in (-1, 1), log_prob (N,)).
    """
    std = jnp.exp(log_std)
    noise = jax.random.normal(key, mean.shape)
    u = mean + std * noise
    gaussian = -0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    squash = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(gaussian - squash, axis=-1)


def soft_q_targets(
    q_next: jax.Array,
    entropy_term: jax.Array,
    reward: jax.Array,
    terminated: jax.Array,
    reward_scale: jax.Array,
    gamma: jax.Array,
) -> jax.Array:
    """y = reward_scale * r + gamma * (1 - terminated) * (min_j Q'_j(s', a') - alpha * log pi(a'|s')).

    Args: q_next: (2, N) target critics at (s', a'), a' ~ pi(.|s'); entropy_term: (N,) alpha * log pi(a'|s');
      reward, terminated: (N,).
    Returns: (N,), gradients stopped. Truncated episodes still bootstrap.
    """
    return sg(reward_scale * reward + gamma * (1.0 - terminated) * (jnp.min(q_next, axis=0) - entropy_term))


def q_loss(critic_params: Params, q_fn: Callable[[Params], jax.Array], y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum over the twin critics of 0.5 * mean (Q_j(s, a) - y)^2. q_fn: params -> (2, N). Returns (loss, Q)."""
    q = q_fn(critic_params)
    return jnp.sum(0.5 * jnp.mean((q - y) ** 2, axis=-1)), q


def sac_actor_loss(
    policy_params: Params,
    sample_fn: Callable[[Params], tuple[jax.Array, jax.Array]],
    q_fn: Callable[[jax.Array], jax.Array],
    alpha: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """mean over the batch of alpha * log pi(a|s) - min_j Q_j(s, a), a ~ pi(.|s) reparameterised.

    sample_fn: params -> (actions (N, A), log_prob (N,)); q_fn: actions -> (2, N).
    Returns: (loss, log_prob (N,)).
    """
    action, log_prob = sample_fn(policy_params)
    return jnp.mean(alpha * log_prob - jnp.min(q_fn(action), axis=0)), log_prob


def sac_alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: jax.Array) -> jax.Array:
    """-log_alpha * mean(log pi + H_target): alpha grows while the policy's entropy -E[log pi] is below the target."""
    return -log_alpha * jnp.mean(sg(log_prob) + target_entropy)


# ---------------------------------------------------- TD3 / DDPG (deterministic policies)
def deterministic_actor_loss(
    policy_params: Params, action_fn: Callable[[Params], jax.Array], q_fn: Callable[[jax.Array], jax.Array]
) -> jax.Array:
    """-mean Q_1(s, pi(s)): the deterministic policy gradient's objective (TD3 uses the first critic).

    action_fn: params -> (N, A) actions at the batch states; q_fn: actions -> (N,) Q_1.
    """
    return -jnp.mean(q_fn(action_fn(policy_params)))
