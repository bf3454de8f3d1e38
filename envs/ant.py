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

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class Ant(base.MujocoTask):
    xml_file = "ant.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    velocity_reset_noise = staticmethod(base.normal)
    uses_contact_forces = True

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's Ant-v5 arguments, with its defaults."""

        forward_reward_weight: float = 1.0
        ctrl_cost_weight: float = 0.5
        contact_cost_weight: float = 5e-4
        healthy_reward: float = 1.0
        main_body: int | str = 1
        terminate_when_unhealthy: bool = True
        healthy_z_range: tuple[float, float] = (0.2, 1.0)
        contact_force_range: tuple[float, float] = (-1.0, 1.0)
        reset_noise_scale: float = 0.1
        exclude_current_positions_from_observation: bool = True
        include_cfrc_ext_in_observation: bool = True

    def __init__(self, **overrides):
        super().__init__(**overrides)
        main_body = self.options.main_body
        self._main_body = self.body_id(main_body) if isinstance(main_body, str) else int(main_body)

    def contact_forces(self, data):
        """(nbody, 6) clipped external forces, Gymnasium's ``contact_forces``."""
        return jnp.clip(data._impl.cfrc_ext, *self.options.contact_force_range)

    def observation(self, data):
        position = data.qpos[2:] if self.options.exclude_current_positions_from_observation else data.qpos
        parts = [position, data.qvel]
        if self.options.include_cfrc_ext_in_observation:
            parts.append(self.contact_forces(data)[1:].ravel())
        return jnp.concatenate(parts)

    def is_healthy(self, data):
        finite = jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel))
        low, high = self.options.healthy_z_range
        return finite & (data.qpos[2] >= low) & (data.qpos[2] <= high)

    def reward(self, before, after, ctrl):
        body = self._main_body
        xy_velocity = (after.xpos[body, :2] - before.xpos[body, :2]) / self.dt
        contact_cost = base.quadratic_cost(self.options.contact_cost_weight, self.contact_forces(after))
        reward, terminated, terms = base.locomotion_reward(
            self.options, xy_velocity[0], ctrl, self.is_healthy(after), contact=contact_cost
        )
        return reward, terminated, {**base.xy_metrics(after.qpos, xy_velocity), **terms}
