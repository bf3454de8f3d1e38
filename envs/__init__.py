"""MJX ports of Gymnasium's MuJoCo v5 tasks and the Multi-goal task (the DACER paper's Sec. 5.2).

    env = mjx_dacer.envs.make("Hopper-v5", physics="fast")   # brax Env, actions in [-1, 1]
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state = jax.jit(env.step)(state, action)                  # state.pipeline_state: mjx.Data
    # Programs that step a task are jitted with its XLA options (needed by Pusher on the CPU):
    step = mjx_dacer.envs.jit(env, env.step)

    train_env = mjx_dacer.envs.TrainingWrapper(env)          # N envs, time limit, auto-reset
    states = train_env.reset(jax.random.split(key, N))

    mjx_dacer.envs.options("Hopper-v5")                       # the overrides `make` takes, with defaults
    mjx_dacer.envs.preset("Hopper-v5")                        # "hopper": its training config, configs/hopper.yaml

    frames = mjx_dacer.envs.render(env, trajectory)           # (T, H, W, 3) uint8
    mjx_dacer.envs.write_video(frames, "hopper.mp4", fps=1 / env.dt)
"""

# Rendering's OpenGL backend (MUJOCO_GL: EGL on a Linux machine without a display) is chosen by
# mjx_dacer/__init__.py, which runs before this module and before anything imports mujoco.

from mjx_dacer.envs.base import compiler_options, jit  # noqa: E402
from mjx_dacer.envs.physics import DEFAULT_PROFILE, PROFILES  # noqa: E402
from mjx_dacer.envs.registry import make, names, options, preset  # noqa: E402
from mjx_dacer.envs.render import RenderError, can_render, check_video_path, render, write_video  # noqa: E402
from mjx_dacer.envs.wrappers import TrainingWrapper  # noqa: E402

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "RenderError",
    "TrainingWrapper",
    "can_render",
    "check_video_path",
    "compiler_options",
    "jit",
    "make",
    "names",
    "options",
    "preset",
    "render",
    "write_video",
]
