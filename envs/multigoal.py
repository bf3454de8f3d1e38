"""MultiGoal-v0: the 2-D point task of the DACER paper's Sec. 5.2, plain JAX.

From the soft Q-learning paper: a point on the plane moves by its (clipped)
action each step; four goals sit at (+-5, 0) and (0, +-5).

  a  = clip(action, -1, 1)                      (per axis)
  s' = clip(s + a, -7, 7)                       (walls at +-7, per axis)
  r  = -(30 |a|^2 + min_g |s' - g|^2) + 10 [min_g |s' - g| < 1]
  terminated when min_g |s' - g| < 1 (a goal is reached)
  s0 ~ N(0, 0.1^2 I); episodes are cut at 100 steps (by the wrappers).

Observation (2): the position. No physics engine: ``State.pipeline_state``
is the `PointState` (the position); `mjx_dacer.envs.render` draws it on the
plane with the goals.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State
from flax import struct

GOALS = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))


@struct.dataclass
class PointState:
    """Pipeline state of MultiGoal. pos: (2,).

    ``qpos`` / ``qvel`` name it as a MuJoCo state is named, so evaluation can record and
    `mjx_dacer.envs.render` draw an episode of this task as of the others: the point's
    generalized coordinates are its position; it has no velocity of its own (an action
    moves it directly), so ``qvel`` is zero.
    """

    pos: jax.Array

    @property
    def qpos(self) -> jax.Array:
        return self.pos

    @property
    def qvel(self) -> jax.Array:
        return jnp.zeros_like(self.pos)


class MultiGoal(Env):
    """The multi-goal point task; brax ``Env``, actions in [-1, 1]^2."""

    episode_length = 100
    dt = 1.0
    physics = None  # no physics engine, so no profile; `make` accepts and ignores one

    @dataclasses.dataclass(frozen=True)
    class Options:
        """The task's constants (the defaults are the paper's); there is no ``physics``."""

        action_cost_weight: float = 30.0
        goal_reward: float = 10.0
        goal_radius: float = 1.0
        wall: float = 7.0
        reset_noise_scale: float = 0.1

    def __init__(self, **overrides):
        self.options = self.Options(**overrides)
        self.goals = jnp.asarray(GOALS, jnp.float32)

    def reset(self, rng: jax.Array) -> State:
        return self.state_from(self.options.reset_noise_scale * jax.random.normal(rng, (2,)))

    def state_from(self, pos: jax.Array) -> State:
        """The `State` at position ``pos`` (2,), e.g. the paper's start points."""
        pos = jnp.asarray(pos, jnp.float32)
        zero = jnp.zeros((), jnp.float32)
        metrics = {"reward_action": zero, "reward_goal_distance": zero, "reward_goal": zero, "goal_distance": zero}
        return State(pipeline_state=PointState(pos), obs=pos, reward=zero, done=zero, metrics=metrics, info={})

    def step(self, state: State, action: jax.Array) -> State:
        opts = self.options
        action = jnp.clip(action, -1.0, 1.0)
        pos = jnp.clip(state.pipeline_state.pos + action, -opts.wall, opts.wall)
        distance = jnp.min(jnp.linalg.norm(pos - self.goals, axis=-1))
        reached = distance < opts.goal_radius
        action_term = -opts.action_cost_weight * jnp.sum(jnp.square(action))
        distance_term = -jnp.square(distance)
        goal_term = opts.goal_reward * reached
        metrics = {
            "reward_action": action_term,
            "reward_goal_distance": distance_term,
            "reward_goal": goal_term.astype(jnp.float32),
            "goal_distance": distance,
        }
        return state.replace(
            pipeline_state=PointState(pos),
            obs=pos,
            reward=(action_term + distance_term + goal_term).astype(jnp.float32),
            done=reached.astype(jnp.float32),
            metrics=metrics,
        )

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "jax"

    def __repr__(self) -> str:
        return "MultiGoal()"
