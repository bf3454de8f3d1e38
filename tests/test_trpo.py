"""TRPO (`mjx_dacer.trpo`, `mjx-dacer train --algo trpo`).

The trust-region step against closed forms: conjugate gradient against a
direct solve, the tanh-Gaussian KL against a Monte-Carlo estimate with brax's
log-densities, and the whole step against the natural-gradient step computed
from the Gaussian's Fisher information by hand. Then the CLI: TRPO learns
Multi-goal, writes a run directory that `table` reads, refuses what it cannot
do, stops on SIGINT and resumes exactly, and trains Hopper-v5 (the real MJX
task) with params brax can load.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training import distribution

from mjx_dacer import agents, trpo
from mjx_dacer.cli import main
from mjx_dacer.config import ConfigError, load_config


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def sets(values):
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def trpo_config(**changes):
    """The multigoal preset under `--algo trpo`'s settings, as `mjx-dacer train --algo trpo --config multigoal`."""
    return load_config("multigoal", {**agents.defaults("trpo"), "algo": "trpo", **changes})


# ------------------------------------------------------------------ the trust-region step
def test_conjugate_gradient_solves_a_positive_definite_system(np_rng):
    m = np_rng.normal(size=(6, 6))
    a = m @ m.T + 0.5 * np.eye(6)
    b = np_rng.normal(size=6)
    expected = np.linalg.solve(a, b)
    matvec = lambda v: jnp.asarray(a, jnp.float32) @ v  # noqa: E731
    x = trpo.conjugate_gradient(matvec, jnp.asarray(b, jnp.float32), iterations=6)
    np.testing.assert_allclose(x, expected, rtol=2e-3, atol=2e-4)
    # Steps after convergence (a zero residual) change nothing and make no NaN.
    np.testing.assert_allclose(trpo.conjugate_gradient(matvec, jnp.asarray(b, jnp.float32), 20), expected,
                               rtol=2e-3, atol=2e-4)
    assert not np.any(trpo.conjugate_gradient(matvec, jnp.zeros(6), 3))


def test_gaussian_kl_matches_a_monte_carlo_estimate_of_the_tanh_gaussians():
    """KL(p || q) = E_p[log p(a) - log q(a)] with a drawn from p, the densities brax's (tanh included)."""
    dist = distribution.NormalTanhDistribution(event_size=3)
    old = jnp.array([[0.3, -0.5, 1.2, 0.1, -0.7, 0.4], [-1.0, 0.0, 0.5, 0.8, 0.2, -1.5]])
    new = old + jnp.array([[0.2, 0.1, -0.3, -0.2, 0.3, 0.1], [0.4, -0.2, 0.1, 0.1, -0.4, 0.5]])
    raw = jax.vmap(lambda k: dist.sample_no_postprocessing(old, k))(jax.random.split(jax.random.PRNGKey(0), 200_000))
    estimate = jnp.mean(dist.log_prob(old, raw) - dist.log_prob(new, raw), axis=0)
    kl = trpo.gaussian_kl(old, new, dist)
    assert kl.shape == (2,) and np.all(kl > 0.02)
    np.testing.assert_allclose(kl, estimate, rtol=0.05)
    assert np.all(trpo.gaussian_kl(old, old, dist) == 0)


def _state_free_policy(action_size=3):
    """A policy whose output (loc, raw scale) is its parameters, the same for every state; its KL and Fisher."""
    dist = distribution.NormalTanhDistribution(event_size=action_size)
    old = {"loc": jnp.array([0.2, -0.4, 0.9]), "rho": jnp.array([0.3, -0.8, 0.0])}
    outputs = lambda p: jnp.concatenate([p["loc"], p["rho"]])[None]  # noqa: E731
    kl = lambda p: jnp.mean(trpo.gaussian_kl(outputs(old), outputs(p), dist))  # noqa: E731
    # The Fisher information of N(loc, sigma^2), sigma = softplus(rho) + min_std, in closed form:
    # 1 / sigma^2 for each loc; (2 / sigma^2) softplus'(rho)^2 for each rho (the chain rule at KL's minimum).
    sigma = jax.nn.softplus(old["rho"]) + 0.001
    fisher = jnp.concatenate([1 / sigma ** 2, 2 * jax.nn.sigmoid(old["rho"]) ** 2 / sigma ** 2])
    return old, kl, fisher


