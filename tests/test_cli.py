"""The `mjx-dacer` command line, run as a real subprocess."""

import os
import subprocess
import sys

import pytest

from pinned import assert_pinned

TINY_SETS = [
    "total_iterations=4", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=200",
    "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
    "entropy_samples=6", "alpha_update_interval=2",
]


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "mjx_dacer.cli", *args], capture_output=True, text=True, timeout=900,
        env={**os.environ, **(env or {})},
    )


def sets(*extra):
    return [a for kv in [*TINY_SETS, *extra] for a in ("--set", kv)]


def test_help_lists_every_command():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("train", "sweep", "eval", "ablate", "multigoal", "table", "plot", "bench"):
        assert command in out.stdout
    for command in ("train", "sweep", "ablate"):
        sub = cli(command, "--help")
        assert sub.returncode == 0 and "--seeds" in sub.stdout and "--set" in sub.stdout
    sub = cli("train", "--help")
    assert "--algo" in sub.stdout and "lr_alpha (traced, default 0.03)" in sub.stdout  # keys from the schema
    sub = cli("eval", "--help")
    assert sub.returncode == 0 and "--backend" in sub.stdout and "--episodes" in sub.stdout
    sub = cli("bench", "--help")
    assert sub.returncode == 0 and all(name in sub.stdout for name in ("gmm", "envs", "train"))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--env", "Hoper-v5"], "did you mean 'Hopper-v5'"),
        (["train", "--config", "quikstart"], "did you mean 'quickstart'"),
        (["train", "--config", "quickstart", "--set", "lr_actor=-1"], "lr_actor"),
        (["train", "--config", "quickstart", "--set", "batch_size=10", "--set", "buffer_capacity=5"], "batch_size"),
        (["train", "--config", "quickstart", "--set", "colour=red"], "unknown config key 'colour'"),
        (["train", "--config", "quickstart", "--set", "batch_size=abc"], "must be an integer"),
        (["train", "--config", "quickstart", "--set", "num_envs=0"], "'num_envs' must be >= 1"),
        (["train", "--config", "quickstart", "--set", "diffusion_steps=0"], "'diffusion_steps' must be >= 1"),
        (["train", "--config", "quickstart", "--set", "gamma=1.5"], "'gamma' must lie in [0, 1]"),
        (["train", "--config", "quickstart", "--set", "buffer_capacity=300", "--set", "warmup_steps=500"],
         "warmup_steps (500) is larger than buffer_capacity"),
        (["train", "--config", "quickstart", "--seeds", "0"], "--seeds must be >= 1"),
        (["train", "--config", "no/such/file.yaml"], "file.yaml"),
        (["sweep", "--config", "quickstart", "--grid", "hidden_sizes=8,16"], "cannot be swept"),
        (["sweep", "--config", "quickstart", "--grid", "lr_actor=1e-3", "--grid", "lr_actor=3e-4"], "given twice"),
        (["sweep", "--config", "quickstart", "--grid", "lr_actor"], "--grid 'lr_actor' is not of the form"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment, tmp_path):
    out = cli(*args, "--out", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr
    assert fragment.lower() in out.stderr.lower()
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("mjx-dacer: error: ") and out.stderr[18] not in "\"'", out.stderr  # the message, not its repr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_train_writes_the_run_directory_and_refuses_to_overwrite_it(tmp_path):
    run = tmp_path / "run"
    out = cli("train", "--config", "multigoal", "--seeds", "2", *sets(), "--out", str(run))
    assert out.returncode == 0, out.stderr
    assert "env steps/s" in out.stdout and "ETA" in out.stdout
    for name in ("config.yaml", "metrics.csv", "curves.png", "summary.md"):
        assert (run / name).is_file(), name
    assert any((run / "tb").rglob("events.out.tfevents*"))
    lines = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3 * 2  # header + 3 eval points (end of warm-up, 2 after it) x 2 seeds
    assert_pinned(run / "metrics.csv", "multigoal_tiny_2seeds")
    summary = (run / "summary.md").read_text()
    assert "+-" in summary and "| default | 2 |" in summary

    again = cli("train", "--config", "multigoal", *sets(), "--out", str(run))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 7  # untouched


def test_sweep_runs_every_grid_point_and_exports_each_policy(tmp_path):
    import numpy as np

    from mjx_dacer import load_policy
    from mjx_dacer.policy import read_artifact

    run = tmp_path / "sweep"
    out = cli("sweep", "--config", "multigoal", "--grid", "lr_actor=1e-4,3e-4", "--grid", "noise_scale=0.05,0.2",
              "--seeds", "1", *sets(), "--set", "total_iterations=2", "--out", str(run))
    assert out.returncode == 0, out.stderr
    csv = (run / "metrics.csv").read_text()
    for label in ("lr_actor=0.0001", "lr_actor=0.0003", "noise_scale=0.05", "noise_scale=0.2"):
        assert label in csv, label
    artifact = read_artifact(run)
    assert artifact["num_runs"] == 4
    # Each run keeps its own lambda (Eq. 16), in the order of the labels.
    expected = [0.05 if "noise_scale=0.05" in label else 0.2 for label in artifact["labels"]]
    np.testing.assert_allclose(artifact["noise_scale"], expected, rtol=1e-6)
    policy = load_policy(run, run=3)
    action = policy(np.zeros((5, 2), np.float32))
    assert action.shape == (5, 2) and np.all(np.abs(action) <= 1)


def test_seeds_are_sharded_over_local_devices(tmp_path):
    """With two (forced) host devices the vmapped run axis is split across them."""
    code = (
        "import jax\n"
        "from mjx_dacer.config import load_config, parse_overrides\n"
        "from mjx_dacer.rundir import RunSpec\nfrom mjx_dacer.runner import Runner\n"
        f"cfg = load_config('multigoal', parse_overrides({TINY_SETS!r}))\n"
        f"r = Runner(cfg, RunSpec(grid=({{}},), seeds=(0, 1)), {str(tmp_path)!r}, progress=lambda s: None)\n"
        "ts = r.run()\n"
        "print(len(jax.devices()), len(ts.agent.log_alpha.sharding.device_set))\n"
        "r = Runner(cfg, RunSpec(grid=({},), seeds=(0, 1)), " + repr(str(tmp_path)) + ", progress=lambda s: None)\n"
        "ts = r.run(resume=True)  # a finished run: restores its checkpoint, shards it and runs nothing\n"
        "print(len(ts.agent.log_alpha.sharding.device_set))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["2", "2", "2"]


def assert_one_line_error(out, fragment):
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("mjx-dacer: error: ") and fragment in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


def test_out_pointing_at_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    out = cli("train", "--config", "quickstart", "--out", str(target))
    assert_one_line_error(out, "is a file, not a directory")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("args, fragment", [
    (["bench", "envs", "--envs", "Foo"], "unknown environment 'Foo'"),
    (["bench", "train", "--envs", "Hopper-v9"], "Hopper-v5"),
])
def test_benchmark_task_names_are_checked(args, fragment):
    assert_one_line_error(cli(*args), fragment)


def test_resume_with_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--config", "multigoal", *sets(), "--out", str(run)).returncode == 0
    for step in (run / "checkpoints").iterdir():
        for f in step.rglob("*"):
            if f.is_file() and f.stat().st_size > 64:
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    csv_before = (run / "metrics.csv").read_text()
    out = cli("train", "--resume", str(run))
    assert_one_line_error(out, "no usable checkpoint")
    assert (run / "metrics.csv").read_text() == csv_before  # nothing rewritten
