"""render / write_video: frames from states, GIF always, MP4 when imageio-ffmpeg is there."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import mjx_dacer.envs as envs
from mjx_dacer.envs.render import RenderError


@pytest.fixture(scope="module")
def hopper_states():
    """Three unjitted states of Hopper (no physics compile): reset, then moved by hand."""
    env = envs.make("Hopper-v5")
    state = env.reset(jax.random.PRNGKey(0))
    data = state.pipeline_state
    moved = [data.replace(qpos=data.qpos.at[0].add(0.1 * t)) for t in range(3)]
    return env, [state.replace(pipeline_state=d) for d in moved]


def _frames(env, states, **kwargs):
    try:
        return envs.render(env, states, **kwargs)
    except RenderError as err:
        pytest.skip(str(err))


def test_render_sequence_and_stacked_states(hopper_states):
    env, states = hopper_states
    frames = _frames(env, states, height=64, width=80)
    assert frames.shape == (3, 64, 80, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # not a blank image
    stacked = jax.tree.map(lambda *x: np.stack(x), *states)
    np.testing.assert_array_equal(_frames(env, stacked, height=64, width=80), frames)
    # Raw mjx.Data works too, and a named camera of the model.
    assert _frames(env, [s.pipeline_state for s in states], height=32, width=32).shape == (3, 32, 32, 3)
    assert _frames(env, states[:1], height=32, width=32, camera="track").shape == (1, 32, 32, 3)


def test_multigoal_is_drawn_on_the_plane_with_the_point_where_it_is():
    """The red point's pixel centroid lies where the plane's linear map puts each position (the axes fill
    the frame: col = (x + 7) / 14 * width, row = (7 - y) / 14 * height)."""
    import numpy as np

    env = envs.make("MultiGoal-v0")
    assert envs.can_render(env)
    positions = np.array([[-6.0, 3.0], [0.0, 0.0], [2.5, -4.0], [6.0, 6.0]], np.float32)
    frames = envs.render(env, [env.state_from(jax.numpy.asarray(p)) for p in positions], height=140, width=280)
    assert frames.shape == (4, 140, 280, 3) and frames.dtype == np.uint8
    red = (frames[..., 0] > 200) & (frames[..., 1] < 60) & (frames[..., 2] < 60)
    for t, (x, y) in enumerate(positions):
        rows, cols = np.nonzero(red[t])
        assert rows.size > 10
        assert abs(cols.mean() - (x + 7) / 14 * 280) < 1.5 and abs(rows.mean() - (7 - y) / 14 * 140) < 1.5
    # The goals' circles: dark pixels on the circle of radius 1 around (5, 0), none at its centre.
    col, row = int(round(12 / 14 * 280)), int(round(7 / 14 * 140))
    assert frames[0, row, col].min() > 200  # the centre of the goal is background
    assert frames[0, row - 10:row + 11, int(round(11 / 14 * 280))].min() < 100  # its left edge, x = 4


def test_write_gif_and_mp4(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 48, 3), dtype=np.uint8)
    gif = envs.write_video(frames, tmp_path / "clip.gif", fps=10)
    assert gif.stat().st_size > 0
    import imageio.v3 as iio

    assert iio.imread(gif, index=None).shape[0] == 4
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="imageio-ffmpeg"):
            envs.write_video(frames, tmp_path / "clip.mp4", fps=10)
    else:
        assert envs.write_video(frames, tmp_path / "clip.mp4", fps=10).stat().st_size > 0
    with pytest.raises(ValueError, match="unsupported video format"):
        envs.write_video(frames, tmp_path / "clip.avi")


def test_a_headless_linux_machine_gets_egl_before_mujoco_is_imported():
    """mujoco picks its OpenGL backend once, when first imported, from MUJOCO_GL. `import mjx_dacer` imports
    mujoco itself, so the headless default (EGL) must be set before that, not by a module imported later
    (it was: every headless render then failed, and `eval --video` of a MuJoCo task wrote no video)."""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the EGL default is for headless Linux")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYOPENGL_PLATFORM")}
    probe = "import mjx_dacer, mujoco, os; print(os.environ['MUJOCO_GL'], mujoco.GLContext.__module__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["egl", "mujoco.egl"], out.stdout
    chosen = {**env, "MUJOCO_GL": "glfw"}  # a user's choice is kept
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=chosen, timeout=300)
    assert out.stdout.split() == ["glfw", "mujoco.glfw"], out.stdout + out.stderr
