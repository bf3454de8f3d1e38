"""Pusher-v5 (gymnasium/envs/mujoco/pusher_v5.py) on MJX.

Model: gymnasium's ``pusher_v5.xml``; semi-implicit Euler, timestep 0.01,
frame_skip 5 (dt 0.05), no gravity, 20 solver iterations. Never terminates;
episodes are 100 steps.
Observation (23): arm qpos[:7], arm qvel[:7], and the positions (body frame
origins, ``get_body_com``) of the fingertip, the object and the goal.
Reward: -reward_near_weight * |object - tip| - reward_dist_weight * |object - goal|
- reward_control_weight * |ctrl|^2.
Reset: arm at qpos0; object at (U(-0.3, 0), U(-0.2, 0.2)) redrawn until it is
more than 0.17 from the goal at (0, 0); arm qvel U(+-0.005), object and goal at rest.

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps).

CPU compilation: XLA:CPU's fusion emitters turn MJX's forward kinematics
of this 10-body-deep arm chain into code that runs about 2000x slower than
without them (measured with jax 0.10.2: 23 s vs 0.011 s per vmapped step of
32 envs); `cpu_compiler_options` switches them off for programs that step
Pusher on the CPU (`envs.compiler_options`). Other tasks (chains 2-5 deep)
are not affected and keep XLA's defaults, which are faster for them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mjx_dacer.envs import base
from mjx_dacer.envs import physics as physics_lib


class Pusher(base.MujocoTask):
    xml_file = "pusher_v5.xml"
    frame_skip = 5
    episode_length = 100
    camera_config = {"trackbodyid": -1, "distance": 4.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}
    cpu_compiler_options = {"xla_cpu_use_fusion_emitters": False}

    @dataclasses.dataclass(frozen=True)
    class Options(base.MujocoOptions):
        """Gymnasium's Pusher-v5 reward weights, with its defaults."""

        reward_near_weight: float = 0.5
        reward_dist_weight: float = 1.0
        reward_control_weight: float = 0.1

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self._tips_arm = self.body_id("tips_arm")
        self._object = self.body_id("object")
        self._goal = self.body_id("goal")

    def initial_state(self, rng):
        k_obj, k_vel = jax.random.split(rng)
        goal = jnp.zeros(2)

        # Gymnasium's rejection loop: redraw until the object is 0.17 from the goal.
        def draw(carry):
            key, _ = carry
            key, k_y, k_x = jax.random.split(key, 3)
            pos = jnp.stack([jax.random.uniform(k_y, (), minval=-0.3, maxval=0.0),
                             jax.random.uniform(k_x, (), minval=-0.2, maxval=0.2)])
            return key, pos

        too_close = lambda carry: jnp.linalg.norm(carry[1] - goal) <= 0.17
        _, cylinder = jax.lax.while_loop(too_close, draw, (k_obj, goal))
        qpos = self.init_qpos.at[-4:-2].set(cylinder).at[-2:].set(goal)
        qvel = self.init_qvel + base.uniform(k_vel, self.init_qvel.shape, 0.005)
        return qpos, qvel.at[-4:].set(0.0)

    def observation(self, data):
        return jnp.concatenate([
            data.qpos[:7],
            data.qvel[:7],
            data.xpos[self._tips_arm],
            data.xpos[self._object],
            data.xpos[self._goal],
        ])

    def reward(self, before, after, ctrl):
        opts = self.options
        obj = after.xpos[self._object]
        near = -opts.reward_near_weight * jnp.linalg.norm(obj - after.xpos[self._tips_arm])
        dist = -opts.reward_dist_weight * jnp.linalg.norm(obj - after.xpos[self._goal])
        ctrl_reward = -base.quadratic_cost(opts.reward_control_weight, ctrl)
        metrics = {"reward_dist": dist, "reward_ctrl": ctrl_reward, "reward_near": near}
        return dist + ctrl_reward + near, jnp.array(False), metrics
