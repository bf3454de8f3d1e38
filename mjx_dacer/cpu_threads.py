"""XLA:CPU's intra-op thread pool, sized so that batched LAPACK calls cannot deadlock it.

The cause (read in jaxlib's ``cpu/lapack_kernels.cc``, reproduced in
``tests/test_cpu_threads.py``): jaxlib up to 0.11.0 splits a batched LAPACK
call (Cholesky factor, triangular solve) into chunks when the batch is large
enough (``batch * n^3 / 3 >= 2e5`` flops for a Cholesky), schedules the chunks
on XLA:CPU's intra-op thread pool and blocks the calling thread until they are
done. That calling thread is itself a thread of the same pool, and XLA runs
independent custom calls concurrently; once every pool thread is blocked in
such a call, the queued chunks never run and the process hangs using no CPU.
Here that is MJX's physics (the mass matrix's Cholesky in ``smooth.factor_m``
and the Newton solver's Hessian in ``solver.py``: Humanoid, Ant, HalfCheetah
and Pusher at 1024 environments on 2 cores) and the GMM entropy estimate
(`mjx_dacer.gmm`).

jaxlib skips the split when the pool has one thread, and the pool's size is
read from ``PJRT_NPROC`` when JAX creates its CPU client, once per process.
So `limit`, called when `mjx_dacer` is imported, sets ``PJRT_NPROC=1`` for
an affected jaxlib on the CPU backend, unless the user chose a size. Measured
on jaxlib 0.10.2 / 0.11.0 (hang with 2 threads) and 0.11.1, 0.11.2, 0.12.0.1
(no hang): later releases need nothing. The physics is unchanged; what it
costs in speed is measured by ``mjx-dacer bench envs --cpu-threads 1 2``
(``results/envs_cpu.md``).
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import pkgutil
import re
import warnings

VARIABLE = "PJRT_NPROC"
# XLA reads NPROC after PJRT_NPROC; a number in either is the user's choice.
_USER_VARIABLES = ("PJRT_NPROC", "NPROC")
# The first jaxlib release measured not to deadlock (0.11.0 does; 0.11.1 does not).
FIXED_IN = (0, 11, 1)
_ACCELERATOR_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/accel0")
_warned = False


def jaxlib_affected(version: str | None = None) -> bool:
    """Whether this jaxlib (or the given version string) has the batched-LAPACK deadlock."""
    version = _jaxlib_version() if version is None else version
    if version is None:
        return False
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    return numbers < FIXED_IN


def limit() -> str:
    """Sets ``PJRT_NPROC=1`` for this process when that is both needed and still possible.

    Returns what was decided: ``"set"``; ``"user"`` (PJRT_NPROC or NPROC
    already holds a number: never overridden); ``"not needed"`` (a jaxlib
    without the bug); ``"accelerator"`` (JAX will pick a GPU/TPU, where the
    physics' linear algebra does not run on this pool: left alone); ``"too
    late"`` (a JAX backend already exists, so its pool is fixed; `warn_if_unsafe`
    tells the user when a task is made).
    """
    if user_threads() is not None:
        return "user"
    if not jaxlib_affected():
        return "not needed"
    if _backends_initialized():
        return "too late"
    if _accelerator_expected():
        return "accelerator"
    os.environ[VARIABLE] = "1"
    return "set"


def pool_size() -> int:
    """The intra-op pool size XLA:CPU uses in this process (as jaxlib's CPU client computes it).

    ``max(PJRT_NPROC or NPROC or the schedulable cores, CPU device count)``;
    the device count only once the backend exists (forced host devices,
    ``--xla_force_host_platform_device_count``, enlarge the pool).
    """
    size = user_threads()
    if size is None:
        size = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if _backends_initialized():
        import jax

        try:
            size = max(size, len(jax.devices("cpu")))
        except RuntimeError:
            pass
    return size


def warn_if_unsafe() -> None:
    """Warns (once) when batched physics is about to run on a pool that can deadlock."""
    global _warned
    import jax

    if _warned or not jaxlib_affected() or jax.default_backend() != "cpu":
        return
    threads = pool_size()
    if threads <= 1:
        return
    _warned = True
    warnings.warn(
        f"XLA:CPU runs {threads} intra-op threads in this process: jaxlib {_jaxlib_version()}'s batched "
        f"Cholesky kernels (MJX's physics) can deadlock such a pool on large batches. Set {VARIABLE}=1 "
        "before JAX starts (importing mjx_dacer before the first JAX computation does this), or use "
        "jaxlib >= 0.11.1.",
        RuntimeWarning,
        stacklevel=3,
    )


def user_threads() -> int | None:
    """The pool size set by PJRT_NPROC or else NPROC, as XLA reads them (non-integers are ignored)."""
    for variable in _USER_VARIABLES:
        try:
            return max(0, int(os.environ[variable].strip()))
        except (KeyError, ValueError):
            continue
    return None


def _jaxlib_version() -> str | None:
    try:
        return importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume the worst
        return True


def _accelerator_expected() -> bool:
    """Whether JAX's default backend will be a GPU/TPU, judged without starting JAX."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME") or ""
    if platforms.strip():
        return platforms.split(",")[0].strip().lower() != "cpu"
    device = any(os.path.exists(p) for p in _ACCELERATOR_DEVICE_FILES) or bool(glob.glob("/dev/vfio/[0-9]*"))
    return device and _accelerator_plugin_installed()


def _accelerator_plugin_installed() -> bool:
    if importlib.util.find_spec("libtpu") is not None:
        return True
    if importlib.metadata.entry_points(group="jax_plugins"):
        return True
    spec = importlib.util.find_spec("jax_plugins")
    return spec is not None and any(pkgutil.iter_modules(spec.submodule_search_locations or []))
