"""Where float32 matrix products are forced to true float32 (`mjx_dacer.precision`), read from the lowered
programs: the physics and the GMM fit ask for HIGHEST, the networks keep the backend's default.

On a CPU the two give the same numbers; on recent NVIDIA GPUs the default is TensorFloat32, so these
checks are what keeps the GPU's physics and entropy estimate in float32.
"""

import re

import jax
import jax.numpy as jnp
import pytest

import mjx_dacer.envs as envs
from mjx_dacer.config import load_config, parse_overrides
from mjx_dacer.gmm import fit_gmm, gmm_entropy
from mjx_dacer.networks import MLP
from mjx_dacer.train import make_train


def dot_precisions(lowered) -> list[str]:
    """The precision of every dot_general in a lowered program, e.g. ['HIGHEST', 'DEFAULT', ...]."""
    text = lowered.as_text()
    dots = re.findall(r"stablehlo\.dot_general[^\n]*", text)
    return [m.group(1) if (m := re.search(r"precision = \[(\w+)", d)) else "DEFAULT" for d in dots]


@pytest.mark.parametrize("name", ["Hopper-v5", "Ant-v5"])
def test_physics_reset_and_step_use_float32_products(name):
    env = envs.make(name)
    state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    for lowered in (jax.jit(env.reset).lower(jax.random.PRNGKey(0)),
                    jax.jit(env.step).lower(state, jnp.zeros(env.action_size)),
                    jax.jit(jax.vmap(env.step)).lower(*jax.tree.map(
                        lambda x: jax.ShapeDtypeStruct((4, *x.shape), x.dtype),
                        (state, jax.ShapeDtypeStruct((env.action_size,), jnp.float32))))):
        precisions = dot_precisions(lowered)
        assert precisions and set(precisions) == {"HIGHEST"}, precisions


def test_gmm_fit_uses_float32_products_and_networks_the_default():
    x = jax.ShapeDtypeStruct((4, 50, 3), jnp.float32)
    for fn in (gmm_entropy, fit_gmm):
        precisions = dot_precisions(fn.lower(x))
        assert precisions and set(precisions) == {"HIGHEST"}, precisions
    mlp = MLP(hidden_sizes=(8, 8), out_size=2)
    params = mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    assert set(dot_precisions(jax.jit(mlp.apply).lower(params, jnp.zeros((5, 3))))) == {"DEFAULT"}


def test_a_training_iteration_keeps_both():
    """Inside the compiled iteration (vmap, scan, the diffusion chain), the physics and the entropy
    estimate stay HIGHEST and the networks DEFAULT."""
    cfg = load_config("hopper", parse_overrides(["hidden_sizes=8,8", "critic_hidden_sizes=8,8", "num_envs=2",
                                                 "batch_size=4", "buffer_capacity=16", "diffusion_steps=2",
                                                 "entropy_samples=6", "warmup_steps=0"]))
    program = make_train(cfg)
    state = jax.eval_shape(program.init, jax.random.PRNGKey(0), cfg.hparams())
    precisions = dot_precisions(jax.jit(program.iteration).lower(state, cfg.hparams()))
    env_step = dot_precisions(jax.jit(program.env.step).lower(
        jax.eval_shape(program.env.reset, jax.random.PRNGKey(0)), jnp.zeros(program.env.action_size)))
    assert precisions.count("HIGHEST") >= len(env_step) and "DEFAULT" in precisions
    assert set(precisions) == {"HIGHEST", "DEFAULT"}