def test_trust_region_step_is_the_natural_gradient_step_at_the_kl_radius():
    """With a linear surrogate g.(θ - θ_old) and no damping, the step is f β F^-1 g, β = sqrt(2δ / g.F^-1 g):
    the full step (f = 1) or the line search's first shrink; its KL is f^2 δ to second order."""
    old, kl, fisher = _state_free_policy()
    g = jnp.array([0.5, -1.0, 0.3, 0.8, 0.2, -0.6])
    flat = lambda p: jnp.concatenate([p["loc"], p["rho"]])  # noqa: E731
    surrogate = lambda p: g @ (flat(p) - flat(old))  # noqa: E731
    settings = trpo.TRPOSettings(max_kl=1e-4, cg_iterations=6, cg_damping=0.0)
    new, metrics = trpo.trust_region_step(old, surrogate, kl, settings)

    natural = g / fisher
    full = jnp.sqrt(2 * settings.max_kl / (g @ natural)) * natural
    fraction = float(metrics["step_fraction"])
    assert fraction in (1.0, pytest.approx(0.8)), metrics
    moved = jnp.concatenate([new["loc"] - old["loc"], new["rho"] - old["rho"]])
    np.testing.assert_allclose(moved, fraction * full, rtol=2e-3, atol=1e-7)
    assert float(metrics["kl"]) <= settings.max_kl
    np.testing.assert_allclose(metrics["kl"], fraction ** 2 * settings.max_kl, rtol=0.05)
    np.testing.assert_allclose(metrics["surrogate_gain"], g @ moved, rtol=1e-3)


@pytest.mark.parametrize("improves_below, expected_fraction", [(0.7, 0.8 ** 2), (0.8 ** 9 / 10, 0.0)])
def test_the_line_search_takes_the_first_candidate_that_improves_the_surrogate(improves_below, expected_fraction):
    """A curved surrogate g.d - c|d|^2 along the step d = f × full step improves only for f < improves_below:
    the line search takes the largest such f of 1, 0.8, 0.8^2, ..., 0.8^9, or stays put if there is none."""
    old, kl, fisher = _state_free_policy()
    g = jnp.array([0.5, -1.0, 0.3, 0.8, 0.2, -0.6])
    natural = g / fisher
    settings = trpo.TRPOSettings(cg_iterations=6, cg_damping=0.0)
    full = jnp.sqrt(2 * settings.max_kl / (g @ natural)) * natural
    c = (g @ full) / (improves_below * full @ full)  # f (g.full) - c f^2 |full|^2 > 0  <=>  f < improves_below

    def surrogate(p):
        d = jnp.concatenate([p["loc"] - old["loc"], p["rho"] - old["rho"]])
        return g @ d - c * d @ d

    new, metrics = trpo.trust_region_step(old, surrogate, kl, settings)
    moved = jnp.concatenate([new["loc"] - old["loc"], new["rho"] - old["rho"]])
    np.testing.assert_allclose(metrics["step_fraction"], expected_fraction, rtol=1e-5)
    np.testing.assert_allclose(moved, expected_fraction * full, rtol=2e-3, atol=1e-7)
    if expected_fraction == 0:
        jax.tree.map(np.testing.assert_array_equal, new, old)
        assert float(metrics["kl"]) == 0 and float(metrics["surrogate_gain"]) == 0


def test_observations_are_normalised_and_clipped():
    """An entry constant so far (std clipped to 1e-6 by brax) reaches the networks at +-observation_clip, not
    at 1e6 when it first moves; the others are brax's (x - mean) / std."""
    from brax.training.acme import running_statistics, specs

    seen = jnp.stack([jnp.array([1.0, 0.0]), jnp.array([3.0, 0.0])])  # entry 0: mean 2, std 1; entry 1: always 0
    stats = running_statistics.update(running_statistics.init_state(specs.Array((2,), jnp.dtype("float32"))), seen)
    settings = trpo.TRPOSettings()
    inputs = trpo.observation_preprocessor(settings)(jnp.array([[2.5, 5.0], [0.0, -1.0]]), stats)
    np.testing.assert_allclose(inputs, [[0.5, 10.0], [-2.0, -10.0]], rtol=1e-6)
    raw = trpo.observation_preprocessor(trpo.TRPOSettings(normalize_observations=False))
    np.testing.assert_array_equal(raw(jnp.array([[2.5, 5.0]]), stats), [[2.5, 5.0]])


