"""What Hopper-v5 and Walker2d-v5 share: Gymnasium's planar-walker observation and reward.

Both are 2-D bodies whose root is (x, z, angle) in qpos[:3]; they differ only
in their model, their health ranges and their default options.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base


class PlanarWalker(base.MujocoTask):
    """A MujocoTask with Gymnasium's planar-walker observation and reward; subclasses define `is_healthy`.

    Subclasses extend ``Options`` with their health ranges.
    """

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """The arguments Gymnasium's Hopper-v5 and Walker2d-v5 share, with their (equal) defaults."""

        forward_reward_weight: float = 1.0
        ctrl_cost_weight: float = 1e-3
        healthy_reward: float = 1.0
        terminate_when_unhealthy: bool = True
        reset_noise_scale: float = 5e-3
        exclude_current_positions_from_observation: bool = True

    def observation(self, data):
        """qpos[1:] (or all of qpos), then clip(qvel, -10, 10)."""
        position = data.qpos[1:] if self.options.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([position, jnp.clip(data.qvel, -10.0, 10.0)])

    def reward(self, before, after, ctrl):
        """forward_reward_weight * x_velocity + healthy_reward * healthy - ctrl_cost_weight * |ctrl|^2."""
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        reward, terminated, terms = base.locomotion_reward(self.options, x_velocity, ctrl, self.is_healthy(after))
        metrics = {
            "x_position": after.qpos[0],
            "z_distance_from_origin": after.qpos[1] - self.init_qpos[1],
            "x_velocity": x_velocity,
            **terms,
        }
        return reward, terminated, metrics
