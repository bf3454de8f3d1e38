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

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class HalfCheetah(base.MujocoTask):
    xml_file = "half_cheetah.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    velocity_reset_noise = "normal"

    def __init__(
        self,
        physics: str = physics_lib.DEFAULT_PROFILE,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.1,
        reset_noise_scale: float = 0.1,
        exclude_current_positions_from_observation: bool = True,
    ):
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.reset_noise_scale = reset_noise_scale
        self.exclude_current_positions_from_observation = exclude_current_positions_from_observation
        super().__init__(physics)

    def observation(self, data):
        position = data.qpos[1:] if self.exclude_current_positions_from_observation else data.qpos
        return jnp.concatenate([position, data.qvel])

    def reward(self, before, after, ctrl):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        forward = self.forward_reward_weight * x_velocity
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        metrics = {
            "x_position": after.qpos[0],
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
        }
        return forward - ctrl_cost, jnp.array(False), metrics
