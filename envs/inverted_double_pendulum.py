"""InvertedDoublePendulum-v5 (gymnasium/envs/mujoco/inverted_double_pendulum_v5.py) on MJX.

Model: gymnasium's ``inverted_double_pendulum.xml``; RK4, timestep 0.01,
frame_skip 5 (dt 0.05); no contacts (all geoms have contype 0).
Observation (9): cart position qpos[0], sin and cos of the two hinge angles,
clip(qvel, -10, 10) (3), clip(qfrc_constraint, -10, 10)[0] (the cart's limit force).
Reward: healthy_reward * (not terminated) - (0.01 x^2 + (y - 2)^2) - (0.001 v1^2 + 0.005 v2^2),
with (x, _, y) the tip site's position and v1, v2 the hinge velocities.
Terminates when the tip's height y <= 1. Reset: qpos0 + U(+-0.1), qvel 0.1 * N(0, 1).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps; the only
    constraint is the cart's slider limit).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class InvertedDoublePendulum(base.MujocoTask):
    xml_file = "inverted_double_pendulum.xml"
    frame_skip = 5
    episode_length = 1000
    camera_config = {"trackbodyid": 0, "distance": 4.1225, "lookat": (0.0, 0.0, 0.1225)}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    velocity_reset_noise = staticmethod(base.normal)

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's InvertedDoublePendulum-v5 arguments, with its defaults."""

        healthy_reward: float = 10.0
        reset_noise_scale: float = 0.1

    def observation(self, data):
        return jnp.concatenate([
            data.qpos[:1],
            jnp.sin(data.qpos[1:]),
            jnp.cos(data.qpos[1:]),
            jnp.clip(data.qvel, -10.0, 10.0),
            jnp.clip(data.qfrc_constraint, -10.0, 10.0)[:1],
        ])

    def reward(self, before, after, ctrl):
        x, _, y = after.site_xpos[0]
        terminated = y <= 1.0
        v1, v2 = after.qvel[1], after.qvel[2]
        distance_penalty = 0.01 * x**2 + (y - 2.0) ** 2
        velocity_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        survive = self.options.healthy_reward * (~terminated)
        metrics = {
            "reward_survive": survive.astype(jnp.float32),
            "distance_penalty": -distance_penalty,
            "velocity_penalty": -velocity_penalty,
        }
        return survive - distance_penalty - velocity_penalty, terminated, metrics
