"""envs.batching.one_axis: enclosing vmaps folded into a function's own leading batch axis."""

import jax
import jax.numpy as jnp
import numpy as np

from mjx_dacer.envs.batching import one_axis


def test_nested_vmaps_run_the_function_once_on_the_flat_batch_with_the_same_rows():
    shapes = []

    def fn(x, y):  # leading batch axis B = 4
        shapes.append(x.shape)
        return {"sum": x * 2.0 + y, "none_yet": jnp.zeros((x.shape[0], 0, 3))}  # zero-size, as MJX's empty contacts

    x = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 3, 4, 5)
    y = jnp.linspace(0.0, 1.0, 4 * 5).reshape(4, 5)  # batched by neither vmap: broadcast
    nested = jax.vmap(jax.vmap(one_axis(fn), in_axes=(0, None)), in_axes=(0, None))
    out = jax.jit(nested)(x, y)
    assert shapes[-1] == (2 * 3 * 4, 5)  # one call on 24 rows, not 6 of 4
    np.testing.assert_array_equal(out["sum"], x * 2.0 + y)
    assert out["none_yet"].shape == (2, 3, 4, 0, 3)
    np.testing.assert_array_equal(one_axis(fn)(x[0, 0], y)["sum"], x[0, 0] * 2.0 + y)  # no vmap: fn itself


def test_a_whole_batch_decision_covers_every_run_and_keys_fold_too():
    def anyone(x, keys):  # true for every row if any row of the batch is positive
        return jnp.broadcast_to(jnp.any(x > 0), x.shape), jax.vmap(jax.random.split)(keys)[:, 0]

    x = jnp.zeros((3, 4)).at[2, 1].set(1.0)  # 3 runs of 4; only run 2 has a positive row
    keys = jax.random.split(jax.random.key(0), 12).reshape(3, 4)
    flags, split = jax.vmap(one_axis(anyone))(x, keys)
    assert bool(jnp.all(flags))
    per_run = [jax.vmap(jax.random.split)(keys[r])[:, 0] for r in range(3)]
    np.testing.assert_array_equal(jax.random.key_data(split), jax.random.key_data(jnp.stack(per_run)))
    alone, _ = jax.vmap(anyone)(x, keys)  # without one_axis each run decides alone
    np.testing.assert_array_equal(alone[:, 0], [False, False, True])
