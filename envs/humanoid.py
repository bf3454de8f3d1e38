"""Humanoid-v5 (gymnasium/envs/mujoco/humanoid_v5.py) on MJX.

Model: gymnasium's ``humanoid.xml``; RK4, timestep 0.003, frame_skip 5 (dt 0.015).
Observation (348): qpos[2:] (22), qvel (23), cinert[1:] (130), cvel[1:] (78),
qfrc_actuator[6:] (17) and cfrc_ext[1:] (78), the last computed by
``mjx.rne_postconstraint`` after the substeps as Gymnasium does.
Reward: forward_reward_weight * x_velocity (of the centre of mass) +
healthy_reward - ctrl_cost_weight * |ctrl|^2 - min(contact_cost_weight * |cfrc_ext|^2, 10).
Terminates when unhealthy: torso z outside (1.0, 2.0).
Reset: qpos0 and zero velocity plus U(+-0.01).

Physics changes (see `envs.physics`):
  faithful: opt.solver = NEWTON (the XML asks for PGS, which MJX does not
    have; Newton is MuJoCo's default and solves the same convex problem;
    the XML's opt.iterations = 50 stays).
  fast: opt.solver = NEWTON, opt.iterations = 4, opt.ls_iterations = 8 (solver caps).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class Humanoid(base.MujocoTask):
    xml_file = "humanoid.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0, "lookat": (0.0, 0.0, 2.0), "elevation": -20.0}
    physics_profiles = {
        "faithful": (physics_lib.PGS_TO_NEWTON,),
        "fast": (physics_lib.PGS_TO_NEWTON, *physics_lib.solver_caps(4, 8)),
    }
    uses_contact_forces = True

    def __init__(
        self,
        physics: str = physics_lib.DEFAULT_PROFILE,
        forward_reward_weight: float = 1.25,
        ctrl_cost_weight: float = 0.1,
        contact_cost_weight: float = 5e-7,
        contact_cost_range: tuple[float, float] = (-float("inf"), 10.0),
        healthy_reward: float = 5.0,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (1.0, 2.0),
        reset_noise_scale: float = 1e-2,
        exclude_current_positions_from_observation: bool = True,
        include_cinert_in_observation: bool = True,
        include_cvel_in_observation: bool = True,
        include_qfrc_actuator_in_observation: bool = True,
        include_cfrc_ext_in_observation: bool = True,
    ):
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.contact_cost_weight = contact_cost_weight
        self.contact_cost_range = contact_cost_range
        self.healthy_reward = healthy_reward
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.healthy_z_range = healthy_z_range
        self.reset_noise_scale = reset_noise_scale
        self.exclude_current_positions_from_observation = exclude_current_positions_from_observation
        self.include_cinert_in_observation = include_cinert_in_observation
        self.include_cvel_in_observation = include_cvel_in_observation
        self.include_qfrc_actuator_in_observation = include_qfrc_actuator_in_observation
        self.include_cfrc_ext_in_observation = include_cfrc_ext_in_observation
        super().__init__(physics)
        mass = np.asarray(self.mj_model.body_mass, np.float32)
        self._mass_fraction = jnp.asarray(mass / mass.sum())

    def mass_center(self, data):
        """(2,) x-y of the whole body's centre of mass (Gymnasium's ``mass_center``)."""
        return (self._mass_fraction @ data.xipos)[:2]

    def observation(self, data):
        position = data.qpos[2:] if self.exclude_current_positions_from_observation else data.qpos
        parts = [position, data.qvel]
        if self.include_cinert_in_observation:
            parts.append(data._impl.cinert[1:].ravel())
        if self.include_cvel_in_observation:
            parts.append(data.cvel[1:].ravel())
        if self.include_qfrc_actuator_in_observation:
            parts.append(data.qfrc_actuator[6:])
        if self.include_cfrc_ext_in_observation:
            parts.append(data._impl.cfrc_ext[1:].ravel())
        return jnp.concatenate(parts)

    def reward(self, before, after, ctrl):
        xy_velocity = (self.mass_center(after) - self.mass_center(before)) / self.dt
        healthy = base.in_open_range(after.qpos[2], self.healthy_z_range)
        forward = self.forward_reward_weight * xy_velocity[0]
        survive = self.healthy_reward * healthy
        ctrl_cost = self.ctrl_cost_weight * jnp.sum(jnp.square(ctrl))
        contact_cost = jnp.clip(
            self.contact_cost_weight * jnp.sum(jnp.square(after._impl.cfrc_ext)), *self.contact_cost_range
        )
        terminated = jnp.logical_and(~healthy, self.terminate_when_unhealthy)
        metrics = {
            "x_position": after.qpos[0],
            "y_position": after.qpos[1],
            "distance_from_origin": jnp.linalg.norm(after.qpos[:2]),
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_survive": survive.astype(jnp.float32),
            "reward_forward": forward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
        }
        return forward + survive - ctrl_cost - contact_cost, terminated, metrics
