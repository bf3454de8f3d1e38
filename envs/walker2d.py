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

from mjx_dacer.envs import base, planar
from mjx_dacer.envs import physics as physics_lib


class Walker2d(planar.PlanarWalker):
    xml_file = "walker2d_v5.xml"
    frame_skip = 4
    episode_length = 1000
    camera_config = {"trackbodyid": 2, "distance": 4.0, "lookat": (0.0, 0.0, 1.15), "elevation": -20.0}
    physics_profiles = {"faithful": (), "fast": physics_lib.solver_caps(4, 8)}

    def __init__(
        self,
        physics: str = physics_lib.DEFAULT_PROFILE,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 1e-3,
        healthy_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.8, 2.0),
        healthy_angle_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 5e-3,
        exclude_current_positions_from_observation: bool = True,
    ):
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.healthy_reward = healthy_reward
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.healthy_z_range = healthy_z_range
        self.healthy_angle_range = healthy_angle_range
        self.reset_noise_scale = reset_noise_scale
        self.exclude_current_positions_from_observation = exclude_current_positions_from_observation
        super().__init__(physics)

    def is_healthy(self, data):
        z, angle = data.qpos[1], data.qpos[2]
        return base.in_open_range(z, self.healthy_z_range) & base.in_open_range(angle, self.healthy_angle_range)
