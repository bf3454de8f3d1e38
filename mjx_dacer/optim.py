"""Adam with the step size applied outside optax, shared by every agent.

The (possibly vmapped) learning rates come from HParams and scale the Adam
direction in `adam_step`, so one compiled program serves a whole grid of
learning rates (optax's own `adam(lr)` would bake a float into the program).
"""

from __future__ import annotations

from typing import Any

import jax
import optax

Params = Any

adam = optax.scale_by_adam()  # betas (0.9, 0.999), eps 1e-8 (DACER_SPEC §4, §9)


def adam_step(params: Params, grads: Params, opt_state: optax.OptState, lr: jax.Array) -> tuple[Params, Any]:
    """params - lr * Adam(grads); returns (new params, new optimiser state)."""
    updates, opt_state = adam.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state
