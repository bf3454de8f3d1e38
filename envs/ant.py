"""Ant-v5 (gymnasium/envs/mujoco/ant_v5.py) on MJX.

Model: gymnasium's ``ant.xml``; RK4, timestep 0.01, frame_skip 5 (dt 0.05).
Observation (105): qpos[2:] (13), qvel (14), and (v5 default
``include_cfrc_ext_in_observation=True``) the external contact forces
``clip(cfrc_ext[1:], -1, 1)`` of the 13 non-world bodies (78), computed by
``mjx.rne_postconstraint`` after the substeps as Gymnasium does with
``mj_rnePostConstraint``.
Reward: forward_reward_weight * x_velocity (of the torso's frame origin) +
healthy_reward - ctrl_cost_weight * |ctrl|^2 - contact_cost_weight * |clip(cfrc_ext, -1, 1)|^2.
Terminates when unhealthy: a non-finite qpos/qvel or torso z outside [0.2, 1.0].
Reset: qpos0 + U(+-0.1), qvel 0.1 * N(0, 1).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps).
"""

from __future__ import annotations

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class Ant(base.MujocoTask):
    xml_file = "ant.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    velocity_reset_noise = "normal"
    uses_contact_forces = True

    def __init__(
        self,
        physics: str = physics_lib.DEFAULT_PROFILE,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        healthy_reward: float = 1.0,
        main_body: int | str = 1,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        contact_force_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 0.1,
        exclude_current_positions_from_observation: bool = True,
        include_cfrc_ext_in_observation: bool = True,
    ):
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.contact_cost_weight = contact_cost_weight
        self.healthy_reward = healthy_reward
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.healthy_z_range = healthy_z_range
        self.contact_force_range = contact_force_range
        self.reset_noise_scale = reset_noise_scale
        self.exclude_current_positions_from_observation = exclude_current_positions_from_observation
        self.include_cfrc_ext_in_observation = include_cfrc_ext_in_observation
        super().__init__(physics)
        self.main_body = self.body_id(main_body) if isinstance(main_body, str) else int(main_body)

    def contact_forces(self, data):
        """(nbody, 6) clipped external forces, Gymnasium's ``contact_forces``."""
        return jnp.clip(data._impl.cfrc_ext, *self.contact_force_range)

    def observation(self, data):
        position = data.qpos[2:] if self.exclude_current_positions_from_observation else data.qpos
        parts = [position, data.qvel]
        if self.include_cfrc_ext_in_observation:
            parts.append(self.contact_forces(data)[1:].ravel())
        return jnp.concatenate(parts)

    def is_healthy(self, data):
        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        low, high = self.healthy_z_range
        return finite & (data.qpos[2] >= low) & (data.qpos[2] <= high)

    def reward(self, before, after, ctrl):
        xy_velocity = (after.xpos[self.main_body, :2] - before.xpos[self.main_body, :2]) / self.dt
        healthy = self.is_healthy(after)
        forward = self.forward_reward_weight * xy_velocity[0]
        survive = self.healthy_reward * healthy
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        contact_cost = self.contact_cost_weight * jnp.sum(jnp.square(self.contact_forces(after)))
        terminated = jnp.logical_and(~healthy, self.terminate_when_unhealthy)
        metrics = {
            "x_position": after.qpos[0],
            "y_position": after.qpos[1],
            "distance_from_origin": jnp.linalg.norm(after.qpos[:2]),
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": survive.astype(jnp.float32),
        }
        return forward + survive - ctrl_cost - contact_cost, terminated, metrics
