"""The main job through the real CLI on real MuJoCo tasks: train with checkpoints, interrupt, resume, evaluate.

Every run is a `mjx-dacer` subprocess with tiny networks. The processes share
one persistent XLA compilation cache (JAX_COMPILATION_CACHE_DIR), so only the
first of them pays the full MJX compile; the results do not depend on it.
`make test` runs Hopper-v5 end to end; `make test-slow` every MuJoCo task.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from mjx_dacer import report

from conftest import MUJOCO_TASKS
from pinned import assert_pinned

# Four chunks of 2 iterations: the warm-up (8 transitions / 4 envs), then 6 iterations after it.
TINY = [
    "num_envs=4", "total_iterations=6", "eval_interval=2", "warmup_steps=8", "buffer_capacity=200",
    "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
    "entropy_samples=6", "alpha_update_interval=2", "checkpoint_interval=1",
]


def sets(values):
    return [a for kv in values for a in ("--set", kv)]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xla-cache")
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def cli(env, *args, timeout=900):
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


class Interrupted:
    """A CLI run sent `sig` when a stdout line starts with `trigger`: exit status, output, seconds to exit."""

    def __init__(self, env, args, trigger: str, sig: int, timeout: float = 900):
        proc = subprocess.Popen([sys.executable, "-u", "-m", "mjx_dacer.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        self.stdout, self.sent_at = [], None
        deadline = time.monotonic() + timeout
        for line in proc.stdout:  # ends when the process closes stdout (exits)
            self.stdout.append(line)
            if self.sent_at is None and line.startswith(trigger):
                proc.send_signal(sig)
                self.sent_at = time.monotonic()
            if time.monotonic() > deadline:
                proc.kill()
                break
        self.returncode = proc.wait(timeout=60)
        self.exit_seconds = time.monotonic() - self.sent_at if self.sent_at is not None else None
        self.stderr = proc.stderr.read()
        self.text = "".join(self.stdout)


def own_lines(stderr: str) -> list[str]:
    """The lines mjx-dacer itself wrote to stderr."""
    return [line for line in stderr.splitlines() if line.startswith("mjx-dacer:")]


def interrupt_and_resume(env, task: str, tmp_path: pathlib.Path, values) -> pathlib.Path:
    """Train, Ctrl-C once chunk 2 has reported (the run stops after a checkpoint), then --resume to the end.

    The signal goes out as soon as the `[2/4]` line is read. It usually lands while chunk 2 is
    checkpointed, so the run stops after chunk 2; on a loaded machine it may land in chunk 3 and the
    run stops after that one. Either way a chunk is left to resume: the tiny chunks take a tenth of
    a second, so no fixed delay could place the signal reliably (their evaluation episodes end as
    soon as the untrained policy falls)."""
    run = tmp_path / "interrupted"
    args = ["train", "--env", task, *sets(values), "--out", str(run)]
    stopped = Interrupted(env, args, "[2/4]", signal.SIGINT)
    assert stopped.returncode == 130, stopped.text + stopped.stderr
    assert "SIGINT: " in stopped.text and "press Ctrl-C again to stop at once" in stopped.text, stopped.text
    # Between chunks the notice says that the run stops at its checkpoint; inside chunk 3, the time left.
    assert ("SIGINT: stopping after this chunk's checkpoint" in stopped.text
            or "SIGINT: finishing the current chunk (about" in stopped.text), stopped.text
    after = re.search(r"interrupted after chunk (\d)/4 ", stopped.stderr)
    assert after is not None and after[1] in ("2", "3"), stopped.stderr
    assert f"resume with: mjx-dacer train --resume {run}" in stopped.stderr
    # One line of ours; XLA may add its own log lines (e.g. a slow-compile alarm on a loaded machine).
    assert len(own_lines(stopped.stderr)) == 1 and "Traceback" not in stopped.stderr, stopped.stderr
    resumed = cli(env, "train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming after chunk {after[1]}" in resumed.stdout
    return run


# ------------------------------------------------------------- Hopper-v5: make test
@pytest.fixture(scope="module")
def hopper_full(cli_env, tmp_path_factory):
    run = tmp_path_factory.mktemp("hopper") / "full"
    out = cli(cli_env, "train", "--env", "Hopper-v5", *sets(TINY), "--out", str(run))
    assert out.returncode == 0, out.stdout + out.stderr
    return run


def test_hopper_trains_checkpoints_and_exports_the_policy(hopper_full):
    rows = report.read_rows(hopper_full / "metrics.csv")
    assert [r["iteration"] for r in rows] == [0, 2, 4, 6]  # counted after the warm-up
    assert [r["env_steps"] for r in rows] == [8, 16, 24, 32]
    assert rows[0]["updates"] == 0 and rows[-1]["updates"] == 2  # the warm-up chunk updates nothing
    assert all(r["eval_return"] == r["eval_return"] for r in rows)  # finite
    assert_pinned(hopper_full / "metrics.csv", "hopper_tiny")
    assert sorted(p.name for p in (hopper_full / "checkpoints").iterdir()) == ["3", "4"]
    from mjx_dacer import load_policy

    policy = load_policy(hopper_full)
    assert policy.iteration == 6 and policy([0.0] * 11).shape == (3,)


def test_hopper_interrupted_and_resumed_equals_the_uninterrupted_run(hopper_full, cli_env, tmp_path):
    run = interrupt_and_resume(cli_env, "Hopper-v5", tmp_path, TINY)
    assert report.read_rows(run / "metrics.csv") == report.read_rows(hopper_full / "metrics.csv")


def test_hopper_policy_evaluates_in_mjx_and_gymnasium(hopper_full, cli_env):
    out = cli(cli_env, "eval", str(hopper_full), "--backend", "both", "--episodes", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("backend")):]
    assert table[2].startswith("mjx") and table[3].startswith("gymnasium"), out.stdout
    for row in table[2:4]:
        mean = float(row.split()[2])
        # An untrained tiny policy falls over: a few hundred steps at most, each worth about 1 (healthy reward).
        assert 0 < mean < 1000, row


def test_sigterm_stops_within_seconds_and_keeps_the_last_checkpoint(cli_env, tmp_path):
    """SIGTERM arrives in the second, long chunk: the run must not wait for it to end."""
    run = tmp_path / "term"
    # Multi-goal compiles in seconds; the 5 warm-up iterations (100 transitions / 20 envs), then
    # a chunk of about half a minute on a 2-core CPU (tiny networks: about 5000 iterations/s).
    long_chunks = ["total_iterations=150000", "eval_interval=150000", "warmup_steps=100", "num_envs=20", "buffer_capacity=1000",
                   "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8",
                   "diffusion_steps=2", "entropy_samples=6"]
    args = ["train", "--config", "multigoal", *sets(long_chunks), "--out", str(run)]
    start = time.monotonic()
    stopped = Interrupted(cli_env, args, "checkpoint 1:", signal.SIGTERM)
    first_chunk = stopped.sent_at - start
    assert stopped.returncode == 143, stopped.text + stopped.stderr
    assert stopped.exit_seconds < 5.0, (stopped.exit_seconds, first_chunk)
    assert "the newest checkpoint (chunk 1, iteration 0) is intact" in stopped.stderr, stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1, stopped.stderr
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["1"]  # nothing half-written left behind
    resumed = cli(cli_env, "train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["iteration"] for r in report.read_rows(run / "metrics.csv")] == [0, 150000]


def test_sigterm_during_the_compile_stops_at_once_and_resume_says_why_it_cannot(cli_env, tmp_path):
    run = tmp_path / "early"
    args = ["train", "--env", "Hopper-v5", *sets([*TINY, "hidden_sizes=8,8,8"]), "--out", str(run)]
    stopped = Interrupted(cli_env, args, "Hopper-v5: 1 run(s)", signal.SIGTERM)
    assert stopped.returncode == 143 and stopped.exit_seconds < 5.0, (stopped.exit_seconds, stopped.stderr)
    assert "no checkpoint had been written yet" in stopped.stderr
    resumed = cli(cli_env, "train", "--resume", str(run))
    assert resumed.returncode == 2 and "stopped before its first checkpoint" in resumed.stderr
    assert len(resumed.stderr.strip().splitlines()) == 1 and "Traceback" not in resumed.stderr


@pytest.mark.parametrize("algo", ["sac", *(pytest.param(a, marks=pytest.mark.slow) for a in ("dsac-t", "td3", "ddpg"))])
def test_each_off_policy_baseline_trains_checkpoints_and_evaluates_hopper(algo, cli_env, tmp_path):
    """The baselines of the shared program on the real task, not only on Multi-goal (its 2-D actions and point
    state cannot show a wrong action size or a checkpoint of MJX states): every chunk checkpointed, a
    policy.msgpack that acts on Hopper's 11 -> 3, and its episodes in Gymnasium's C-MuJoCo Hopper-v5.
    About 3 minutes each on 2 CPU cores, nearly all compiling: `make test` runs SAC, `make test-slow` the rest."""
    from mjx_dacer.policy import load_policy

    run = tmp_path / algo
    out = cli(cli_env, "train", "--algo", algo, "--env", "Hopper-v5", *sets(TINY), "--out", str(run))
    assert out.returncode == 0, out.stdout + out.stderr
    assert [r["iteration"] for r in report.read_rows(run / "metrics.csv")] == [0, 2, 4, 6]
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())[-1] == 4
    policy = load_policy(run)
    assert (policy.config.algo, policy.obs_size, policy.action_size, policy.iteration) == (algo, 11, 3, 6)
    evaluated = cli(cli_env, "eval", str(run), "--backend", "gymnasium", "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    row = evaluated.stdout.splitlines()[-1].split()  # backend episodes mean +- std min max length
    # An untrained hopper falls within a few hundred steps, earning about 1 per step until then.
    assert row[0] == "gymnasium" and 0 < float(row[2]) < 1000 and 0 < float(row[-1]) < 1000, evaluated.stdout


# ----------------------------------------------------- every MuJoCo task: make test-slow
@pytest.mark.slow
@pytest.mark.parametrize("task", MUJOCO_TASKS)
def test_every_mujoco_task_trains_resumes_and_evaluates(task, cli_env, tmp_path):
    values = TINY  # four chunks: one is left to resume wherever the signal lands
    run = interrupt_and_resume(cli_env, task, tmp_path, values)
    rows = report.read_rows(run / "metrics.csv")
    assert [r["iteration"] for r in rows] == [0, 2, 4, 6] and (run / "policy.msgpack").is_file()
    full = cli(cli_env, "train", "--env", task, *sets(values), "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stdout + full.stderr
    assert rows == report.read_rows(tmp_path / "full" / "metrics.csv")
    out = cli(cli_env, "eval", str(run), "--backend", "both", "--episodes", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gymnasium" in out.stdout
