"""Replay buffer: ring wrap-around and sampling of valid entries only."""

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer import buffer as replay


def transitions(start, n, s=3, a=2):
    ids = jnp.arange(start, start + n, dtype=jnp.float32)
    return replay.Transition(
        obs=jnp.tile(ids[:, None], (1, s)), action=jnp.tile(ids[:, None], (1, a)), reward=ids,
        next_obs=jnp.tile(ids[:, None] + 0.5, (1, s)), terminated=ids % 2, truncated=(ids + 1) % 2,
    )


def test_insert_wraps_around_and_overwrites_oldest():
    buf = replay.init_buffer(10, 3, 2)
    insert = jax.jit(replay.insert)
    buf = insert(buf, transitions(0, 4))
    assert int(buf.size) == 4 and int(buf.insert_pos) == 4
    buf = insert(buf, transitions(4, 4))
    buf = insert(buf, transitions(8, 4))  # ids 8, 9 at slots 8, 9; ids 10, 11 wrap to slots 0, 1
    assert int(buf.size) == 10 and int(buf.insert_pos) == 2
    np.testing.assert_array_equal(buf.data.reward, [10, 11, 2, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(buf.data.next_obs[:, 0], np.array([10, 11, 2, 3, 4, 5, 6, 7, 8, 9]) + 0.5)
    np.testing.assert_array_equal(buf.data.terminated, np.array([10, 11, 2, 3, 4, 5, 6, 7, 8, 9]) % 2)


def test_sampling_returns_valid_entries_only_and_covers_them():
    buf = replay.insert(replay.init_buffer(100, 3, 2), transitions(1, 7))  # ids 1..7, slots 7..99 empty (0)
    batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 5000)
    ids = np.asarray(batch.reward)
    assert set(ids.tolist()) == set(range(1, 8))  # never an empty slot, every valid one seen
    counts = np.bincount(ids.astype(int), minlength=8)[1:]
    assert counts.min() > 5000 / 7 * 0.8  # roughly uniform
    # Fields of one sample stay together.
    np.testing.assert_array_equal(batch.obs[:, 0], ids)
    np.testing.assert_array_equal(batch.action[:, 1], ids)
