"""The Multi-goal multimodality number (`mjx_dacer.multigoal`, `mjx-dacer multigoal`) on policies whose
answer is known in closed form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_dacer import multigoal


class Scripted:
    """A stand-in for `Policy`: `act(params, obs (N, 2), key) -> (N, 2)`."""

    params = None

    def __init__(self, fn):
        self.fn = fn

    def act(self, params, obs, key):
        return self.fn(obs, key)


def test_a_policy_that_always_goes_right_reaches_one_goal():
    right = Scripted(lambda obs, key: jnp.broadcast_to(jnp.array([1.0, 0.0]), obs.shape))
    paths, goals = multigoal.rollouts(right, trajectories=20, steps=12)
    assert paths.shape == (5, 20, 13, 2) and goals.shape == (5, 20)
    assert np.all(goals == 0)  # GOALS[0] = (5, 0)
    # It moves 1 per step; at x = 4 the distance is 1, not below the radius: it reaches the goal at
    # x = 5 after 5 steps and stays there.
    np.testing.assert_allclose(paths[0, 0, 5], [5.0, 0.0])
    np.testing.assert_allclose(paths[0, 0, -1], [5.0, 0.0])
    assert multigoal.multimodality(goals) == [{"goals_reached": 1, "goal_entropy": 0.0, "none": 0.0}] * 5


def test_a_coin_flip_between_two_goals_has_entropy_log_2_and_a_still_policy_reaches_none():
    def coin(obs, key):
        # Even rows go right, odd rows go left, every step: half the trajectories reach each side's goal.
        side = jnp.where(jnp.arange(obs.shape[0]) % 2 == 0, 1.0, -1.0)
        return jnp.stack([side, jnp.zeros_like(side)], axis=-1)

    _, goals = multigoal.rollouts(Scripted(coin), trajectories=100, steps=12)
    stats = multigoal.multimodality(goals)
    assert all(s["goals_reached"] == 2 and s["none"] == 0.0 for s in stats)
    assert all(s["goal_entropy"] == pytest.approx(math.log(2)) for s in stats)
    _, still = multigoal.rollouts(Scripted(lambda obs, key: jnp.zeros_like(obs)), trajectories=10, steps=5)
    assert multigoal.multimodality(still)[0] == {"goals_reached": 0, "goal_entropy": 0.0, "none": 1.0}


def test_the_5_percent_rule_and_the_entropy_against_a_direct_count():
    rng = np.random.default_rng(0)
    goals = rng.choice([-1, 0, 1, 2, 3], p=[0.1, 0.5, 0.36, 0.03, 0.01], size=(1, 1000))
    [m] = multigoal.multimodality(goals)
    counts = np.bincount(goals[goals >= 0], minlength=4)
    p = counts / counts.sum()
    assert m["goals_reached"] == int(np.sum(counts >= 50))
    assert m["goal_entropy"] == pytest.approx(-np.sum(p[p > 0] * np.log(p[p > 0])))
    assert m["none"] == pytest.approx(np.mean(goals < 0))


class ScriptedAgent:
    """A stand-in for an `Agent`: behaviour actions a = (+-1, 0) with a fair coin, Q(s, a) = -|s + a|^2."""

    def behaviour_action(self, state, obs, key, hparams):
        sign = jnp.where(jax.random.bernoulli(key, 0.5, obs.shape[:1]), 1.0, -1.0)
        return jnp.stack([sign, jnp.zeros_like(sign)], axis=-1)

    def action_value(self, state, obs, action):
        return -jnp.sum((obs + action) ** 2, axis=-1)


def test_value_field_averages_the_critics_over_behaviour_actions_on_the_plane_grid():
    xs, values, actions = multigoal.value_field(ScriptedAgent(), None, None, grid=5, samples=400)
    np.testing.assert_allclose(xs, [-7, -3.5, 0, 3.5, 7])
    assert values.shape == (5, 5) and actions.shape == (5, 5, 400, 2)
    # E over the coin of -((x +- 1)^2 + y^2) = -(x^2 + 1 + y^2), at (x = xs[j], y = xs[i]).
    x, y = np.meshgrid(xs, xs)
    coin = np.mean(actions[..., 0] > 0, axis=-1)  # the sampled fraction of +1 at each state
    expected = -(x**2 + y**2 + 1) - 2 * x * (2 * coin - 1)
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert np.all(np.abs(coin - 0.5) < 0.1)
    assert values[2, 0] == pytest.approx(-(49 + 1), abs=2 * 7 * 0.2)  # (x, y) = (-7, 0)


def test_cli_prints_the_table_and_draws_the_figure_for_trained_runs(tmp_path):
    import subprocess
    import sys

    import mjx_dacer
    from mjx_dacer import trained
    from mjx_dacer.config import load_config
    from mjx_dacer.errors import CheckpointError
    from mjx_dacer.policy import read_artifact

    config = load_config("multigoal").replace(
        total_iterations=2, eval_interval=2, warmup_steps=20, num_envs=10, buffer_capacity=200, batch_size=8,
        eval_episodes=1, hidden_sizes=[8, 8], critic_hidden_sizes=[8, 8], diffusion_steps=2, entropy_samples=6)
    mjx_dacer.run(config, tmp_path / "dacer", progress_fn=lambda _: None)
    out = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "multigoal", str(tmp_path / "dacer"),
                          "--trajectories", "10", "--out", str(tmp_path / "mm.md"), "--figure",
                          str(tmp_path / "fig3.png"), "--field", str(tmp_path / "fig2.png")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [line for line in (tmp_path / "mm.md").read_text().splitlines() if line.startswith(f"| {tmp_path}")]
    assert len(rows) == 5 and all("| dacer | 2 |" in r for r in rows)
    assert (tmp_path / "fig3.png").stat().st_size > 10_000
    assert (tmp_path / "fig2.png").stat().st_size > 10_000
    # Fig. 2 read the critics from the newest checkpoint: the same policy as policy.msgpack holds.
    loaded = trained.load(tmp_path / "dacer")
    artifact = read_artifact(tmp_path / "dacer")
    assert loaded.iteration == artifact["iteration"] == config.total_iterations  # counted after the warm-up
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        loaded.state.policy_params, artifact["policy_params"])
    assert all(jax.tree.leaves(same))
    assert loaded.agent.action_value(loaded.run(0)[0], jnp.zeros((3, 2)), jnp.zeros((3, 2))).shape == (3,)
    with pytest.raises(CheckpointError, match="runs 0..0"):
        loaded.run(1)
    missing = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "multigoal", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "mjx-dacer: error:" in missing.stderr
