"""Deterministic evaluation episodes on the device, and the paper's summary metric."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mjx_dacer.envs.batching import one_axis

# policy(obs (E, S), key) -> actions (E, A)
Policy = Callable[[jax.Array, jax.Array], jax.Array]


@struct.dataclass
class Episodes:
    """The outcome of `evaluate`.

    Attributes:
      returns: (E,) undiscounted return of each episode.
      lengths: (E,) int32 steps until the first termination (or the time limit).
      qpos, qvel: episode 0's joint positions (L + 1, nq) and velocities (L + 1, nv),
        row 0 the initial state, when `record` was set (None otherwise); rows after
        its end are left to the caller to trim with `lengths[0]`.
    """

    returns: jax.Array
    lengths: jax.Array
    qpos: jax.Array | None = None
    qvel: jax.Array | None = None


def evaluate(env, policy: Policy, key: jax.Array, num_episodes: int, episode_length: int,
             record: bool = False) -> Episodes:
    """Run `num_episodes` episodes in parallel on fresh env copies (E = `num_episodes`).

    The one evaluation rollout of the package: the training program's
    evaluation points and `mjx-dacer eval` both call it. Each episode stops
    accumulating reward at its first termination; episodes are cut at
    `episode_length` steps (the task's time limit). The rollout is a
    `lax.while_loop` that ends once every episode has ended: a policy early
    in training falls within tens of steps, and stepping its dead episodes
    to the time limit would cost the whole limit's physics every
    evaluation. Step i acts with the i-th of `episode_length` keys split
    from one, so the outcome does not depend on where the loop stops.
    `record` keeps episode 0's qpos / qvel (for rendering; MuJoCo tasks
    only); it runs all `episode_length` steps, so the frames have a fixed shape.
    """
    k_reset, k_act = jax.random.split(key)
    # one_axis: under the training program's vmap over runs, all runs' episodes on one axis.
    state = one_axis(jax.vmap(env.reset))(jax.random.split(k_reset, num_episodes))
    env_step = one_axis(jax.vmap(env.step))

    def step(carry, k):
        state, ret, length, alive = carry
        nxt = env_step(state, policy(state.obs, k))
        # `where`, not a product with the alive mask: a state past its termination
        # may go non-finite, and 0 * nan = nan would poison the return.
        ret = ret + jnp.where(alive, nxt.reward, 0.0)
        length = length + alive.astype(jnp.int32)
        alive = alive & (nxt.done == 0.0)
        frame = (nxt.pipeline_state.qpos[0], nxt.pipeline_state.qvel[0]) if record else None
        return (nxt, ret, length, alive), frame

    init = (state, jnp.zeros(num_episodes), jnp.zeros(num_episodes, jnp.int32), jnp.ones(num_episodes, bool))
    keys = jax.random.split(k_act, episode_length)
    if not record:
        def running(loop):
            i, (_, _, _, alive) = loop
            return (i < episode_length) & jnp.any(alive)

        def next_step(loop):
            i, carry = loop
            return i + 1, step(carry, keys[i])[0]

        _, (_, returns, lengths, _) = jax.lax.while_loop(running, next_step, (jnp.int32(0), init))
        return Episodes(returns=returns, lengths=lengths)
    (_, returns, lengths, _), frames = jax.lax.scan(step, init, keys)
    return Episodes(
        returns=returns, lengths=lengths,
        qpos=jnp.concatenate([state.pipeline_state.qpos[:1], frames[0]]),
        qvel=jnp.concatenate([state.pipeline_state.qvel[:1], frames[1]]),
    )


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
