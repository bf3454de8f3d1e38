"""Shared by the agents' tests: random replay batches and the Multi-goal learning run in the shared program."""

import jax
import jax.numpy as jnp

from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config
from mjx_dacer.train import make_train

# The learning tests' budget (DACER's, SAC's, DSAC-T's, TD3's, DDPG's): 1500 iterations on Multi-goal.
MULTIGOAL_LEARNING = dict(
    env="MultiGoal-v0", num_envs=20, total_iterations=1500, eval_interval=750, warmup_steps=1000,
    buffer_capacity=50_000, batch_size=128, eval_episodes=10, hidden_sizes=[64, 64], critic_hidden_sizes=[64, 64],
    lr_actor=1e-3, lr_critic=1e-3,
)


def random_batch(key, n: int, obs_size: int, action_size: int, terminal_fraction: float = 0.2) -> Transition:
    """n random transitions: normal observations and rewards, uniform actions, some terminal."""
    k = jax.random.split(key, 5)
    return Transition(
        obs=jax.random.normal(k[0], (n, obs_size)),
        action=jax.random.uniform(k[1], (n, action_size), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, obs_size)),
        terminated=(jax.random.uniform(k[4], (n,)) < terminal_fraction).astype(jnp.float32),
        truncated=jnp.zeros((n,)),
    )


def learn_multigoal(config: Config, seed: int = 0):
    """(untrained evaluation return, metrics rows of the whole run) of `config` on seed `seed`."""
    program = make_train(config)
    key, hp = jax.random.PRNGKey(seed), config.hparams()
    ts = jax.jit(program.init)(key, hp)
    untrained = float(jnp.mean(jax.jit(lambda s: program.run_chunk(s, hp, 0)[1]["eval_returns"])(ts)))
    _, rows = jax.jit(program.train)(key, hp)
    return untrained, rows
