"""Batched physics on one flat axis, however many `jax.vmap`s surround it.

The training program vmaps its runs (seeds, grid points) around the N
environments of each, so MJX's step would be vmapped twice: (R, N, ...).
XLA:CPU compiles MJX's step under two vmap levels into code about twice as
slow as the same step on one axis of the same size (HalfCheetah-v5, 20 envs,
one run: `results/flat_batch_cpu.md`), and the per-run predicate of a
`lax.cond` inside would make vmap run both of its branches. `one_axis`
folds each enclosing vmap into the function's own leading axis instead:
vmapped over R, a function of (B, ...) runs once on (R * B, ...).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


def one_axis(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, whose arguments and results are pytrees batched on a leading axis B, with enclosing vmaps folded into B.

    Under `jax.vmap` over R, arguments (R, B, ...) are reshaped to (R * B, ...),
    an argument the vmap does not batch is first broadcast to R copies, and the
    results (R * B, ...) are reshaped back to (R, B, ...). Every row is computed
    as `fn` computes it on its own batch, so the numbers are those of the nested
    vmaps; what changes is the program XLA gets, and that the whole R * B batch
    is one batch inside `fn` (a `jnp.any` over it covers every run). Not for
    functions whose rows interact across the batch other than through such
    whole-batch decisions.
    """

    @custom_vmap
    def folded(*args: Any) -> Any:
        return fn(*args)

    @folded.def_vmap
    def _fold(axis_size: int, in_batched: list[Any], *args: Any) -> tuple[Any, Any]:
        def merge(x, batched):
            x = x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
            return x.reshape((axis_size * x.shape[1], *x.shape[2:]))

        def split(x):  # explicit sizes: zero-size leaves (no contacts yet) defeat a -1
            return x.reshape((axis_size, x.shape[0] // axis_size, *x.shape[1:]))

        out = folded(*jax.tree.map(merge, args, tuple(in_batched)))  # folded again: vmaps further out fold too
        return jax.tree.map(split, out), jax.tree.map(lambda _: True, out)

    return folded