# ------------------------------------------------------------------ config
def test_check_refuses_what_the_trainer_cannot_run_exactly():
    trpo.check(trpo_config())
    trpo.check(trpo_config(checkpoint_interval=2))  # TRPO checkpoints (unlike PPO)
    for changes, fragment in [({"warmup_steps": 100}, "warm-up"),
                              ({"total_iterations": 7, "eval_interval": 2}, "multiple of eval_interval"),
                              ({"num_envs": 30}, "multiple of num_envs")]:
        with pytest.raises(ConfigError, match=fragment):
            trpo.check(trpo_config(**changes))
    with pytest.raises(ConfigError, match="value_minibatch_transitions"):
        trpo.check(trpo_config(), trpo.TRPOSettings(value_minibatch_transitions=300))
    with pytest.raises(ConfigError, match="trpo is on-policy: it runs through its own trainer"):
        agents.make_agent(trpo_config(), 2, 2)


# ------------------------------------------------------------------ through the CLI
@pytest.fixture(scope="module")
def multigoal_run(tmp_path_factory):
    """`mjx-dacer train --algo trpo --config multigoal --seeds 2`, 20 iterations (40k env steps) of 2 x 16 networks."""
    out = tmp_path_factory.mktemp("trpo") / "run"
    result = cli("train", "--algo", "trpo", "--config", "multigoal", "--seeds", 2, "--out", out,
                 *sets({"total_iterations": 20, "eval_interval": 10, "eval_episodes": 10, "hidden_sizes": "16,16",
                        "critic_hidden_sizes": "16,16"}))
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_trpo_learns_multigoal_through_the_cli(multigoal_run):
    """Both seeds, trained in one program, reach a goal within a few steps after 20 iterations.

    Measured on a 2-core CPU (about 25 s in all, nearly all of it compiling):

        seed   untrained return (mean length)   iteration 10        iteration 20
        0      -6299.7 (91.1)                    -198.3 (15.6)       -145.9 (8.2 steps)
        1      -4679.7 (100: no goal reached)    -279.1 (100)        -131.4 (9.8 steps)

    An episode ends only at a goal or at the 100-step limit. Margins: each seed ends above
    -250 with episodes shorter than 15 steps, at least 1,000 above its untrained return.
    """
    out, result = multigoal_run
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    steps = trpo.TRPOSettings().transitions_per_iteration
    for seed in ("0", "1"):
        mine = [r for r in rows if r["seed"] == seed]
        assert [(int(r["iteration"]), int(r["env_steps"])) for r in mine] == [(i, i * steps) for i in (0, 10, 20)]
        untrained, trained = mine[0], mine[-1]
        assert float(trained["eval_return"]) > -250 and float(trained["eval_length"]) < 15, trained
        assert float(trained["eval_return"]) > float(untrained["eval_return"]) + 1000, (untrained, trained)
        # Every step stayed inside the trust region, and the line search took a step nearly every time.
        assert 0 < float(trained["kl"]) <= trpo.TRPOSettings().max_kl and float(trained["step_fraction"]) > 0.5
    # The seeds train together: one progress line per seed at each evaluation point, and one
    # timing.csv row per point for both (its run column blank, as for the shared program).
    assert [line.split(" env steps")[0] for line in result.stdout.splitlines() if line.startswith("[trpo seed")] == \
        [f"[trpo seed {s}] iter {i}/20" for i in (0, 10, 20) for s in (0, 1)]
    assert "2 seed(s) in one program" in result.stdout
    with (out / "timing.csv").open() as f:
        assert [(r["run"], r["iteration"]) for r in csv.DictReader(f)] == [("", "0"), ("", "10"), ("", "20")]


def test_a_seed_trains_on_the_same_data_alone_and_beside_others(tmp_path):
    """Seed s's keys depend on s alone: its untrained evaluation is the same to the bit, and its first
    iteration's rollout the same (the value fit to it, which the policy step does not touch, agrees).

    The policy step itself is not compared: conjugate gradient in float32 on an ill-conditioned Fisher
    matrix turns the last-bit differences of the vmapped program's sums into directions a few per cent
    apart, and the line search may then stop one candidate earlier or later (seen here: 0.64 vs 0.8)."""
    config = trpo_config(total_iterations=1, eval_interval=1, eval_episodes=4, hidden_sizes="16,16",
                         critic_hidden_sizes="16,16")
    both = trpo.run(config, tmp_path / "both", seeds=2, progress_fn=lambda line: None)
    alone = trpo.run(config, tmp_path / "alone", seeds=[1], progress_fn=lambda line: None)
    beside = [r for r in both if r["seed"] == 1]
    assert [r["iteration"] for r in beside] == [r["iteration"] for r in alone] == [0, 1]
    assert beside[0]["eval_return"] == alone[0]["eval_return"] and beside[0]["eval_length"] == alone[0]["eval_length"]
    np.testing.assert_allclose(beside[1]["value_loss"], alone[1]["value_loss"], rtol=1e-5)
    assert [r["eval_return"] for r in both if r["iteration"] == 0][0] != alone[0]["eval_return"]  # seed 0 differs


