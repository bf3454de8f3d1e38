"""The `mjx-dacer` command line, run as a real subprocess."""

import os
import re
import subprocess
import sys

import pytest

from pinned import assert_pinned

from mjx_dacer import report

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
        (["sweep", "--config", "quickstart", "--grid", "noise_scale=0.1,-1"],
         "--grid point noise_scale=-1: config key 'noise_scale' must be a finite number >= 0"),
        (["train", "--config", "quickstart", "--set", "noise_scale=nan"], "must be a finite number"),
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
    # The warm-up chunk says what it is; its ETA waits for a training chunk's speed.
    first = next(line for line in out.stdout.splitlines() if line.startswith("[1/3]"))
    assert "warm-up: random actions" in first and "untrained policy" in first and "updates/s" not in first
    assert "alpha" not in first and "ETA after the first training chunk" in first, first
    # Checkpoint lines: the first one, then only slow ones (the sweep below asks for all with --verbose).
    saved = [line for line in out.stdout.splitlines() if line.startswith("checkpoint ")]
    assert saved[0].startswith("checkpoint 1: ") and all(line.endswith("(slow)") for line in saved[1:]), saved
    # The last lines name every output and the next commands.
    assert "policy.msgpack)" in out.stdout.splitlines()[-2] and f"mjx-dacer eval {run}" in out.stdout.splitlines()[-1]
    assert out.stdout.splitlines()[-3].startswith("Wall clock: ")  # summary.md's sentence, from timing.csv
    # metrics.csv: counters as integers, nothing made up before the first update (blank, not 0).
    header, *rows = [line.split(",") for line in (run / "metrics.csv").read_text().strip().splitlines()]
    warmup_row, trained_row = dict(zip(header, rows[0])), dict(zip(header, rows[-1]))
    assert header[:11] == ["run", "label", "seed", "iteration", "env_steps", "eval_return", "eval_return_std",
                           "train_return", "train_episodes", "updates", "policy_iterations"]
    assert header[-4:] == ["frozen", "diverged", "nonfinite_iteration", "nonfinite_metric"]
    assert warmup_row["alpha"] == warmup_row["critic_loss"] == "" and warmup_row["updates"] == "0"
    assert float(trained_row["alpha"]) > 0 and trained_row["updates"] == "2" and trained_row["frozen"] == "0"
    assert trained_row["nonfinite_iteration"] == "-1"
    for name in ("config.yaml", "metrics.csv", "curves.png", "summary.md"):
        assert (run / name).is_file(), name
    assert any((run / "tb").rglob("events.out.tfevents*"))
    lines = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3 * 2  # header + 3 eval points (end of warm-up, 2 after it) x 2 seeds
    assert_pinned(run / "metrics.csv", "multigoal_tiny_2seeds")
    summary = (run / "summary.md").read_text()
    assert "+-" in summary and "| default | 2 |" in summary
    # timing.csv: one row per chunk; summary.md and `table --reach` read it.
    timing = report.read_rows(run / "timing.csv")
    assert [(r["chunk"], r["iteration"]) for r in timing] == [(1, 0), (2, 2), (3, 4)]
    assert "Wall clock: " in summary and "1 session" in summary
    reach = cli("table", str(run), "--reach=-1e9")  # every seed reaches it at its first evaluation
    assert reach.returncode == 0, reach.stderr
    first = timing[0]["wall_seconds"]
    assert [ln.split(" | ")[3:7] for ln in reach.stdout.splitlines() if ln.startswith("| MultiGoal")] == \
        [[str(s), "0", "20", report.duration(first)] for s in (0, 1)]

    again = cli("train", "--config", "multigoal", *sets(), "--out", str(run))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 7  # untouched

    # A truncated policy.msgpack: eval says so and names the command that re-exports it from the newest
    # checkpoint; `mjx-dacer export` writes the very same file again, and only reads the checkpoints.
    policy = run / "policy.msgpack"
    good = policy.read_bytes()
    policy.write_bytes(good[: len(good) // 2])
    checkpoints = sorted(str(f) for f in (run / "checkpoints").rglob("*"))
    broken = cli("eval", str(run), "--episodes", "1")
    assert_one_line_error(broken, "corrupt or truncated")
    assert f"mjx-dacer export {run}" in broken.stderr and "checkpoints/3" in broken.stderr
    exported = cli("export", str(run))
    assert exported.returncode == 0 and f"mjx-dacer eval {run}" in exported.stdout, exported.stderr
    assert policy.read_bytes() == good
    assert sorted(str(f) for f in (run / "checkpoints").rglob("*")) == checkpoints
    assert cli("eval", str(run), "--episodes", "1").returncode == 0


def test_version_and_benchmark_defaults_in_help():
    from mjx_dacer import __version__

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"mjx-dacer {__version__}"
    for name, default in (("gmm", "(default: 0)"), ("envs", "(default: all)"), ("train", "(default: [1, 4, 16])")):
        sub = cli("bench", name, "--help")
        text = " ".join(sub.stdout.split())
        assert sub.returncode == 0 and default in text, sub.stdout
        assert not re.search(r"\(default:[^()]*\) \(default:", text), sub.stdout  # said once, not twice


def test_yaml_syntax_errors_give_the_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: MultiGoal-v0\nnum_envs: 1\n  batch_size: 8\n")  # an indented key: line 3, its colon
    out = cli("train", "--config", str(bad), "--out", str(tmp_path / "run"))
    assert_one_line_error(out, "is not valid YAML: line 3, column 13: mapping values are not allowed here")
    assert not (tmp_path / "run").exists()


def test_sweep_runs_every_grid_point_and_exports_each_policy(tmp_path):
    import numpy as np

    from mjx_dacer import load_policy
    from mjx_dacer.policy import read_artifact

    run = tmp_path / "sweep"
    out = cli("sweep", "--config", "multigoal", "--grid", "lr_actor=1e-4,3e-4", "--grid", "noise_scale=0.05,0.2",
              "--seeds", "1", *sets(), "--set", "total_iterations=2", "--out", str(run), "--verbose")
    assert out.returncode == 0, out.stderr
    assert [line.split(":")[0] for line in out.stdout.splitlines() if line.startswith("checkpoint ")] == [
        "checkpoint 1", "checkpoint 2"]  # --verbose: every one
    csv = (run / "metrics.csv").read_text()
    for label in ("lr_actor=0.0001", "lr_actor=0.0003", "noise_scale=0.05", "noise_scale=0.2"):
        assert label in csv, label
    # Each chunk's line is followed by the evaluation return of each of the 4 grid points.
    by_point = [line for line in out.stdout.splitlines() if line.startswith("  by grid point")]
    assert len(by_point) == 2 and by_point[-1].count("lr_actor=") == 4, out.stdout
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


def test_running_out_of_memory_is_one_line_and_exit_status_1(monkeypatch, capsys):
    """XLA's RESOURCE_EXHAUSTED (a RuntimeError: a buffer or a batch too large for the device) and MemoryError
    are the system's refusal, like a full disk: one line with what to lower. Other errors still raise."""
    from mjx_dacer.cli import main, results

    def fails_with(error):
        def command(args):
            raise error
        return command

    oom = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.00GiB.\nBufferAssignment: ...")
    for error, shown in [(oom, "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 12.00GiB."),
                         (MemoryError(), "MemoryError")]:
        monkeypatch.setattr(results, "table", fails_with(error))
        assert main(["table", "runs"]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"mjx-dacer: error: out of memory ({shown}); lower num_envs, batch_size, buffer_capacity or the number "
            "of seeds and grid points"]
    monkeypatch.setattr(results, "table", fails_with(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["table", "runs"])


def test_the_last_lines_name_what_the_run_directory_holds(tmp_path, capsys):
    """Only what is there: no tb/ (and no tensorboard command) where tensorboardX was missing; a TRPO run's
    per-seed files as one pattern."""
    from mjx_dacer.cli.train import _print_done

    for name in ("trpo_params_seed1.pkl", "metrics.csv", "trpo.yaml", "config.yaml", "trpo_params_seed0.pkl"):
        (tmp_path / name).write_text("")
    (tmp_path / "checkpoints").mkdir()
    _print_done(tmp_path)
    done, following = capsys.readouterr().out.splitlines()
    assert done == f"done: {tmp_path}/ (config.yaml, metrics.csv, checkpoints/, trpo.yaml, trpo_params_seed*.pkl)"
    assert following == f"next: mjx-dacer eval {tmp_path}  |  mjx-dacer plot {tmp_path}"
    (tmp_path / "tb").mkdir()
    _print_done(tmp_path)
    assert capsys.readouterr().out.splitlines()[1].endswith(f"  |  tensorboard --logdir {tmp_path}/tb")


def test_out_pointing_at_a_file_is_refused(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    out = cli("train", "--config", "quickstart", "--out", str(target))
    assert_one_line_error(out, "is a file, not a directory")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("args, fragment", [
    (["bench", "envs", "--envs", "Foo"], "unknown environment 'Foo'"),
    (["bench", "train", "--envs", "Hopper-v9"], "Hopper-v5"),
    (["bench", "profile", "--env", "Foo"], "--env: unknown environment 'Foo'"),  # its option, not --envs
    # Warm-up iterations update nothing: timed, they made a fast "training iteration" (and parts over 100%).
    (["bench", "profile", "--env", "MultiGoal-v0", "--set", "warmup_steps=40"], "warmup_steps cannot be set here"),
    (["bench", "gmm", "--samples", "2"], "--samples (2) is smaller than --components (3)"),
])
def test_benchmark_task_names_are_checked(args, fragment):
    assert_one_line_error(cli(*args), fragment)


def test_resume_with_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    trained = cli("train", "--config", "multigoal", *sets("warmup_steps=50"), "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    # 5 warm-up iterations before 4 of training: said before the compile.
    lines = trained.stdout.splitlines()
    assert lines[1].startswith("warning: the warm-up (5 iterations of random actions) is longer"), lines[:3]
    # Two kinds of damage: files cut in half (a full disk), and the data files of tensorstore's database
    # overwritten (its reads then fail while others are in flight: their late reports must not reach stderr).
    for k, step in enumerate(sorted((run / "checkpoints").iterdir())):
        for f in step.rglob("*"):
            if k % 2 and f.is_file() and f.parent.name == "d":
                f.write_bytes(os.urandom(100))
            elif not k % 2 and f.is_file() and f.stat().st_size > 64:
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    csv_before, config_before = (run / "metrics.csv").read_text(), (run / "config.yaml").read_text()
    # Made longer (a finished run resumed as it is is refused before any checkpoint is read).
    out = cli("train", "--resume", str(run), "--set", "total_iterations=6")
    assert_one_line_error(out, "no usable checkpoint")
    assert (run / "metrics.csv").read_text() == csv_before  # nothing rewritten
    assert (run / "config.yaml").read_text() == config_before  # the new length only once a checkpoint restored


def test_resume_names_a_changed_key_extends_a_finished_run_and_tells_the_truth(tmp_path):
    """--resume with another value names that key; a finished run refuses to run again but grows with a larger
    total_iterations, to exactly the rows of a run that long from the start; gone checkpoints are said to be
    gone, with no --overwrite hint (it would delete the results)."""
    from mjx_dacer import report

    run = tmp_path / "run"
    assert cli("train", "--config", "multigoal", *sets(), "--out", str(run)).returncode == 0
    config_before = (run / "config.yaml").read_bytes()

    changed = cli("train", "--resume", str(run), "--set", "lr_actor=3e-4")
    assert_one_line_error(changed, "lr_actor is 0.0001 in that run, 0.0003 given")
    finished = cli("train", "--resume", str(run))
    assert_one_line_error(finished, "the run is finished (iteration 4)")
    assert "--set total_iterations=N" in finished.stderr
    assert (run / "config.yaml").read_bytes() == config_before

    longer = cli("train", "--resume", str(run), "--set", "total_iterations=6")
    assert longer.returncode == 0, longer.stderr
    assert "total_iterations 4 -> 6" in longer.stdout and "resuming after chunk 3" in longer.stdout
    fresh = tmp_path / "fresh"
    assert cli("train", "--config", "multigoal", *sets("total_iterations=6"), "--out", str(fresh)).returncode == 0
    assert [r["iteration"] for r in report.read_rows(run / "metrics.csv")] == [0, 2, 4, 6]
    assert report.read_rows(run / "metrics.csv") == report.read_rows(fresh / "metrics.csv")
    assert "total_iterations: 6" in (run / "config.yaml").read_text()
    import yaml

    created = [yaml.safe_load(text)["created"] for text in (config_before.decode(), (run / "config.yaml").read_text())]
    assert created[0] == created[1]  # the run's identity (its W&B ids) survives being made longer
    # A run's config.yaml is also a preset (its seeds, grid and stamp are the run's, not config keys).
    again = cli("train", "--config", str(run / "config.yaml"), "--out", str(tmp_path / "again"), "--set", "env=Nope")
    assert_one_line_error(again, "Nope")

    import shutil

    shutil.rmtree(run / "checkpoints")
    gone = cli("train", "--resume", str(run), "--set", "total_iterations=8")
    assert_one_line_error(gone, "its checkpoints/ are gone")
    assert "--overwrite" not in gone.stderr and (run / "policy.msgpack").is_file()


def test_overwrite_replaces_only_an_earlier_run_and_only_once_every_check_passed(tmp_path, capsys, monkeypatch):
    """In this process (`main`, the command's function): --overwrite never removes a folder of other files, the
    working directory or a folder above it, nor a run whose replacement is then refused (a seed or a length
    beyond int32's range overflowed after the old run was gone)."""
    from mjx_dacer.cli import main

    def refused(args, fragment):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("mjx-dacer: error: ") and fragment in err, err
        assert len(err.strip().splitlines()) == 1, err

    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "thesis.tex").write_text("keep me")
    base = ["train", "--config", "quickstart", "--overwrite", "--out"]
    refused([*base, papers], "--overwrite replaces only an earlier run directory")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("env: Hopper-v5\n")
    (run / "metrics.csv").write_text("kept\n")
    monkeypatch.chdir(run)
    refused([*base, "."], "holds the working directory")
    refused([*base, ".."], "holds the working directory")
    monkeypatch.chdir(tmp_path)
    refused([*base, run, "--set", "seed=1e30"], "'seed' must be <= 2147483647")
    refused([*base, run, "--set", "total_iterations=1e12"], "'total_iterations' must be <= 2147483647")
    refused([*base, run, "--set", "total_iterations=2000000", "--set", "eval_interval=1"], "1,000,000 evaluations")
    assert (papers / "thesis.tex").read_text() == "keep me" and (run / "metrics.csv").read_text() == "kept\n"

    # Config files that are not a mapping of key names, or not text; run directories with a damaged config.yaml.
    numbers = tmp_path / "numbers.yaml"
    numbers.write_text("1: 2\n")
    refused(["train", "--config", numbers, "--out", tmp_path / "new"], "unknown config key '1'")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    refused(["train", "--config", binary, "--out", tmp_path / "new"], "cannot be read as text (UnicodeDecodeError")
    twice = tmp_path / "twice.yaml"
    twice.write_text("env: MultiGoal-v0\nlr_actor: 1.0e-4\nnum_envs: 4\nlr_actor: 3.0e-4\n")  # PyYAML keeps the last
    refused(["train", "--config", twice, "--out", tmp_path / "new"], "line 4, column 1: key 'lr_actor' is given twice")
    (run / "config.yaml").write_text("- 1\n- 2\n")
    for command in (["train", "--resume", run], ["export", run]):
        refused(command, "config.yaml is damaged: it does not hold a run's config, seeds and grid")
    (run / "config.yaml").write_text("env: [Hopper-v5\n")
    refused(["train", "--resume", run], "config.yaml is damaged: it does not read as YAML (ParserError)")
    assert not (tmp_path / "new").exists() and (run / "metrics.csv").read_text() == "kept\n"


@pytest.mark.parametrize("args", [["train", "--seeds", "0"], ["train", "--iterations", "0"], ["gmm", "--repeats", "0"],
                                  ["envs", "--steps", "0"], ["profile", "--calls", "0"], ["build", "--seeds", "0"]])
def test_benchmark_sizes_and_counts_must_be_positive(args, capsys):
    from mjx_dacer.cli import main

    with pytest.raises(SystemExit) as stopped:  # argparse's usage error, before any work
        main(["bench", *args])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f"argument {args[1]}: must be >= 1, got 0" in err, err
