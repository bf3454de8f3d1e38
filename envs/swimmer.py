"""Swimmer-v5 (gymnasium/envs/mujoco/swimmer_v5.py) on MJX.

Model: gymnasium's ``swimmer.xml`` (a viscous medium: density 4000,
viscosity 0.1, MuJoCo's inertia-box fluid model, which MJX implements);
RK4, timestep 0.01, frame_skip 4 (dt 0.04). Never terminates.
Observation (8): qpos[2:] (3), qvel (5).
Reward: forward_reward_weight * x_velocity - ctrl_cost_weight * |ctrl|^2.
Reset: qpos0 and zero velocity plus U(+-0.1).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps; the only
    constraints are the two joint limits).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class Swimmer(base.MujocoTask):
    xml_file = "swimmer.xml"
    frame_skip = 4
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's Swimmer-v5 arguments, with its defaults."""

        forward_reward_weight: float = 1.0
        ctrl_cost_weight: float = 1e-4
        reset_noise_scale: float = 0.1
        exclude_current_positions_from_observation: bool = True

    def observation(self, data):
        position = data.qpos[2:] if self.options.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([position, data.qvel])

    def reward(self, before, after, ctrl):
        xy_velocity = (after.qpos[:2] - before.qpos[:2]) / self.dt
        reward, terminated, terms = base.locomotion_reward(self.options, xy_velocity[0], ctrl)
        return reward, terminated, {**base.xy_metrics(after.qpos, xy_velocity), **terms}