def test_the_run_directory_is_read_by_table_and_refuses_what_trpo_cannot_do(multigoal_run, tmp_path, capsys):
    out, _ = multigoal_run
    for name in ("config.yaml", "metrics.csv", "timing.csv", "summary.md", "curves.png", "trpo.yaml",
                 "trpo_params_seed0.pkl", "trpo_params_seed1.pkl"):
        assert (out / name).is_file(), name
    assert "algo: trpo" in (out / "config.yaml").read_text()
    assert "max_kl: 0.01" in (out / "trpo.yaml").read_text()
    table = cli("table", out, "--paper")
    assert table.returncode == 0, table.stderr
    assert "| MultiGoal-v0 | " in table.stdout and "| TRPO |" in table.stdout and "(2 seeds)" in table.stdout

    before = sorted(p.name for p in out.iterdir())
    target = tmp_path / "new"
    base = ["--algo", "trpo", "--config", "multigoal", "--out", target]
    for args, fragment in [(["train", "--resume", out], "the run is finished"),
                           (["train", "--resume", out, *sets({"lr_critic": 1e-3})], "keeps its config"),
                           (["train", "--resume", out, *sets({"total_iterations": 25})], "multiple of eval_interval"),
                           (["train", "--resume", out, "--seeds", 3], "has 2 seed(s)"),
                           (["export", out], "is a trpo run"),
                           (["sweep", *base, "--grid", "lr_critic=1e-4,3e-4"], "--grid"),
                           (["train", *base, "--on-divergence", "drop"], "--on-divergence"),
                           (["train", *base, *sets({"num_envs": 30})], "multiple of num_envs")]:
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("mjx-dacer: error: ") and fragment in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir()) == before and not target.exists()


