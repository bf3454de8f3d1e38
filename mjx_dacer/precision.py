"""True float32 matrix products where the arithmetic needs them: the physics and the GMM fit.

XLA runs a float32 dot product at the backend's default precision. On NVIDIA
GPUs since Ampere (A100, H100, H200) that is TensorFloat32: the inputs are
rounded to 10 mantissa bits (float32 has 23), a relative error near 1e-3 per
product. The networks tolerate it and keep the default, for speed. Two parts
of the program do not:

* the MJX physics (`envs.base.MujocoTask`: mass matrix, Jacobians, the
  constraint solver, and the observations and rewards read from them), which
  is compared with C MuJoCo in float64;
* the GMM-EM entropy estimate (`gmm`), whose k-means distances
  (|x|^2 + |c|^2 - 2 x.c) and whitened residuals (L x - L mu) subtract nearly
  equal products, so a 1e-3 error in each can swamp the difference.

`float32_matmuls` traces a function under ``jax.default_matmul_precision``
("highest": float32 on GPUs, full float32 on TPUs); on a CPU every float32 dot
product is float32 already and nothing changes.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

PRECISION = "highest"

F = TypeVar("F", bound=Callable)


def float32_matmuls(fn: F) -> F:
    """`fn`, traced with true float32 matrix products (apply it inside `jax.jit`: precision is set at tracing)."""

    @functools.wraps(fn)
    def traced_in_float32(*args, **kwargs):
        with jax.default_matmul_precision(PRECISION):
            return fn(*args, **kwargs)

    return traced_in_float32  # type: ignore[return-value]
