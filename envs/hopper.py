"""Hopper-v5 (gymnasium/envs/mujoco/hopper_v5.py) on MJX.

Model: gymnasium's ``hopper.xml``; RK4, timestep 0.002, frame_skip 4 (dt 0.008).
Observation (11): qpos[1:] (5), clip(qvel, -10, 10) (6).
Reward: forward_reward_weight * x_velocity + healthy_reward - ctrl_cost_weight * |ctrl|^2.
Terminates when unhealthy: any of qpos[2:], qvel outside (-100, 100), z <= 0.7,
or the torso angle outside (-0.2, 0.2). Reset: qpos0 and zero velocity plus U(+-0.005).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base, planar
from mjx_dacer.envs import physics as physics_lib


class Hopper(planar.PlanarWalker):
    xml_file = "hopper.xml"
    frame_skip = 4
    episode_length = 1000
    camera_config = {"trackbodyid": 2, "distance": 3.0, "lookat": (0.0, 0.0, 1.15), "elevation": -20.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}

    @dataclasses.dataclass(frozen=True)
    class Options(planar.PlanarWalker.Options):
        """Gymnasium's Hopper-v5 arguments, with its defaults."""

        healthy_state_range: tuple[float, float] = (-100.0, 100.0)
        healthy_z_range: tuple[float, float] = (0.7, float("inf"))
        healthy_angle_range: tuple[float, float] = (-0.2, 0.2)

    def is_healthy(self, data):
        opts = self.options
        z, angle = data.qpos[1], data.qpos[2]
        state = jnp.concatenate([data.qpos[2:], data.qvel])
        return (
            jnp.all(base.in_open_range(state, opts.healthy_state_range))
            & base.in_open_range(z, opts.healthy_z_range)
            & base.in_open_range(angle, opts.healthy_angle_range)
        )
