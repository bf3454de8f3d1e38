"""MultiGoal-v0 against a direct numpy transcription of DACER_SPEC §8."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mjx_dacer.envs as envs

GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])


def spec_step(s: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """DACER_SPEC §8, line by line, in float64."""
    a = np.clip(action, -1.0, 1.0)
    s_next = np.clip(s + a, -7.0, 7.0)
    dist = np.min(np.linalg.norm(s_next - GOALS, axis=1))
    r = -(30.0 * np.sum(a**2) + dist**2)
    done = dist < 1.0
    if done:
        r += 10.0
    return s_next, r, done


@pytest.fixture(scope="module")
def env():
    return envs.make("MultiGoal-v0")


@pytest.fixture(scope="module")
def batched(env):
    return jax.jit(jax.vmap(env.state_from)), jax.jit(jax.vmap(env.step))


def check(batched, positions, actions):
    state_from, step = batched
    out = jax.device_get(step(state_from(jnp.asarray(positions, jnp.float32)), jnp.asarray(actions, jnp.float32)))
    for i, (s, a) in enumerate(zip(positions, actions)):
        s_next, r, done = spec_step(np.asarray(s, np.float64), np.asarray(a, np.float64))
        np.testing.assert_allclose(out.obs[i], s_next, atol=1e-5, err_msg=f"sample {i}")
        np.testing.assert_allclose(out.pipeline_state.pos[i], s_next, atol=1e-5)
        np.testing.assert_allclose(out.reward[i], r, rtol=1e-5, atol=1e-4, err_msg=f"sample {i}")
        assert out.done[i] == float(done), f"sample {i}"
    return out


def test_random_states_and_actions(batched):
    rng = np.random.default_rng(0)
    positions = rng.uniform(-8, 8, (256, 2))
    actions = rng.uniform(-2, 2, (256, 2))  # some outside [-1, 1]: clipped per axis
    check(batched, positions, actions)


def test_goal_reached_terminates_with_bonus(batched):
    positions = np.array([[4.5, 0.0], [0.0, -4.2], [-3.5, 0.0], [3.3, 3.3]])
    actions = np.array([[0.4, 0.0], [0.0, -0.5], [-0.6, 0.0], [0.1, 0.1]])
    out = check(batched, positions, actions)
    np.testing.assert_array_equal(out.done, [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(out.metrics["reward_goal"], [10.0, 10.0, 10.0, 0.0])


def test_walls_clip_the_position(batched):
    positions = np.array([[6.8, 0.0], [-6.9, 6.9], [7.0, -7.0]])
    actions = np.array([[1.0, 0.0], [-1.0, 1.0], [1.0, -1.0]])
    out = check(batched, positions, actions)
    np.testing.assert_allclose(out.obs, [[7.0, 0.0], [-7.0, 7.0], [7.0, -7.0]])


def test_reward_terms_sum_to_reward(batched):
    state_from, step = batched
    rng = np.random.default_rng(1)
    out = step(state_from(jnp.asarray(rng.uniform(-6, 6, (64, 2)), jnp.float32)), jnp.asarray(rng.uniform(-1, 1, (64, 2)), jnp.float32))
    total = out.metrics["reward_action"] + out.metrics["reward_goal_distance"] + out.metrics["reward_goal"]
    np.testing.assert_allclose(total, out.reward, rtol=1e-6)


def test_reset_distribution(env):
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 4096))
    assert states.obs.shape == (4096, 2)
    np.testing.assert_allclose(states.obs.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(states.obs.std(0), 0.1, rtol=0.05)
    assert not states.done.any()


def test_sizes(env):
    assert (env.observation_size, env.action_size, env.episode_length) == (2, 2, 100)
