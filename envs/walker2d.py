"""Walker2d-v5 (gymnasium/envs/mujoco/walker2d_v5.py) on MJX.

Model: gymnasium's ``walker2d_v5.xml`` (v5's model, with both feet at friction
1.9); RK4, timestep 0.002, frame_skip 4 (dt 0.008).
Observation (17): qpos[1:] (8), clip(qvel, -10, 10) (9).
Reward: forward_reward_weight * x_velocity + healthy_reward - ctrl_cost_weight * |ctrl|^2.
Terminates when unhealthy: z outside (0.8, 2.0) or torso angle outside (-1, 1).
Reset: qpos0 and zero velocity plus U(+-0.005).

Physics changes (see `envs.physics`):
  faithful: none.
  fast: opt.iterations = 4, opt.ls_iterations = 8 (solver caps).
"""

from __future__ import annotations

import dataclasses

from mjx_dacer.envs import base, planar
from mjx_dacer.envs import physics as physics_lib


class Walker2d(planar.PlanarWalker):
    xml_file = "walker2d_v5.xml"
    frame_skip = 4
    episode_length = 1000
    camera_config = {"trackbodyid": 2, "distance": 4.0, "lookat": (0.0, 0.0, 1.15), "elevation": -20.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}

    @dataclasses.dataclass(frozen=True)
    class Options(planar.PlanarWalker.Options):
        """Gymnasium's Walker2d-v5 arguments, with its defaults."""

        healthy_z_range: tuple[float, float] = (0.8, 2.0)
        healthy_angle_range: tuple[float, float] = (-1.0, 1.0)

    def is_healthy(self, data):
        opts = self.options
        z, angle = data.qpos[1], data.qpos[2]
        return base.in_open_range(z, opts.healthy_z_range) & base.in_open_range(angle, opts.healthy_angle_range)
