"""The training-time view of an environment: N copies, time limit, auto-reset.

`TrainingWrapper` is what the training program steps. It is vmapped over the
N environments internally (callers pass (N, ...) batches and never vmap),
and everything in it is jit-able. Per environment, after each step:

* ``info["terminated"]``: the task's own termination (1.0 / 0.0);
* ``info["truncated"]``: 1.0 when the episode reached ``episode_length``
  steps without terminating (truncation is not termination: bootstrap);
* ``done`` = terminated OR truncated;
* ``reward`` and ``metrics``: those of the transition just taken;
* ``info["final_obs"]``: the true observation reached by the transition,
  also for finished environments (equal to ``obs`` for the others);
* finished environments are reset to a *fresh* random initial state, drawn
  with their own PRNG key ``info["rng"]`` (split at every reset, so no two
  resets repeat), and ``obs`` is that reset observation;
* ``info["steps"]``: steps taken in the current episode (0 after a reset).

Evaluation needs none of this: ``jax.vmap(env.reset)`` / ``jax.vmap(env.step)``
on the raw environment.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper

from mjx_dacer.envs.batching import one_axis

_OWN_KEYS = ("rng", "steps", "terminated", "truncated", "final_obs")


class TrainingWrapper(Wrapper):
    """N environments with a time limit and auto-reset to fresh initial states.

    Args:
      env: a raw environment from `mjx_dacer.envs.make` (unbatched reset/step).
      episode_length: the time limit; defaults to ``env.episode_length``
        (1000, Pusher 100, MultiGoal 100).
    """

    def __init__(self, env: Env, episode_length: int | None = None):
        super().__init__(env)
        self.episode_length = int(episode_length or env.episode_length)
        if self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        # The training program vmaps runs around these N envs: `one_axis` steps all R x N on one axis.
        self._reset_batch = one_axis(jax.vmap(self._reset_one))
        self._step_batch = one_axis(self._step_all)

    def reset(self, keys: jax.Array) -> State:
        """keys: (N, 2) uint32 (``jax.random.split(PRNGKey(s), N)``) or (N,) typed keys.

        Returns a batched `State` whose leaves have a leading axis N.
        """
        return self._reset_batch(keys)

    def step(self, state: State, actions: jax.Array) -> State:
        """actions: (N, action_size) in [-1, 1]. Returns the batched next `State`."""
        return self._step_batch(state, actions)

    def _step_all(self, state: State, actions: jax.Array) -> State:
        stepped = jax.vmap(self._step_one)(state, actions)
        # Resetting costs a forward pass per env; skip it on the (common) steps
        # where no environment finished. Under vmap over runs this batch is every
        # run's envs (`one_axis`), so the predicate is one bool and the cond a
        # branch: a per-run one would make vmap reset every env on every step.
        return jax.lax.cond(jnp.any(stepped.done > 0), self._auto_reset, lambda s: s, stepped)

    # -- per environment ----------------------------------------------------

    def _reset_one(self, key: jax.Array) -> State:
        key, reset_key = jax.random.split(key)
        state = self.env.reset(reset_key)
        zero = jnp.zeros((), jnp.float32)
        info = {
            **state.info,
            "rng": key,
            "steps": jnp.zeros((), jnp.int32),
            "terminated": zero,
            "truncated": zero,
            "final_obs": state.obs,
        }
        return state.replace(done=zero, info=info)

    def _step_one(self, state: State, action: jax.Array) -> State:
        nxt = self.env.step(state, action)
        steps = state.info["steps"] + 1
        terminated = (nxt.done > 0).astype(jnp.float32)
        truncated = ((steps >= self.episode_length) & (terminated == 0)).astype(jnp.float32)
        info = {**nxt.info, "steps": steps, "terminated": terminated, "truncated": truncated, "final_obs": nxt.obs}
        return nxt.replace(done=jnp.maximum(terminated, truncated), info=info)

    # -- batched ------------------------------------------------------------

    def _auto_reset(self, state: State) -> State:
        done = state.done > 0
        next_rng, reset_keys = jax.vmap(jax.random.split, out_axes=1)(state.info["rng"])
        fresh = jax.vmap(self.env.reset)(reset_keys)

        def pick(new, old):
            return jnp.where(done.reshape(done.shape + (1,) * (old.ndim - 1)), new, old)

        inner_info = {k: v for k, v in state.info.items() if k not in _OWN_KEYS}
        fresh_inner = {k: fresh.info[k] for k in inner_info}
        info = {
            **jax.tree.map(pick, fresh_inner, inner_info),
            "rng": pick(next_rng, state.info["rng"]),
            "steps": jnp.where(done, 0, state.info["steps"]),
            "terminated": state.info["terminated"],
            "truncated": state.info["truncated"],
            "final_obs": state.info["final_obs"],
        }
        return state.replace(
            pipeline_state=jax.tree.map(pick, fresh.pipeline_state, state.pipeline_state),
            obs=pick(fresh.obs, state.obs),
            info=info,
        )
