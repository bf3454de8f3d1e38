"""The one evaluation rollout (`mjx_dacer.evaluate.evaluate`), used by training and by `mjx-dacer eval`."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mjx_dacer.evaluate import evaluate, final_performance


@struct.dataclass
class _Pipeline:
    qpos: jax.Array
    qvel: jax.Array


@struct.dataclass
class _State:
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    pipeline_state: _Pipeline


class CountdownEnv:
    """obs = [t]; reward 1 per step; terminates at step `end` (from the reset key's parity: 3 or 5);
    after termination the reward is NaN, as a blown-up physics state past its end can be."""

    def reset(self, key):
        end = jnp.where(jax.random.bits(key) % 2 == 0, 3.0, 5.0)
        return _State(obs=jnp.array([0.0, end]), reward=jnp.float32(0), done=jnp.float32(0),
                      pipeline_state=_Pipeline(qpos=jnp.zeros(1), qvel=jnp.zeros(1)))

    def step(self, state, action):
        t, end = state.obs[0] + 1.0, state.obs[1]
        reward = jnp.where(t > end, jnp.nan, 1.0 + 0.0 * action[0])
        return _State(obs=jnp.array([t, end]), reward=reward, done=(t >= end).astype(jnp.float32),
                      pipeline_state=_Pipeline(qpos=jnp.array([t]), qvel=jnp.array([-t])))


def test_returns_stop_at_termination_and_ignore_nan_after_it():
    env = CountdownEnv()
    key = jax.random.PRNGKey(0)
    episodes = jax.jit(lambda k: evaluate(env, lambda obs, _: jnp.zeros((obs.shape[0], 1)), k, 8, 10, record=True))(key)
    ends = np.asarray(jax.vmap(lambda k: env.reset(k).obs[1])(jax.random.split(jax.random.split(key)[0], 8)))
    np.testing.assert_array_equal(episodes.returns, ends)  # 1 per step until the end, the NaNs after it ignored
    np.testing.assert_array_equal(episodes.lengths, ends.astype(int))
    # Episode 0's trajectory: the initial state, then one row per step (11 rows for 10 steps).
    np.testing.assert_array_equal(episodes.qpos[:, 0], np.arange(11.0))
    np.testing.assert_array_equal(episodes.qvel[:, 0], -np.arange(11.0))


def test_the_rollout_ends_when_every_episode_has_ended_with_the_full_rollouts_outcome():
    env = CountdownEnv()
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    steps = []

    def policy(obs, _):  # counts the rollout's steps as they run
        jax.debug.callback(lambda: steps.append(1))
        return jnp.zeros((obs.shape[0], 1))

    ends = jax.vmap(lambda k: jax.vmap(lambda r: env.reset(r).obs[1])(jax.random.split(jax.random.split(k)[0], 8)))(keys)
    assert set(np.asarray(ends).ravel()) == {3.0, 5.0}
    full = jax.jit(jax.vmap(lambda k: evaluate(env, policy, k, 8, 50, record=True)))(keys)
    assert len(steps) == 50
    steps.clear()
    # As the training program runs it: vmapped over seeds, the loop goes on while any seed's episodes do.
    early = jax.jit(jax.vmap(lambda k: evaluate(env, policy, k, 8, 50)))(keys)
    assert len(steps) == 5  # the last episode ends at step 5, not at the 50-step limit
    np.testing.assert_array_equal(early.returns, full.returns)
    np.testing.assert_array_equal(early.lengths, full.lengths)
    np.testing.assert_array_equal(early.returns, ends)
    steps.clear()
    cut = jax.jit(lambda k: evaluate(env, policy, k, 8, 4))(keys[0])  # the time limit before any end at 5
    assert len(steps) == 4
    np.testing.assert_array_equal(cut.lengths, np.minimum(ends[0], 4).astype(int))


def test_final_performance_is_the_best_return_in_the_last_ten_percent():
    iterations = np.array([100, 200, 900, 950, 1000])
    returns = np.array([[5.0, 9.0, 1.0, 3.0, 2.0], [0.0, 0.0, 4.0, 1.0, 1.0]])
    np.testing.assert_array_equal(final_performance(iterations, returns, 1000), [3.0, 4.0])
