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

import dataclasses

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

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's Humanoid-v5 arguments, with its defaults."""

        forward_reward_weight: float = 1.25
        ctrl_cost_weight: float = 0.1
        contact_cost_weight: float = 5e-7
        contact_cost_range: tuple[float, float] = (-float("inf"), 10.0)
        healthy_reward: float = 5.0
        terminate_when_unhealthy: bool = True
        healthy_z_range: tuple[float, float] = (1.0, 2.0)
        reset_noise_scale: float = 1e-2
        exclude_current_positions_from_observation: bool = True
        include_cinert_in_observation: bool = True
        include_cvel_in_observation: bool = True
        include_qfrc_actuator_in_observation: bool = True
        include_cfrc_ext_in_observation: bool = True

    def __init__(self, **overrides):
        super().__init__(**overrides)
        mass = np.asarray(self.mj_model.body_mass, np.float32)
        self._mass_fraction = jnp.asarray(mass / mass.sum())

    def mass_center(self, data):
        """(2,) x-y of the whole body's centre of mass (Gymnasium's ``mass_center``)."""
        return (self._mass_fraction @ data.xipos)[:2]

    def observation(self, data):
        opts = self.options
        position = data.qpos[2:] if opts.exclude_current_positions_from_observation else data.qpos
        parts = [position, data.qvel]
        if opts.include_cinert_in_observation:
            parts.append(data._impl.cinert[1:].ravel())
        if opts.include_cvel_in_observation:
            parts.append(data.cvel[1:].ravel())
        if opts.include_qfrc_actuator_in_observation:
            parts.append(data.qfrc_actuator[6:])
        if opts.include_cfrc_ext_in_observation:
            parts.append(data._impl.cfrc_ext[1:].ravel())
        return jnp.concatenate(parts)

    def reward(self, before, after, ctrl):
        opts = self.options
        xy_velocity = (self.mass_center(after) - self.mass_center(before)) / self.dt
        healthy = base.in_open_range(after.qpos[2], opts.healthy_z_range)
        contact_cost = base.quadratic_cost(opts.contact_cost_weight, after._impl.cfrc_ext)
        contact_cost = jnp.clip(contact_cost, *opts.contact_cost_range)
        reward, terminated, terms = base.locomotion_reward(opts, xy_velocity[0], ctrl, healthy, contact=contact_cost)
        return reward, terminated, {**base.xy_metrics(after.qpos, xy_velocity), **terms}
