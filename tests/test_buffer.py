"""Replay buffer: ring wrap-around, sampling of valid entries only, and each s' rebuilt from one stored copy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_dacer import buffer as replay


def transitions(start, n, s=3, a=2):
    """n transitions with ids start.. (s = id, s' = id + 0.5), none truncated."""
    ids = jnp.arange(start, start + n, dtype=jnp.float32)
    return replay.Transition(
        obs=jnp.tile(ids[:, None], (1, s)), action=jnp.tile(ids[:, None], (1, a)), reward=ids,
        next_obs=jnp.tile(ids[:, None] + 0.5, (1, s)), terminated=ids % 2, truncated=jnp.zeros(n),
    )


def test_insert_wraps_around_and_overwrites_oldest():
    buf = replay.init_buffer(10, 3, 2, num_envs=4, episode_length=1000)
    insert = jax.jit(replay.insert)
    for start in (0, 4, 8):  # ids 8, 9 at slots 8, 9; ids 10, 11 wrap to slots 0, 1
        batch = transitions(start, 4)
        buf = insert(buf, batch, batch.next_obs)
    assert int(buf.size) == 10 and int(buf.insert_pos) == 2
    np.testing.assert_array_equal(buf.data.reward, [10, 11, 2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(buf.data.terminated, np.array([10, 11, 2, 3, 4, 5, 6, 7, 8, 9]) % 2)


def test_sampling_returns_valid_entries_only_and_covers_them():
    batch = transitions(1, 7)  # ids 1..7, slots 7..99 empty (0)
    buf = replay.insert(replay.init_buffer(100, 3, 2, num_envs=7, episode_length=1000), batch, batch.next_obs)
    batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 5000)
    ids = np.asarray(batch.reward)
    assert set(ids.tolist()) == set(range(1, 8))  # never an empty slot, every valid one seen
    counts = np.bincount(ids.astype(int), minlength=8)[1:]
    assert counts.min() > 5000 / 7 * 0.8  # roughly uniform
    # Fields of one sample stay together.
    np.testing.assert_array_equal(batch.obs[:, 0], ids)
    np.testing.assert_array_equal(batch.action[:, 1], ids)
    np.testing.assert_array_equal(batch.next_obs[:, 2], ids + 0.5)


def simulate(capacity, num_envs, episode_length, iterations, p_terminate, seed):
    """N auto-resetting environments whose observations are unique numbers, stored in the buffer and in a
    reference that keeps every transition whole (s, s') in a plain ring; yields both after each insert."""
    rng = np.random.default_rng(seed)
    buf = replay.init_buffer(capacity, 2, 1, num_envs, episode_length)
    insert = jax.jit(replay.insert)
    reference = [None] * capacity  # slot -> (s, s' the target uses, terminated, truncated)
    count = 0  # observations handed out, so each is a new number
    obs = np.arange(num_envs, dtype=np.float32)
    count += num_envs
    steps = np.zeros(num_envs, int)
    for t in range(iterations):
        final = count + np.arange(num_envs, dtype=np.float32)  # the true s' of each env
        count += num_envs
        steps += 1
        terminated = rng.random(num_envs) < p_terminate
        truncated = (steps >= episode_length) & ~terminated
        done = terminated | truncated
        reset = count + np.arange(num_envs, dtype=np.float32)  # a fresh first observation (used where done)
        count += num_envs
        after = np.where(done, reset, final)
        steps[done] = 0
        as_obs = lambda x: jnp.asarray(np.stack([x, -x], axis=1))  # noqa: E731  (S = 2)
        batch = replay.Transition(obs=as_obs(obs), action=jnp.asarray(obs)[:, None], reward=jnp.asarray(obs),
                                  next_obs=as_obs(final), terminated=jnp.asarray(terminated, jnp.float32),
                                  truncated=jnp.asarray(truncated, jnp.float32))
        buf = insert(buf, batch, as_obs(after))
        for k in range(num_envs):
            # After a termination the buffer gives the reset observation as s': no target reads it.
            reference[(t * num_envs + k) % capacity] = (obs[k], after[k] if terminated[k] else final[k],
                                                        terminated[k], truncated[k])
        obs = after
        yield buf, reference


@pytest.mark.parametrize("capacity, num_envs, episode_length, p_terminate", [
    (10, 3, 2, 0.2),    # capacity not a multiple of N: the blocks straddle the ring's end
    (12, 4, 3, 0.0),    # no terminations: every env truncates every 3 iterations, the most final_obs holds
    (9, 9, 1, 0.0),     # N = capacity, every transition truncated: all are the newest N
    (20, 3, 1, 0.3),    # episodes of one step: every transition ends one
    (50, 5, 4, 0.05),
])
def test_every_valid_transition_is_the_stored_one_with_its_true_successor(capacity, num_envs, episode_length,
                                                                          p_terminate):
    gather = jax.jit(replay.gather)
    for t, (buf, reference) in enumerate(simulate(capacity, num_envs, episode_length, 40, p_terminate, seed=capacity)):
        size = int(buf.size)
        assert size == min((t + 1) * num_envs, capacity)
        got = gather(buf, jnp.arange(size))
        want = np.array([reference[i] for i in range(size)], dtype=np.float32)  # (size, 4)
        np.testing.assert_array_equal(got.obs[:, 0], want[:, 0])
        np.testing.assert_array_equal(got.obs[:, 1], -want[:, 0])
        np.testing.assert_array_equal(got.next_obs[:, 0], want[:, 1], err_msg=f"s' after insert {t}")
        np.testing.assert_array_equal(got.next_obs[:, 1], -want[:, 1])
        np.testing.assert_array_equal(got.terminated, want[:, 2])
        np.testing.assert_array_equal(got.truncated, want[:, 3])
    assert int(buf.data.final_pos) < buf.data.final_obs.shape[0]


def test_each_observation_is_stored_once():  # Humanoid-v5's buffer, from the shapes
    shapes = jax.eval_shape(lambda: replay.init_buffer(1_000_000, 348, 17, num_envs=20, episode_length=1000))
    assert shapes.data.obs.shape == (1_000_000, 348)
    assert shapes.data.final_obs.shape == (20 * (50_000 // 1000 + 1), 348)  # 1,020 truncated s' at most
    bytes_per_transition = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes.data)) / 1_000_000
    assert bytes_per_transition < (348 + 17 + 3 + 1) * 4 + 2  # s once, a, r, the two flags, final_row
