"""TD3 and DDPG (DACER_SPEC §9) through the Agent interface: the update against a transcription,
the delay, and learning on Multi-goal in the shared program."""

import jax
import jax.numpy as jnp
import numpy as np
import agent_checks
import pytest

from mjx_dacer.agents import defaults, make_agent
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config
from mjx_dacer.td3 import DDPG, TD3

S, A, N = 5, 2, 32


def tiny(algo):
    cfg = Config().replace(**{**defaults(algo), "algo": algo, "hidden_sizes": [32, 32],
                              "critic_hidden_sizes": [32, 32]})
    return make_agent(cfg, S, A)


def random_batch(key) -> Transition:
    return agent_checks.random_batch(key, N, S, A, terminal_fraction=0.3)


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_update_equals_a_direct_transcription(algo):
    agent = tiny(algo)
    assert type(agent) is {"td3": TD3, "ddpg": DDPG}[algo]
    hp = agent.config.hparams()
    state = agent.init(jax.random.PRNGKey(0))
    batch, key = random_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    new, metrics = jax.jit(agent.update)(state, batch, key, hp)

    a_next = agent.policy_net.apply(state.target_policy_params, batch.next_obs)
    if algo == "td3":  # target-policy smoothing: clip(pi'(s') + clip(N(0, 0.2^2), -0.5, 0.5), -1, 1)
        a_next = jnp.clip(a_next + jnp.clip(0.2 * jax.random.normal(key, a_next.shape), -0.5, 0.5), -1, 1)
    q_next = np.asarray(agent.critic_net.apply(state.target_critic_params, batch.next_obs, a_next))
    assert q_next.shape[0] == (2 if algo == "td3" else 1)
    y = 0.2 * np.asarray(batch.reward) + 0.99 * (1 - np.asarray(batch.terminated)) * q_next.min(axis=0)
    q = np.asarray(agent.critic_net.apply(state.critic_params, batch.obs, batch.action))
    np.testing.assert_allclose(float(metrics["critic_loss"]), sum(0.5 * np.mean((qj - y) ** 2) for qj in q),
                               rtol=2e-3)
    pi = agent.policy_net.apply(state.policy_params, batch.obs)
    q1 = agent.critic_net.apply(state.critic_params, batch.obs, pi)[0]
    np.testing.assert_allclose(float(metrics["actor_loss"]), -float(jnp.mean(q1)), rtol=2e-3)
    # Update 0 moved the actor and the targets; update 1 (policy_delay 2) leaves them.
    assert not np.allclose(np.asarray(jax.tree.leaves(new.policy_params)[0]),
                           np.asarray(jax.tree.leaves(state.policy_params)[0]))
    newer, _ = jax.jit(agent.update)(new, batch, key, hp)
    jax.tree.map(np.testing.assert_array_equal, newer.policy_params, new.policy_params)
    jax.tree.map(np.testing.assert_array_equal, newer.target_critic_params, new.target_critic_params)


def test_exploration_noise_is_table_2s():
    agent = tiny("td3")
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((4096, S))
    greedy = agent.eval_action(state, obs, jax.random.PRNGKey(1))
    explored = agent.behaviour_action(state, obs, jax.random.PRNGKey(1), agent.config.hparams())
    interior = np.abs(np.asarray(greedy)) < 0.7
    assert float(np.std(np.asarray(explored - greedy)[interior])) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_learns_multigoal_in_the_shared_program(algo):
    """Settings of DACER's and SAC's learning tests; thresholds as SAC's (see tests/test_sac.py)."""
    cfg = Config().replace(**{**defaults(algo), "algo": algo, **agent_checks.MULTIGOAL_LEARNING})
    untrained, rows = agent_checks.learn_multigoal(cfg)
    final = float(rows["eval_return"][-1])
    assert np.all(np.isfinite(rows["critic_loss"]))
    assert final > -700 and final > untrained + 300, (untrained, rows["eval_return"])
