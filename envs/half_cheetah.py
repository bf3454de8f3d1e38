"""HalfCheetah-v5 (gymnasium/envs/mujoco/half_cheetah_v5.py) on MJX.

Model: gymnasium's ``half_cheetah.xml``; semi-implicit Euler, timestep 0.01,
frame_skip 5 (dt 0.05). Never terminates.
Observation (17): qpos[1:] (8), qvel (9).
Reward: forward_reward_weight * x_velocity - ctrl_cost_weight * |ctrl|^2.
Reset: qpos0 + U(+-0.1), qvel 0.1 * N(0, 1).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class HalfCheetah(base.MujocoTask):
    xml_file = "half_cheetah.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    velocity_reset_noise = staticmethod(base.normal)

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's HalfCheetah-v5 arguments, with its defaults."""

        forward_reward_weight: float = 1.0
        ctrl_cost_weight: float = 0.1
        reset_noise_scale: float = 0.1
        exclude_current_positions_from_observation: bool = True

    def observation(self, data):
        position = data.qpos[1:] if self.options.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([position, data.qvel])

    def reward(self, before, after, ctrl):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        reward, terminated, terms = base.locomotion_reward(self.options, x_velocity, ctrl)
        return reward, terminated, {"x_position": after.qpos[0], "x_velocity": x_velocity, **terms}
