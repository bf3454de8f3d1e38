"""Deterministic evaluation episodes on the device, and the paper's summary metric."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# policy(obs (E, S), key) -> actions (E, A)
Policy = Callable[[jax.Array, jax.Array], jax.Array]


def evaluate(env, policy: Policy, key: jax.Array, num_episodes: int, episode_length: int) -> jax.Array:
    """Run `num_episodes` episodes in parallel on fresh env copies; returns (E,) undiscounted returns.

    Each episode stops accumulating reward at its first termination; episodes
    are cut at `episode_length` steps (the task's time limit). The whole
    rollout is a `lax.scan`, so it stays inside the compiled training program.
    """
    k_reset, k_act = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

    def step(carry, k):
        state, ret, alive = carry
        next_state = jax.vmap(env.step)(state, policy(state.obs, k))
        ret = ret + alive * next_state.reward
        alive = alive * (1.0 - next_state.done)
        return (next_state, ret, alive), None

    init = (state, jnp.zeros(num_episodes), jnp.ones(num_episodes))
    (_, returns, _), _ = jax.lax.scan(step, init, jax.random.split(k_act, episode_length))
    return returns


def final_performance(iterations: np.ndarray, eval_returns: np.ndarray, total_iterations: int) -> np.ndarray:
    """The paper's Table 1 metric per seed: the highest evaluation return in the last 10% of iterations.

    Args:
      iterations: (P,) iteration count at each evaluation point.
      eval_returns: (..., P) mean evaluation return per point (leading axes: seeds / grid points).
    Returns: (...) the metric; if no evaluation falls in the last 10%, the last evaluation counts.
    """
    iterations = np.asarray(iterations)
    window = iterations >= 0.9 * total_iterations
    if not window.any():
        window = iterations == iterations.max()
    return np.max(np.asarray(eval_returns)[..., window], axis=-1)
