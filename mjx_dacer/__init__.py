"""mjx_dacer: DACER (Diffusion Actor-Critic with Entropy Regulator) on MuJoCo MJX, end to end on the device."""

import contextlib as _contextlib
import importlib.util as _importlib_util
import io as _io
import os as _os
import sys as _sys

# A checkout's own mjx_dacer/ can come first on sys.path (`python -m` or `-c` run inside a
# checkout whose package was installed regularly elsewhere). Its environments live in the
# top-level envs/, which only an install maps to mjx_dacer.envs, so say that here rather
# than fail later on a missing module.
if _importlib_util.find_spec("mjx_dacer.envs") is None:
    raise ImportError(
        f"mjx_dacer was imported from the source folder {__path__[0]}, which is not installed: install it "
        "(pip install -e .), or run outside the checkout (or with PYTHONSAFEPATH=1) to use the installed package")

from mjx_dacer import cpu_threads as _cpu_threads

# Before anything can start a JAX backend: on jaxlib <= 0.11.0, give XLA:CPU's
# intra-op pool one thread, or MJX's batched Cholesky kernels can deadlock it
# (see mjx_dacer.cpu_threads). CPU_THREADS records what was decided.
CPU_THREADS = _cpu_threads.limit()

# Rendering needs its OpenGL backend chosen before mujoco is first imported (mujoco reads MUJOCO_GL
# once, at import): on a Linux machine without a display, default to EGL (GPU driver or Mesa).
if _sys.platform.startswith("linux") and not _os.environ.get("DISPLAY") and "MUJOCO_GL" not in _os.environ:
    _os.environ["MUJOCO_GL"] = "egl"

# mujoco.mjx prints a line to stdout when its optional Warp backend is not
# installed; that backend is never used here, so keep the notice out of the CLI's output.
with _contextlib.redirect_stdout(_io.StringIO()):
    import mujoco.mjx  # noqa: F401

from mjx_dacer.config import Config, ConfigError, HParams, load_config  # noqa: E402

__all__ = ["CPU_THREADS", "Config", "ConfigError", "HParams", "load_config", "load_policy", "make_train", "run"]
__version__ = "0.1.0"


# The training program, the run API and the policy loader pull in the environments
# and flax: import them on first use, so `import mjx_dacer` stays light.
_LAZY = {"make_train": "mjx_dacer.train", "run": "mjx_dacer.runner", "load_policy": "mjx_dacer.policy"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mjx_dacer' has no attribute {name!r}")
