"""PPO through brax's trainer (`mjx_dacer.ppo`, `mjx-dacer train --algo ppo`) on Multi-goal.

What a PPO run directory holds and how `table` reads it, that PPO learns
the task, and that the options it cannot honour are refused before anything
is written. Each brax training run compiles its own programs (about 10-20 s
per seed on 2 CPU cores), so the runs here are few and short.
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from mjx_dacer import agents, ppo
from mjx_dacer.cli import main
from mjx_dacer.config import ConfigError, load_config

TINY = {"total_iterations": 2, "eval_interval": 1, "eval_episodes": 2, "hidden_sizes": "8,8",
        "critic_hidden_sizes": "8,8"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def sets(values):
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def assert_refused(capsys, args, fragment):
    """`mjx-dacer ARGS` (in this process: the same `main` as the command) exits 2 with one line on stderr."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("mjx-dacer: error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1, err


def ppo_config(**changes):
    """The multigoal preset under `--algo ppo`'s settings, as `mjx-dacer train --algo ppo --config multigoal`."""
    return load_config("multigoal", {**agents.defaults("ppo"), "algo": "ppo", **changes})


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`mjx-dacer train --algo ppo --config multigoal` with TINY settings, one seed."""
    out = tmp_path_factory.mktemp("ppo") / "run"
    result = cli("train", "--algo", "ppo", "--config", "multigoal", *sets(TINY), "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_cli_writes_a_run_directory_the_readers_understand(cli_run):
    out, result = cli_run
    for name in ("config.yaml", "metrics.csv", "summary.md", "curves.png", "ppo.yaml", "ppo_params_seed0.pkl"):
        assert (out / name).is_file(), name
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    for column in ("run", "label", "seed", "iteration", "env_steps", "eval_return", "eval_return_std"):
        assert column in rows[0], column
    # One row per evaluation: iteration 0 and every eval_interval iterations; each iteration
    # is one network update on transitions_per_iteration fresh transitions, with no warm-up.
    steps = ppo.PPOSettings().transitions_per_iteration
    assert [(int(r["iteration"]), int(r["env_steps"])) for r in rows] == [(i, i * steps) for i in (0, 1, 2)]
    assert {r["seed"] for r in rows} == {"0"} and {r["label"] for r in rows} == {"default"}
    assert all(float(r["eval_return"]) < 0 for r in rows)  # every Multi-goal step costs something
    assert "algo: ppo" in (out / "config.yaml").read_text()
    # One progress line per evaluation.
    assert [line.split("|")[0].split(" env steps")[0] for line in result.stdout.splitlines()
            if line.startswith("[ppo seed")] == [f"[ppo seed 0] iter {i}/2" for i in (0, 1, 2)]

    table = cli("table", out, "--paper")
    assert table.returncode == 0, table.stderr
    assert "| MultiGoal-v0 | " in table.stdout and "| PPO |" in table.stdout and "(1 seed)" in table.stdout
    # timing.csv: the seed's own clock at each evaluation (brax compiles inside: no compile column).
    with (out / "timing.csv").open() as f:
        timing = list(csv.DictReader(f))
    assert [(r["run"], r["iteration"], r["compile_seconds"]) for r in timing] == [("0", str(i), "") for i in (0, 1, 2)]
    walls = [float(r["wall_seconds"]) for r in timing]
    assert walls == sorted(walls) and walls[0] > 0
    assert "Wall clock: " in (out / "summary.md").read_text()


def test_the_saved_params_load_with_the_readme_recipe(cli_run):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from brax.io import model
    from brax.training.agents.ppo import networks as ppo_networks

    out, _ = cli_run
    params = model.load_params(str(out / "ppo_params_seed0.pkl"))
    normalizer = params[0]
    assert int(normalizer.count) == 2 * ppo.PPOSettings().transitions_per_iteration  # both iterations' observations
    networks = ppo.network_factory(ppo_config(**TINY), ppo.observation_preprocessor(ppo.PPOSettings()))(2, 2)
    policy = ppo_networks.make_inference_fn(networks)(params, deterministic=True)
    action, _ = policy(jnp.zeros((4, 2)), jax.random.PRNGKey(0))
    assert action.shape == (4, 2) and np.all(np.abs(action) <= 1)
    assert "observation_clip: null" in (out / "ppo.yaml").read_text()


def test_eval_evaluates_the_saved_policy_as_brax_loads_it(cli_run, tmp_path, capsys):
    """`mjx-dacer eval` on a PPO run: seed 0's ppo_params pickle (iteration 2: brax saves it at the end), acting
    as the README's recipe does (`mjx_dacer.load_policy` gives it too); a run directory without it, or with it
    damaged, gets one line and exit 2."""
    import shutil

    import jax
    import numpy as np
    from brax.io import model
    from brax.training.agents.ppo import networks as ppo_networks

    import mjx_dacer
    from mjx_dacer import brax_policy

    out, _ = cli_run
    policy = mjx_dacer.load_policy(out)  # the one loader of every algorithm's runs
    assert isinstance(policy, brax_policy.BraxPolicy)
    assert (policy.iteration, policy.seed, policy.num_runs, policy.config.algo) == (2, 0, 1, "ppo")
    saved = model.load_params(str(out / "ppo_params_seed0.pkl"))
    networks = ppo.network_factory(ppo_config(**TINY), ppo.observation_preprocessor(ppo.PPOSettings()))(2, 2)
    recipe = ppo_networks.make_inference_fn(networks)(saved, deterministic=True)
    obs = np.random.default_rng(0).normal(scale=3.0, size=(6, 2)).astype(np.float32)
    np.testing.assert_allclose(policy(obs), recipe(obs, jax.random.PRNGKey(1))[0], rtol=1e-6, atol=1e-6)

    assert main(["eval", str(out), "--episodes", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"MultiGoal-v0 ppo policy from {out}: iteration 2, 1 of 1 run(s); backends: mjx" in printed
    row = printed.splitlines()[-1].split()  # backend episodes mean +- std min max length
    assert row[:2] == ["mjx", "3"] and float(row[2]) < 0 and 0 < float(row[-1]) <= 100, printed

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "ppo_params_seed0.pkl").write_bytes(b"not a pickle")
    assert_refused(capsys, ["eval", broken], "ppo_params_seed0.pkl is damaged")
    (broken / "ppo_params_seed0.pkl").unlink()
    assert_refused(capsys, ["eval", broken], "has no ppo_params_seed0.pkl: seed 0's training did not finish")
    assert_refused(capsys, ["eval", out, "--run", 1], "run 1 does not exist")


def test_refused_options_exit_2_and_write_nothing(cli_run, tmp_path, capsys):
    out, _ = cli_run
    before = sorted(p.name for p in out.iterdir())
    assert_refused(capsys, ["train", "--resume", out], "the run is finished (all 1 seed(s))")
    assert_refused(capsys, ["train", "--resume", out, *sets({"total_iterations": 4})], "cannot train a run longer")
    assert_refused(capsys, ["export", out], "is a ppo run")
    assert sorted(p.name for p in out.iterdir()) == before

    target = tmp_path / "new"
    base = ["--algo", "ppo", "--config", "multigoal", "--out", target]
    assert_refused(capsys, ["sweep", *base, "--grid", "lr_actor=1e-4,3e-4"], "--grid")
    assert_refused(capsys, ["train", *base, "--on-divergence", "drop"], "--on-divergence")
    assert_refused(capsys, ["train", *base, *sets({"checkpoint_interval": 2})], "checkpoint_interval")
    assert not target.exists()


def test_ctrl_c_keeps_the_finished_seeds_and_resume_ends_as_an_uninterrupted_run(cli_run, tmp_path, capsys,
                                                                                   monkeypatch):
    """A SIGINT during seed 1's training (`mjx-dacer train --seeds 2`, in this process) stops the run at once:
    exit 130, the resume command in one line. `--resume` keeps seed 0 (its pickle untouched) and trains seed 1
    from its start: every row equals the uninterrupted run's (seed 0: `cli_run`, the same config; seed 1: the
    rows it wrote before the stop, as brax's trainer depends on the seed alone). A finished run is refused."""
    import os
    import signal

    from mjx_dacer import on_policy, report

    reference, _ = cli_run
    out = tmp_path / "run"
    line = on_policy.progress_line

    def interrupt_at_seed_1_iteration_1(algo, row, *args):
        if (row["seed"], row["iteration"]) == (1, 1):
            os.kill(os.getpid(), signal.SIGINT)
        return line(algo, row, *args)

    monkeypatch.setattr(on_policy, "progress_line", interrupt_at_seed_1_iteration_1)
    command = ["train", "--algo", "ppo", "--config", "multigoal", *sets(TINY), "--seeds", "2", "--out", str(out)]
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "SIGINT: stopped while training seed 1; 1 of 2 seed(s) finished and kept" in err, err
    assert err.strip().endswith(f"resume with: mjx-dacer train --resume {out}"), err
    stopped = report.read_rows(out / "metrics.csv")
    assert [(r["seed"], r["iteration"]) for r in stopped] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    seed0 = (out / "ppo_params_seed0.pkl").read_bytes()
    assert not (out / "ppo_params_seed1.pkl").exists()
    # The results so far: seed 0's (Table 1's metric: its best return in the last 10%, iteration 2), seed 1
    # named as still training rather than averaged in at its untrained return.
    assert f"| default | 1 | {stopped[2]['eval_return']:.1f} |" in (out / "summary.md").read_text()
    assert "Not yet in the table (still training): seed 1 (default) at iteration 1." in (out / "summary.md").read_text()
    assert main(["table", str(out)]) == 0
    assert f"{stopped[2]['eval_return']:.1f} +- 0.0 (1 seed; 1 still training)" in capsys.readouterr().out

    monkeypatch.setattr(on_policy, "progress_line", line)
    assert main(["train", "--resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resuming: seed(s) 0 finished (kept), seed(s) 1 train from their start" in printed, printed
    assert [ln.split(" env steps")[0] for ln in printed.splitlines() if ln.startswith("[ppo seed")] == \
        [f"[ppo seed 1] iter {i}/2" for i in (0, 1, 2)]
    rows = report.read_rows(out / "metrics.csv")
    assert [(r["seed"], r["iteration"]) for r in rows] == [(s, i) for s in (0, 1) for i in (0, 1, 2)]
    assert rows[:3] == report.read_rows(reference / "metrics.csv")
    assert rows[:5] == stopped  # seed 1 again, from its start, as before the stop
    assert (out / "ppo_params_seed0.pkl").read_bytes() == seed0 and (out / "ppo_params_seed1.pkl").is_file()
    timing = report.read_rows(out / "timing.csv")
    assert [(t["run"], t["iteration"], t["session"]) for t in timing] == \
        [(0, i, 1) for i in (0, 1, 2)] + [(1, i, 2) for i in (0, 1, 2)]
    assert "2 sessions" in (out / "summary.md").read_text()
    assert_refused(capsys, ["train", "--resume", out], "the run is finished (all 2 seed(s))")


def test_make_agent_refuses_ppo():
    with pytest.raises(ConfigError, match="ppo is on-policy: it runs through its own trainer"):
        agents.make_agent(ppo_config(), 2, 2)


def test_check_refuses_what_brax_cannot_run_exactly():
    settings = ppo.PPOSettings()
    ppo.check(ppo_config(), settings)
    for changes, fragment in [({"warmup_steps": 100}, "warm-up"),
                              ({"total_iterations": 7, "eval_interval": 2}, "multiple of eval_interval"),
                              ({"num_envs": 30}, "multiple of num_envs")]:
        with pytest.raises(ConfigError, match=fragment):
            ppo.check(ppo_config(**changes), settings)


def test_the_networks_see_the_normalised_observations_clipped():
    """brax's trainer hands the networks its unclipped normaliser; `network_factory` with an
    `observation_preprocessor` puts PPOSettings.observation_clip in its place. An entry constant so far
    (std at brax's floor, 1e-6) that moves to 10 normalises to 1e7 and must reach the networks as 10."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from brax.training.acme import running_statistics, specs

    stats = running_statistics.init_state(specs.Array((3,), jnp.dtype("float32")))  # mean 0, std 1
    constant_so_far = stats.replace(std=jnp.array([1e-6, 1.0, 1.0]))
    observation = jnp.array([[10.0, 0.5, -0.5]])
    clipped = ppo.network_factory(ppo_config(), ppo.observation_preprocessor(ppo.PPOSettings(observation_clip=10)))
    unclipped = ppo.network_factory(ppo_config(), ppo.observation_preprocessor(ppo.PPOSettings()))  # brax's
    outputs = {}
    for name, factory in (("clipped", clipped), ("unclipped", unclipped)):
        networks = factory(3, 2, preprocess_observations_fn=running_statistics.normalize)  # what brax passes
        params = networks.policy_network.init(jax.random.PRNGKey(0))
        outputs[name] = [networks.policy_network.apply(s, params, observation) for s in (constant_so_far, stats)]
    # Clipped, the entry at 1e7 acts as the entry at 10 with unit statistics; unclipped, it does not.
    np.testing.assert_array_equal(*outputs["clipped"])
    assert np.abs(outputs["unclipped"][0] - outputs["unclipped"][1]).max() > 1
    assert ppo.observation_preprocessor(ppo.PPOSettings(normalize_observations=False))(observation, stats) is \
        observation


def test_brax_arguments_give_exact_epochs():
    config = ppo_config(total_iterations=30, eval_interval=10, num_envs=20, gamma=0.97, reward_scale=0.5,
                        lr_actor=3e-4, eval_episodes=7)
    args = ppo.brax_arguments(config, ppo.PPOSettings(), episode_length=100)
    per_iteration = args["batch_size"] * args["num_minibatches"] * args["unroll_length"]
    assert per_iteration == 2_000 and args["batch_size"] * args["unroll_length"] == 2_000  # the paper's batch
    assert args["num_timesteps"] == 30 * per_iteration and args["num_evals"] == 4
    # brax's training steps per epoch: ceil(num_timesteps / ((num_evals - 1) * per_iteration)) = eval_interval.
    assert -(-args["num_timesteps"] // ((args["num_evals"] - 1) * per_iteration)) == 10
    assert (args["discounting"], args["reward_scaling"], args["learning_rate"], args["num_eval_envs"]) == \
        (0.97, 0.5, 3e-4, 7)
    assert args["deterministic_eval"] and args["episode_length"] == 100


def test_ppo_learns_multigoal(tmp_path):
    """PPO reaches a goal within a few steps after 40 iterations (80k env steps), on 2 seeds.

    Measured on a 2-core CPU (about 45 s for both seeds, nearly all of it compiling),
    with 2 x 64 networks and learning rate 3e-4, the preset's other settings:

        seed   untrained return (mean episode length)   after 40 iterations
        0      -8630.4 (100: no goal reached)            -119.4 (7.8 steps)
        1      -1007.0 (45.6)                            -123.2 (8.4 steps)

    An episode ends only at a goal or at the 100-step limit, so the trained policies
    reach a goal in every episode, in under 10 steps. Margins: each seed ends above
    -200 with episodes shorter than 15 steps, at least 500 above its untrained return.
    """
    config = ppo_config(total_iterations=40, eval_interval=40, hidden_sizes="64,64", critic_hidden_sizes="64,64",
                        lr_actor=3e-4)
    rows = ppo.run(config, tmp_path / "run", seeds=2, progress_fn=lambda line: None)
    by_seed = {s: sorted((r for r in rows if r["seed"] == s), key=lambda r: r["iteration"]) for s in (0, 1)}
    for seed, (untrained, trained) in by_seed.items():
        assert (untrained["iteration"], trained["iteration"]) == (0, 40)
        assert trained["env_steps"] == 40 * ppo.PPOSettings().transitions_per_iteration
        assert trained["eval_return"] > -200 and trained["eval_length"] < 15, (seed, trained)
        assert trained["eval_return"] > untrained["eval_return"] + 500, (seed, untrained, trained)