def test_eval_evaluates_each_seed_from_the_newest_checkpoint(multigoal_run, tmp_path, capsys, monkeypatch):
    """`mjx-dacer eval` on a TRPO run: each seed's policy from the newest checkpoint (iteration 20), equal to its
    trpo_params pickle and acting as the README's recipe does; its deterministic episodes in the MJX task return
    about what the run's own last evaluation did (other initial states: -145.9 and -131.4 there, within 6 in a
    measured run)."""
    from brax.io import model
    from brax.training.agents.ppo import networks as ppo_networks

    from mjx_dacer import brax_policy
    from mjx_dacer.ppo import network_factory

    out, _ = multigoal_run
    networks = network_factory(trpo_config(hidden_sizes="16,16", critic_hidden_sizes="16,16"),
                               trpo.observation_preprocessor(trpo.TRPOSettings()))(2, 2)
    obs = np.random.default_rng(0).normal(scale=3.0, size=(6, 2)).astype(np.float32)
    for run in (0, 1):
        policy = brax_policy.load(out, run=run)
        assert (policy.iteration, policy.seed, policy.num_runs, policy.label) == (20, run, 2, "default")
        saved = model.load_params(str(out / f"trpo_params_seed{run}.pkl"))
        assert jax.tree.structure(saved) == jax.tree.structure(policy.params)
        for restored, pickled in zip(jax.tree.leaves(policy.params), jax.tree.leaves(saved)):
            np.testing.assert_array_equal(restored, pickled)
        recipe = ppo_networks.make_inference_fn(networks)(saved, deterministic=True)
        np.testing.assert_allclose(policy(obs), recipe(obs, jax.random.PRNGKey(1))[0], rtol=1e-6, atol=1e-6)

    # Every seed at once (eval --all-runs): the checkpoint is restored once, so all come from the same one.
    from mjx_dacer import on_policy
    from mjx_dacer.policy import load_policies

    restore, restores = on_policy.restore, []
    monkeypatch.setattr(on_policy, "restore", lambda *args: restores.append(args) or restore(*args))
    together = load_policies(out)
    assert len(restores) == 1 and [(p.run, p.iteration) for p in together] == [(0, 20), (1, 20)]
    for policy in together:
        saved = model.load_params(str(out / f"trpo_params_seed{policy.run}.pkl"))
        for restored, pickled in zip(jax.tree.leaves(policy.params), jax.tree.leaves(saved)):
            np.testing.assert_array_equal(restored, pickled)
    monkeypatch.undo()

    result = cli("eval", out, "--all-runs", "--episodes", 10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"MultiGoal-v0 trpo policy from {out}: iteration 20, 2 of 2 run(s)" in result.stdout
    with (out / "metrics.csv").open() as f:
        last = {r["seed"]: r for r in csv.DictReader(f) if r["iteration"] == "20"}
    rows = [line.split() for line in result.stdout.splitlines()[-2:]]  # run label seed backend episodes mean ...
    assert [row[:5] for row in rows] == [[s, "default", s, "mjx", "10"] for s in ("0", "1")], result.stdout
    for row in rows:
        mean, length = float(row[5]), float(row[-1])
        assert abs(mean - float(last[row[2]]["eval_return"])) < 40 and length < 15, (row, last[row[2]])

    gone = tmp_path / "no-checkpoints"  # the pickles alone do not say which iteration they are
    shutil.copytree(out, gone)
    shutil.rmtree(gone / "checkpoints")
    assert main(["eval", str(gone)]) == 2
    err = capsys.readouterr().err
    assert "no usable checkpoint" in err and "load with brax.io.model.load_params" in err and len(
        err.strip().splitlines()) == 1, err
    assert not (gone / "checkpoints").exists()  # eval reads; it makes nothing

    # The Multi-goal analysis: Fig. 3's table from the behaviour policy (the tanh-Gaussian sampled); Fig. 2's
    # field needs Q critics, which TRPO has not: refused before any rollout.
    assert main(["multigoal", str(out), "--trajectories", "8"]) == 0
    table = capsys.readouterr().out
    assert f"| {out} | trpo | 20 | (0, 0) |" in table, table
    assert main(["multigoal", str(out), "--field", str(tmp_path / "field.png")]) == 2
    assert "--field needs a run's Q critics" in capsys.readouterr().err and not (tmp_path / "field.png").exists()


def test_a_run_stopped_by_sigint_resumes_exactly_and_can_be_made_longer(multigoal_run, tmp_path):
    """The fixture's run again, stopped by SIGINT during its first epoch: it finishes that epoch, checkpoints it
    (with the policies) and exits 130 naming the resume command; `--resume` with a larger total_iterations then
    goes on. Its rows up to the fixture's end equal the uninterrupted run's, to the last digit."""
    reference, _ = multigoal_run
    out = tmp_path / "stopped"
    config = {"total_iterations": 20, "eval_interval": 10, "eval_episodes": 10, "hidden_sizes": "16,16",
              "critic_hidden_sizes": "16,16"}
    command = [sys.executable, "-m", "mjx_dacer.cli", "train", "--algo", "trpo", "--config", "multigoal", "--seeds",
               "2", "--out", str(out), *sets(config)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        for line in process.stdout:  # the untrained policies' evaluation: the first epoch is under way
            if line.startswith("[trpo seed 1] iter 0/20"):
                process.send_signal(signal.SIGINT)
                break
        _, err = process.communicate(timeout=900)
    assert process.returncode == 130, err
    assert f"SIGINT: stopped after epoch 1/2 (iteration 10), checkpointed; resume with: mjx-dacer train --resume " \
           f"{out}" in err, err
    assert (out / "trpo_params_seed0.pkl").is_file() and (out / "trpo_params_seed1.pkl").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1"]
    from mjx_dacer import brax_policy
    assert brax_policy.load(out, run=1).iteration == 10  # what eval evaluates: the checkpoint's policy

    result = cli("train", "--resume", out, *sets({"total_iterations": 30}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total_iterations 20 -> 30" in result.stdout and "resuming after epoch 1 (iteration 10)" in result.stdout
    with (out / "metrics.csv").open() as f, (reference / "metrics.csv").open() as g:
        resumed, uninterrupted = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert resumed[:len(uninterrupted)] == uninterrupted
    assert [(r["seed"], r["iteration"]) for r in resumed[len(uninterrupted):]] == [("0", "30"), ("1", "30")]
    with (out / "timing.csv").open() as f:
        assert [(r["iteration"], r["session"]) for r in csv.DictReader(f)] == [("0", "1"), ("10", "1"), ("20", "2"),
                                                                               ("30", "2")]
    assert "total_iterations: 30" in (out / "config.yaml").read_text()


def test_track_logs_each_seed_to_wandb_and_a_resume_continues_the_same_runs(tmp_path, fake_wandb, monkeypatch,
                                                                            capsys):
    """`--track` on an on-policy run: one W&B run per seed, named and grouped as the shared program's, each
    evaluation logged at step = iteration with the values of metrics.csv; `--resume` (here: made longer) continues
    the same W&B runs. Without wandb, `--track` stops before `--overwrite` removes the old run."""
    out = tmp_path / "tracked"
    tiny = sets({"total_iterations": 1, "eval_interval": 1, "eval_episodes": 2, "hidden_sizes": "8,8",
                 "critic_hidden_sizes": "8,8"})
    assert main(["train", "--algo", "trpo", "--config", "multigoal", "--seeds", "2", "--out", str(out), "--track",
                 "proj", *tiny]) == 0
    runs = fake_wandb.runs
    assert [r.kwargs["name"] for r in runs] == ["tracked/default/seed0", "tracked/default/seed1"]
    assert all(r.finished for r in runs) and runs[1].kwargs["tags"] == ["MultiGoal-v0", "trpo"]
    assert runs[1].kwargs["config"]["run"]["prng_seed"] == 1
    with (out / "metrics.csv").open() as f:
        rows = {(r["seed"], r["iteration"]): r for r in csv.DictReader(f)}
    for seed, run in enumerate(runs):
        assert [step for step, _ in run.logged] == [0, 1]
        step, data = run.logged[1]
        assert data["eval/return"] == pytest.approx(float(rows[(str(seed), "1")]["eval_return"]), rel=1e-6)
        assert data["other/kl"] == pytest.approx(float(rows[(str(seed), "1")]["kl"]), rel=1e-6)
        assert data["train/env_steps"] == trpo.TRPOSettings().transitions_per_iteration

    assert main(["train", "--resume", str(out), "--track", "proj", *sets({"total_iterations": 2})]) == 0
    assert [r.kwargs["id"] for r in runs[2:]] == [r.kwargs["id"] for r in runs[:2]] and all(r.kwargs["id"] for r in runs)
    assert [[step for step, _ in r.logged] for r in runs[2:]] == [[2], [2]]

    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails
    assert main(["train", "--algo", "trpo", "--config", "multigoal", "--out", str(out), "--overwrite", "--track",
                 "proj", *tiny]) == 2
    assert "--track needs wandb" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_trpo_trains_hopper_and_brax_loads_its_policy(tmp_path):
    """The real MJX task through the CLI (about 2 minutes on 2 CPU cores, nearly all compiling)."""
    out = tmp_path / "hopper"
    result = cli("train", "--algo", "trpo", "--env", "Hopper-v5", "--out", out,
                 *sets({"total_iterations": 1, "eval_interval": 1, "eval_episodes": 2, "hidden_sizes": "8,8",
                        "critic_hidden_sizes": "8,8"}))
    assert result.returncode == 0, result.stdout + result.stderr
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["env_steps"]) for r in rows] == [0, 2000]
    # A Hopper episode earns its healthy reward (1 per step) until it falls: positive and finite.
    assert all(0 < float(r["eval_return"]) < 1000 and 0 < float(r["eval_length"]) <= 1000 for r in rows), rows
    assert 0 < float(rows[1]["kl"]) <= 0.01

    from brax.io import model
    from brax.training.agents.ppo import networks as ppo_networks

    from mjx_dacer.ppo import network_factory

    config = load_config("hopper", {**agents.defaults("trpo"), "algo": "trpo", "hidden_sizes": "8,8",
                                    "critic_hidden_sizes": "8,8"})
    networks = network_factory(config, trpo.observation_preprocessor(trpo.TRPOSettings()))(11, 3)  # README's recipe
    params = model.load_params(str(out / "trpo_params_seed0.pkl"))
    policy = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    action, _ = policy(jnp.zeros((4, 11)), jax.random.PRNGKey(0))
    assert action.shape == (4, 3) and np.all(np.abs(action) <= 1)

    # mjx-dacer eval runs it in Gymnasium's C-MuJoCo Hopper-v5 (its MJX backend is the Multi-goal test's; on
    # Hopper it would add a minute of compiling).
    result = cli("eval", out, "--backend", "gymnasium", "--episodes", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hopper-v5 trpo policy" in result.stdout and "iteration 1," in result.stdout
    row = result.stdout.splitlines()[-1]
    assert row.startswith("gymnasium") and 0 < float(row.split()[2]) < 1000, result.stdout  # falls, ~1 per step
