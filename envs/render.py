"""Offline rendering of MJX trajectories with MuJoCo's own renderer.

`render` rebuilds a CPU ``mujoco.MjData`` from each state's qpos/qvel
(``mj_forward``) and draws it with ``mujoco.Renderer``; `write_video` saves
the frames as MP4 (imageio + imageio-ffmpeg) or GIF (imageio / Pillow).

Headless machines need an OpenGL backend chosen *before* mujoco is
imported: ``MUJOCO_GL=egl`` (NVIDIA GPUs, or Mesa's libEGL on CPUs) or
``MUJOCO_GL=osmesa`` (libosmesa6). `mjx_dacer.envs` picks ``egl`` on Linux
when no display and no ``MUJOCO_GL`` is set. Without a working backend,
`render` raises `RenderError` saying what to install or set.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
from typing import Any, Sequence

import jax
import mujoco
import numpy as np


class RenderError(RuntimeError):
    """No OpenGL backend could create a rendering context."""


def render(
    env: Any,
    states: Any,
    height: int = 240,
    width: int = 320,
    camera: str | int | None = None,
) -> np.ndarray:
    """Draws each state of a trajectory.

    Args:
      env: a MuJoCo task from `mjx_dacer.envs.make` (or a wrapper around one).
      states: brax ``State``s or ``mjx.Data``: a sequence of unbatched ones, or
        one whose leaves carry a leading time axis (e.g. stacked by ``lax.scan``).
      height, width: frame size in pixels.
      camera: a camera name or id of the model; default: the task's
        ``camera_config`` (a free camera, tracking the body when the task says so).

    Returns:
      uint8 array (T, height, width, 3).
    """
    env = env.unwrapped
    model = getattr(env, "mj_model", None)
    qpos, qvel = _trajectory(states)
    if model is None and hasattr(env, "goals"):
        return _render_plane(env, qpos, height, width)
    if model is None:
        raise ValueError(f"{env!r} has no MuJoCo model to render")
    data = mujoco.MjData(model)
    renderer = _renderer(model, height, width)
    view = camera if camera is not None else _free_camera(model, getattr(env, "camera_config", {}))
    frames = np.empty((len(qpos), height, width, 3), np.uint8)
    try:
        for t, (q, v) in enumerate(zip(qpos, qvel)):
            data.qpos[:], data.qvel[:] = q, v
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=view)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


def can_render(env: Any) -> bool:
    """Whether `render` can draw this task: a MuJoCo model, or MultiGoal's plane."""
    env = env.unwrapped
    return getattr(env, "mj_model", None) is not None or hasattr(env, "goals")


PLANE_COLOURS = {"path": "tab:blue", "point": "red", "goal": "black"}


def _render_plane(env: Any, positions: np.ndarray, height: int, width: int) -> np.ndarray:
    """MultiGoal frames: the plane (walls at the axes' edges), the goals' circles, the path so far
    and the point. positions (T, 2) -> uint8 (T, height, width, 3); the axes fill the frame, so
    pixel (col, row) = ((x + wall) / (2 wall) * width, (wall - y) / (2 wall) * height)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wall = env.options.wall
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set(xlim=(-wall, wall), ylim=(-wall, wall))
    ax.set_axis_off()
    for gx, gy in np.asarray(env.goals):
        ax.add_patch(plt.Circle((gx, gy), env.options.goal_radius, fill=False, color=PLANE_COLOURS["goal"]))
    path, = ax.plot([], [], color=PLANE_COLOURS["path"], lw=1.5)
    point, = ax.plot([], [], "o", color=PLANE_COLOURS["point"], markersize=6)
    frames = np.empty((len(positions), height, width, 3), np.uint8)
    try:
        for t in range(len(positions)):
            path.set_data(positions[: t + 1, 0], positions[: t + 1, 1])
            point.set_data(positions[t : t + 1, 0], positions[t : t + 1, 1])
            fig.canvas.draw()
            frames[t] = np.asarray(fig.canvas.buffer_rgba())[:height, :width, :3]
    finally:
        plt.close(fig)
    return frames


def write_video(frames: np.ndarray | Sequence[np.ndarray], path: str | os.PathLike, fps: float = 30.0) -> pathlib.Path:
    """Writes (T, H, W, 3) uint8 frames to ``path``; the suffix picks the format.

    ``.mp4`` needs the ``imageio-ffmpeg`` package; ``.gif`` works with
    imageio's Pillow plugin alone. fps: frames per second (``1 / env.dt``
    plays in real time).
    """
    import imageio.v3 as iio

    path = pathlib.Path(path)
    check_video_path(path)
    frames = np.asarray(frames, np.uint8)
    if path.suffix.lower() == ".gif":
        # GIF stores per-frame durations in milliseconds.
        iio.imwrite(path, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    else:
        iio.imwrite(path, frames, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)
    return path


def check_video_path(path: str | os.PathLike) -> None:
    """Raises ValueError for a suffix `write_video` cannot write, RuntimeError for an .mp4 without its
    encoder (`imageio-ffmpeg`): cheap, so a caller can check before the work that makes the frames."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"unsupported video format {suffix!r}: use .mp4 or .gif")
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise RuntimeError("MP4 needs `pip install imageio-ffmpeg`; or write a .gif")


def _trajectory(states: Any) -> tuple[np.ndarray, np.ndarray]:
    """(T, nq), (T, nv) float64 from states or data, stacked or in a sequence."""
    if isinstance(states, (list, tuple)):
        pairs = [_qpos_qvel(s) for s in states]
        qpos, qvel = np.stack([p for p, _ in pairs]), np.stack([v for _, v in pairs])
    else:
        qpos, qvel = _qpos_qvel(states)
    if qpos.ndim == 1:
        qpos, qvel = qpos[None], qvel[None]
    if qpos.ndim != 2:
        raise ValueError(f"expected one trajectory, got qpos of shape {qpos.shape}; index the batch first")
    return qpos.astype(np.float64), qvel.astype(np.float64)


def _qpos_qvel(state: Any) -> tuple[np.ndarray, np.ndarray]:
    data = getattr(state, "pipeline_state", state)
    qpos, qvel = jax.device_get((data.qpos, data.qvel))
    return np.asarray(qpos), np.asarray(qvel)


def _renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    # The offscreen buffer must hold the frame; Gymnasium enlarges it the same way.
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as err:  # the GL backends raise assorted types
        backend = os.environ.get("MUJOCO_GL", "<unset: glfw, needs a display>")
        raise RenderError(
            f"no OpenGL context for MuJoCo (MUJOCO_GL={backend}): {type(err).__name__}: {err}. "
            "Headless: set MUJOCO_GL=egl (NVIDIA driver or Mesa's libegl1 + libgl1-mesa-dri) or "
            "MUJOCO_GL=osmesa (libosmesa6) before importing mujoco."
        ) from err


def _free_camera(model: mujoco.MjModel, config: dict[str, Any]) -> mujoco.MjvCamera:
    """A camera from a Gymnasium-style ``default_camera_config`` dict."""
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    for key, value in config.items():
        if key == "trackbodyid":
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING if value >= 0 else mujoco.mjtCamera.mjCAMERA_FREE
            cam.trackbodyid = int(value)
        elif key == "lookat":
            cam.lookat[:] = value
        else:
            setattr(cam, key, value)
    return cam
