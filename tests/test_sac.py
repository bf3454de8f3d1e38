"""SAC (DACER_SPEC §9) through the Agent interface: its losses against direct transcriptions, the
update against a transcription of the whole step, and learning on Multi-goal in the shared program."""

import jax
import jax.numpy as jnp
import numpy as np
import agent_checks
import pytest

from mjx_dacer import losses
from mjx_dacer.agents import defaults, make_agent
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config
from mjx_dacer.sac import SAC
from mjx_dacer.train import make_train

S, A, N = 5, 2, 32


def tiny_sac(**changes) -> SAC:
    cfg = Config().replace(**{**defaults("sac"), "algo": "sac", "hidden_sizes": [32, 32],
                              "critic_hidden_sizes": [32, 32], **changes})
    return make_agent(cfg, S, A)


def random_batch(key) -> Transition:
    return agent_checks.random_batch(key, N, S, A, terminal_fraction=0.3)


def test_tanh_gaussian_log_prob_matches_the_change_of_variables():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(64, 3)).astype(np.float32)
    log_std = rng.uniform(-2, 0.5, size=(64, 3)).astype(np.float32)
    key = jax.random.PRNGKey(1)
    action, log_prob = losses.tanh_gaussian_sample(jnp.asarray(mean), jnp.asarray(log_std), key)
    noise = np.asarray(jax.random.normal(key, mean.shape), np.float64)
    u = mean + np.exp(log_std) * noise
    # log N(u; mean, std) - log |d tanh(u) / du|, written the textbook way in float64.
    expected = np.sum(-0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2), axis=-1)
    np.testing.assert_allclose(np.asarray(action), np.tanh(u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(log_prob), expected, rtol=1e-4, atol=1e-3)
    # Far in the tail the stable form stays finite where the textbook one is log(0).
    _, tail = losses.tanh_gaussian_sample(jnp.full((1, 1), 30.0), jnp.full((1, 1), -20.0), key)
    assert np.isfinite(float(tail[0]))


def test_soft_targets_and_losses_match_numpy():
    rng = np.random.default_rng(2)
    q_next, log_prob = rng.normal(size=(2, 16)), rng.normal(size=16)
    reward, terminated = rng.normal(size=16), (rng.uniform(size=16) < 0.5).astype(float)
    y = losses.soft_q_targets(*map(jnp.asarray, (q_next, 0.3 * log_prob, reward, terminated)), 0.2, 0.99)
    np.testing.assert_allclose(
        np.asarray(y), 0.2 * reward + 0.99 * (1 - terminated) * (q_next.min(0) - 0.3 * log_prob), rtol=1e-5)
    q = rng.normal(size=(2, 16))
    loss, _ = losses.q_loss(None, lambda _: jnp.asarray(q), jnp.asarray(y))
    np.testing.assert_allclose(float(loss), sum(0.5 * np.mean((q[j] - np.asarray(y)) ** 2) for j in range(2)),
                               rtol=1e-5)
    # d/dlog_alpha of -log_alpha * mean(log pi + H_target) = -(mean(log pi) + H_target).
    grad = jax.grad(losses.sac_alpha_loss)(jnp.float32(0.1), jnp.asarray(log_prob), -2.0)
    np.testing.assert_allclose(float(grad), -(log_prob.mean() - 2.0), rtol=1e-5)


def test_update_equals_a_direct_transcription():
    agent = tiny_sac()
    hp = agent.config.hparams()
    state = agent.init(jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(3))
    key = jax.random.PRNGKey(4)
    new, metrics = jax.jit(agent.update)(state, batch, key, hp)

    # The same step written out: soft targets from the target critics, MSE critic loss,
    # then (step 0 is an actor step) the actor loss alpha * log pi - min Q at the step's critics.
    k_target, _, k_actor = jax.random.split(key, 3)
    alpha = 0.272
    mean, log_std = agent.policy_net.apply(state.policy_params, batch.next_obs)
    std = jnp.exp(log_std)
    u = mean + std * jax.random.normal(k_target, mean.shape)
    a_next = jnp.tanh(u)
    log_pi = jnp.sum(jax.scipy.stats.norm.logpdf(u, mean, std) - jnp.log(1 - a_next**2 + 1e-12), axis=-1)
    q_next = agent.critic_net.apply(state.target_critic_params, batch.next_obs, a_next)
    y = 0.2 * batch.reward + 0.99 * (1 - batch.terminated) * (jnp.min(q_next, 0) - alpha * log_pi)
    q = agent.critic_net.apply(state.critic_params, batch.obs, batch.action)
    critic_loss = jnp.sum(0.5 * jnp.mean((q - y) ** 2, axis=-1))
    np.testing.assert_allclose(float(metrics["critic_loss"]), float(critic_loss), rtol=2e-3)
    np.testing.assert_allclose(float(metrics["target_mean"]), float(jnp.mean(y)), rtol=1e-3, atol=1e-4)

    mean, log_std = agent.policy_net.apply(state.policy_params, batch.obs)
    u = mean + jnp.exp(log_std) * jax.random.normal(k_actor, mean.shape)
    a = jnp.tanh(u)
    log_pi = jnp.sum(jax.scipy.stats.norm.logpdf(u, mean, jnp.exp(log_std)) - jnp.log(1 - a**2 + 1e-12), -1)
    actor_loss = jnp.mean(alpha * log_pi - jnp.min(agent.critic_net.apply(state.critic_params, batch.obs, a), 0))
    np.testing.assert_allclose(float(metrics["actor_loss"]), float(actor_loss), rtol=2e-3)
    # Alpha moves towards the target entropy -dim(A): it shrinks when the entropy is above it.
    entropy = float(-jnp.mean(log_pi))
    assert float(metrics["entropy"]) == pytest.approx(entropy, rel=1e-3)
    assert np.sign(float(new.log_alpha) - np.log(alpha)) == np.sign(-A - entropy)
    # Step 1 skips the actor (policy_delay 2): its parameters stay.
    newer, _ = jax.jit(agent.update)(new, batch, key, hp)
    jax.tree.map(np.testing.assert_array_equal, newer.policy_params, new.policy_params)


@pytest.mark.parametrize("algo", ["sac", "dsac-t"])
def test_sac_learns_multigoal_in_the_shared_program(algo):
    """The same program, buffer and evaluation as DACER's learning test, with --algo sac's settings.
    Measured on seeds 0-3: untrained (tanh of the initial mean: it drifts, often not reaching a goal)
    -902/-2319/-2489/-2454, after 1500 iterations -482/-336/-346/-393 (a goal reached in a few steps).
    Below -700 no measured run had learned; the +300 margin fails a policy that stays as it was."""
    cfg = Config().replace(**{**defaults(algo), "algo": algo, **agent_checks.MULTIGOAL_LEARNING})
    assert isinstance(make_train(cfg).agent, SAC)  # DSAC-T is SAC with distributional critics
    untrained, rows = agent_checks.learn_multigoal(cfg)
    final = float(rows["eval_return"][-1])
    assert np.all(np.isfinite(rows["critic_loss"]))
    assert final > -700 and final > untrained + 300, (untrained, rows["eval_return"])


@pytest.mark.parametrize("algo", ["sac", "dsac-t", "td3", "ddpg"])
def test_baseline_through_the_cli_resumes_exactly_and_evaluates(algo, tmp_path):
    """`mjx-dacer train --algo ALGO`: a run stopped after its first checkpoint and resumed writes the same
    metrics.csv as the uninterrupted run; its policy.msgpack loads as that agent and `eval` runs it."""
    import shutil
    import subprocess
    import sys

    from mjx_dacer import report
    from mjx_dacer.policy import load_policy
    from mjx_dacer.rundir import RunDir

    tiny = ["total_iterations=4", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=200",
            "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8"]
    sets = sum((["--set", t] for t in tiny), [])

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *args], capture_output=True, text=True,
                              timeout=900)

    full = tmp_path / "full"
    out = cli("train", "--algo", algo, "--config", "multigoal", "--seeds", "2", *sets, "--out", str(full))
    assert out.returncode == 0, out.stderr
    assert ("alpha" in out.stdout) == (algo in ("sac", "dsac-t"))
    _, config, _ = RunDir.open(full)
    assert (config.algo, config.activation) == (algo, "gelu")
    if algo in ("sac", "dsac-t"):
        assert (config.initial_alpha, config.lr_alpha, config.target_entropy_factor) == (0.272, 3e-4, 1.0)
    # The same run as if stopped after chunk 2: its newest checkpoint deleted, then resumed.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    for step in (cut / "checkpoints").iterdir():
        if step.name.isdigit() and int(step.name) > 2:
            shutil.rmtree(step)
    resumed = cli("train", "--resume", str(cut))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after chunk 2" in resumed.stdout
    assert report.read_rows(cut / "metrics.csv") == report.read_rows(full / "metrics.csv")
    policy = load_policy(full, run=1)
    assert type(policy.agent).__name__ == algo.upper().replace("-", "")
    action = policy(np.zeros((3, 2), np.float32))
    assert action.shape == (3, 2) and np.all(np.abs(action) <= 1)
    evaluated = cli("eval", str(full), "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mjx" in evaluated.stdout


def test_dsac_t_critic_loss_is_eq_11_with_the_entropy_term_in_its_targets():
    agent = tiny_sac(algo="dsac-t")
    hp = agent.config.hparams()
    state = agent.init(jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(5))
    key = jax.random.PRNGKey(6)
    _, metrics = jax.jit(agent.update)(state, batch, key, hp)

    k_target, k_critic, _ = jax.random.split(key, 3)
    alpha = 0.272
    a_next, log_pi = losses.tanh_gaussian_sample(*agent.policy_net.apply(state.policy_params, batch.next_obs),
                                                 k_target)
    mu_next, sigma_next = agent.critic_net.apply(state.target_critic_params, batch.next_obs, a_next)
    low = np.argmin(np.asarray(mu_next), axis=0)
    cols = np.arange(N)
    mu_min, sigma_min = np.asarray(mu_next)[low, cols], np.asarray(sigma_next)[low, cols]
    z = mu_min + sigma_min * np.clip(np.asarray(jax.random.normal(k_critic, (N,))), -3, 3)
    bootstrap = 0.99 * (1 - np.asarray(batch.terminated))
    y = 0.2 * np.asarray(batch.reward) + bootstrap * (mu_min - alpha * np.asarray(log_pi))
    y_s = 0.2 * np.asarray(batch.reward) + bootstrap * (z - alpha * np.asarray(log_pi))
    mu, sigma = map(np.asarray, agent.critic_net.apply(state.critic_params, batch.obs, batch.action))
    b = sigma.mean(axis=1)  # first update: b is the batch-mean sigma
    expected = sum(float(losses.distributional_critic_loss(mu[j], sigma[j], y, y_s, b[j])) for j in range(2))
    np.testing.assert_allclose(float(metrics["critic_loss"]), expected, rtol=2e-3)
    np.testing.assert_allclose(float(metrics["target_mean"]), y.mean(), rtol=1e-3, atol=1e-4)
