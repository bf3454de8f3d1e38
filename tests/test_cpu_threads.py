"""XLA:CPU's intra-op pool and jaxlib's batched LAPACK kernels (see `mjx_dacer.cpu_threads`).

jaxlib <= 0.11.0 splits a batched Cholesky over the intra-op pool and blocks
the pool thread that runs it until the pieces finish; with every pool thread
in such a call the process hangs forever. Importing `mjx_dacer` before JAX
starts gives the pool one thread (PJRT_NPROC=1), where the split never
happens. Each check runs in a fresh interpreter: the pool is sized once per
process, and this test process's JAX has long started.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mjx_dacer import cpu_threads

# Four independent batched Cholesky factor + solve chains in a scan: XLA runs
# independent custom calls concurrently, so on a pool of 2-4 threads all of
# them end up waiting on chunks queued behind themselves. 1024 matrices of
# 23x23 (Humanoid's nv) are far above jaxlib's split threshold. Measured on a
# 2-core machine with PJRT_NPROC=2 (that machine's default pool): hangs in
# every run; with the guard: ~5 s. (The MJX tasks themselves hang only now and
# then, e.g. Ant-v5 at 1024 envs in `bench envs`, and take minutes to compile.)
CHOLESKY_PROGRAM = """
import mjx_dacer  # first: sizes XLA:CPU's thread pool
import jax, jax.numpy as jnp
n, batch, chains = 23, 1024, 4
def body(xs, _):
    outs = []
    for x in xs:
        spd = x @ jnp.swapaxes(x, -1, -2) + n * jnp.eye(n)
        outs.append(jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(spd), x[..., :1])[..., 0])
    return tuple(x + 1e-3 * jnp.tanh(outs[(i + 1) % chains])[..., None] for i, x in enumerate(xs)), None
keys = jax.random.split(jax.random.PRNGKey(0), chains)
xs = tuple(0.1 * jax.random.normal(k, (batch, n, n)) for k in keys)
out = jax.jit(lambda xs: jax.lax.scan(body, xs, (), 50)[0])(xs)
jax.block_until_ready(out)
print("done", mjx_dacer.CPU_THREADS)
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the thread-pool variables (conftest's import set PJRT_NPROC), on the CPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no result after {timeout:.0f} s: deadlocked (XLA:CPU intra-op pool)")


needs_guard = pytest.mark.skipif(not cpu_threads.jaxlib_affected(), reason="this jaxlib has no batched-LAPACK deadlock")


def test_affected_versions():
    # Measured: 0.10.2 and 0.11.0 hang in CHOLESKY_PROGRAM with PJRT_NPROC=2; 0.11.1, 0.11.2, 0.12.0.1 do not.
    assert cpu_threads.jaxlib_affected("0.10.2") and cpu_threads.jaxlib_affected("0.11.0")
    assert not any(map(cpu_threads.jaxlib_affected, ["0.11.1", "0.11.2", "0.12.0.1", "1.0.0"]))


@needs_guard
def test_import_limits_cpu_threads_unless_the_user_chose():
    code = "import os, mjx_dacer as m; print(m.CPU_THREADS, os.environ.get('PJRT_NPROC'))"
    assert run_python(code, clean_env(), 120).stdout.split()[-2:] == ["set", "1"]
    assert run_python(code, clean_env(PJRT_NPROC="3"), 120).stdout.split()[-2:] == ["user", "3"]
    assert run_python(code, clean_env(NPROC="2"), 120).stdout.split()[-2:] == ["user", "None"]
    # A GPU/TPU backend's host pool is sized by the same variable: left alone.
    assert run_python(code, clean_env(JAX_PLATFORMS="cuda"), 120).stdout.split()[-2:] == ["accelerator", "None"]


def test_batched_cholesky_does_not_deadlock():
    # Whatever the jaxlib: with the guard (or a fixed jaxlib) this program ends.
    out = run_python(CHOLESKY_PROGRAM, clean_env(), 180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"done {'set' if cpu_threads.jaxlib_affected() else 'not needed'}"


@needs_guard
def test_warns_when_jax_started_first():
    code = (
        "import warnings, jax\n"
        "jax.devices()  # JAX's CPU client (and its pool) exists before mjx_dacer.envs is imported\n"
        "import mjx_dacer.envs as e, mjx_dacer as m\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    e.make('InvertedDoublePendulum-v5')\n"
        "print(m.CPU_THREADS, sum('PJRT_NPROC=1' in str(w.message) for w in caught))\n"
    )
    out = run_python(code, clean_env(PJRT_NPROC="2"), 120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["user", "1"]
    out = run_python(code, clean_env(PJRT_NPROC="1"), 120)
    assert out.stdout.split()[-2:] == ["user", "0"]

