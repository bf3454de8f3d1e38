"""On-device replay buffer: one ring array per field, uniform sampling of valid entries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Transition:
    """One transition (s, a, r, s', terminated, truncated), or a batch of them.

    next_obs is the true successor observation, also at episode ends (the
    auto-reset observation is *not* stored here), so a truncated transition
    can bootstrap from it. Shapes: obs/next_obs (..., S), action (..., A),
    reward/terminated/truncated (...).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    truncated: jax.Array


@struct.dataclass
class ReplayBuffer:
    """Ring buffer of `capacity` transitions; `data` fields have shape (capacity, ...)."""

    data: Transition
    insert_pos: jax.Array  # int32 scalar: where the next transition goes
    size: jax.Array  # int32 scalar: number of valid entries, <= capacity

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[0]


def init_buffer(capacity: int, obs_size: int, action_size: int) -> ReplayBuffer:
    """An empty buffer of zeros (the memory is allocated once, on the device)."""
    zeros = lambda *shape: jnp.zeros((capacity,) + shape, jnp.float32)  # noqa: E731
    data = Transition(
        obs=zeros(obs_size),
        action=zeros(action_size),
        reward=zeros(),
        next_obs=zeros(obs_size),
        terminated=zeros(),
        truncated=zeros(),
    )
    return ReplayBuffer(data=data, insert_pos=jnp.int32(0), size=jnp.int32(0))


def insert(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Write N transitions (fields with leading axis N) at the ring position, wrapping around.

    N must not exceed the capacity (config validation guarantees num_envs <= capacity).
    """
    n = batch.reward.shape[0]
    capacity = buffer.capacity
    idx = (buffer.insert_pos + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, new: store.at[idx].set(new.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(
        data=data,
        insert_pos=(buffer.insert_pos + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Transition:
    """Uniformly sample `batch_size` transitions (with replacement) among the valid entries.

    On an empty buffer the indices are all 0; callers only sample after warm-up.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[idx], buffer.data)
