"""The benchmark commands (`mjx-dacer bench gmm | envs | train | profile | build`), run through the CLI on tiny sizes.

Speed itself is never asserted (that is what the benchmarks are for); these check that each command
runs, writes the table it prints, and that its non-timing numbers are right.
"""

import math
import subprocess
import sys

import jax
import numpy as np

from mjx_dacer.benchmarks import train as bench_train
from mjx_dacer.config import load_config, parse_overrides
from mjx_dacer.train import make_train

TINY_TRAIN = ["hidden_sizes=8,8", "critic_hidden_sizes=8,8", "num_envs=4", "batch_size=8", "diffusion_steps=2",
              "entropy_samples=6", "buffer_capacity=100000"]


def bench(*args, out=None):
    done = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "bench", *map(str, args),
                           *(["--out", str(out)] if out else [])], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def table_rows(text: str) -> list[list[str]]:
    """The Markdown table's body rows, cell by cell (the header and the |---| line left out)."""
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("|---")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[1:]]


def test_bench_train_times_each_seed_count_and_states_the_memory(tmp_path):
    out = tmp_path / "train.md"
    printed = bench("train", "--envs", "MultiGoal-v0", "--seeds", "1", "2", "--iterations", "2", "--repeats", "1",
                    *[a for kv in TINY_TRAIN for a in ("--set", kv)], out=out)
    assert out.read_text() == printed
    assert "- command: `mjx-dacer bench train --envs MultiGoal-v0" in printed
    rows = table_rows(printed)
    assert [r[:3] for r in rows] == [["MultiGoal-v0", "preset", "1"], ["MultiGoal-v0", "preset", "2"]]
    for r in rows:
        assert float(r[3].replace(",", "")) > 0 and r[5].endswith(" ms") and float(r[6]) > 0 and r[11] == ""
    assert float(rows[0][7].replace(",", "")) > 0 and rows[0][8].endswith("x") and rows[1][7] == ""
    # 100,000 slots of (obs 2, action 2, reward, terminated, truncated, final_row) x 4 bytes = 3.1 MiB
    # (s' is the successor slot's obs; `test_state_bytes_are_the_allocated_states` has the exact count).
    assert rows[0][9].endswith("(3.1)") and float(rows[0][10].replace(",", "")) >= float(rows[0][9].split()[0])

    memory = table_rows(bench("train", "--envs", "MultiGoal-v0", "--seeds", "2", "--memory-only",
                              *[a for kv in TINY_TRAIN for a in ("--set", kv)]))
    assert memory[0][3:6] == ["", "", ""] and memory[0][9] == rows[1][9]


def test_bench_train_compares_settings_side_by_side():
    rows = table_rows(bench("train", "--envs", "MultiGoal-v0", "--seeds", "1", "--iterations", "2", "--repeats", "1",
                            "--no-host-loop", *[a for kv in TINY_TRAIN for a in ("--set", kv)],
                            "--compare", "chain_unroll=1", "chain_unroll=2 buffer_capacity=50000"))
    assert [r[1] for r in rows] == ["chain_unroll=1", "chain_unroll=2 buffer_capacity=50000"]
    assert rows[0][11] == "1.00x" and rows[1][11].endswith("x") and rows[0][7] == rows[1][7] == ""
    # The second settings' buffer is half the first's: the overrides reach the program.
    assert rows[0][9].endswith("(3.1)") and rows[1][9].endswith("(1.5)")
    bad = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "bench", "train", "--envs", "MultiGoal-v0",
                          "--compare", "chain_unrol=2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "did you mean 'chain_unroll'" in bad.stderr and "Traceback" not in bad.stderr


def test_state_bytes_are_the_allocated_states():
    program = make_train(load_config("multigoal", parse_overrides([*TINY_TRAIN, "warmup_steps=0"])))
    m = bench_train.time_on_device(program, seeds=3, iterations=1, repeats=1, memory_only=True)
    assert m.seconds_per_iteration is None and m.program_bytes > 0
    # Per slot: s (2), a (2), r, terminated, truncated and final_row; then 4 x (100,000 / 4 // 100 + 1)
    # truncated s' (episodes of 100 steps), final_pos and the 4 envs' current s.
    assert m.buffer_bytes == 100_000 * (2 + 2 + 1 + 1 + 1 + 1) * 4 + 4 * 251 * 2 * 4 + 4 + 4 * 2 * 4
    state = program.init(jax.random.PRNGKey(0), program.config.hparams())  # one seed, materialised
    assert m.state_bytes == sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))


def test_bench_gmm_agrees_with_scikit_learn(tmp_path):
    printed = bench("gmm", "--dims", "2", "--states", "4", "--samples", "40", "--repeats", "1")
    (row,) = table_rows(printed)
    assert row[0] == "2" and float(row[1].replace(",", "")) > 0
    ours, sklearn = float(row[-2]), float(row[-1])
    assert math.isfinite(ours) and abs(ours - sklearn) < 0.5, row


def test_bench_envs_gives_a_row_per_run_count_and_batch_size(tmp_path):
    printed = bench("envs", "--envs", "MultiGoal-v0", "--profiles", "fast", "--batch-sizes", "1", "4",
                    "--runs", "1", "3", "--steps", "8", "--repeats", "1")
    rows = table_rows(printed)
    assert [r[:4] for r in rows] == [["MultiGoal-v0", "-", runs, batch] for runs in "13" for batch in "14"], printed
    assert all(float(r[5].replace(",", "")) > 0 for r in rows), printed


def test_bench_profile_parts_add_up_and_the_trace_is_written(tmp_path):
    trace = tmp_path / "trace"
    printed = bench("profile", "--env", "MultiGoal-v0", "--calls", "2", "--repeats", "1", "--trace", trace,
                    *[a for kv in TINY_TRAIN for a in ("--set", kv)])
    rows = {r[0].split(" (")[0]: r for r in table_rows(printed)}
    assert list(rows) == ["env step", "act", "buffer", "update", "entropy estimate", "sum of the parts",
                          "whole iteration", "the rest", "evaluation at most"], printed
    per_iteration = {name: float(r[3]) for name, r in rows.items()}
    parts = sum(per_iteration[k] for k in ("env step", "act", "buffer", "update", "entropy estimate"))
    assert abs(per_iteration["sum of the parts"] - parts) < 0.003
    assert abs(per_iteration["the rest"] - (per_iteration["whole iteration"] - parts)) < 0.003
    assert rows["entropy estimate"][2] == "1/10000"  # once per alpha_update_interval updates
    assert rows["evaluation at most"][2] == "100/5000"  # Multi-goal's time limit, per eval_interval
    assert list(trace.rglob("*.xplane.pb")), sorted(trace.rglob("*"))


def test_bench_build_times_each_stage_of_the_chunk_program(tmp_path):
    out = tmp_path / "build.md"
    tiny = [a for kv in [*TINY_TRAIN, "total_iterations=4", "eval_interval=2"] for a in ("--set", kv)]
    printed = bench("build", "--envs", "MultiGoal-v0", "--seeds", "1", "2", *tiny, out=out)
    assert out.read_text() == printed and "- command: `mjx-dacer bench build --envs MultiGoal-v0" in printed
    rows = table_rows(printed)
    assert [r[:2] for r in rows] == [["MultiGoal-v0", "1"], ["MultiGoal-v0", "2"]], printed
    for r in rows:
        stages = [float(x) for x in r[2:6]]
        assert min(stages) >= 0 and stages[1] > 0 and stages[3] > 0  # tracing and XLA's compile take time
        assert abs(float(r[6]) - sum(stages)) <= 0.25  # each cell rounded to 0.1 s
    traced_only = table_rows(bench("build", "--envs", "MultiGoal-v0", "--no-compile", *tiny))
    assert traced_only[0][5] == "" and float(traced_only[0][3]) > 0


def test_profile_rows_amortise_the_update_count_and_the_entropy_interval():
    from mjx_dacer.benchmarks import profile

    cfg = load_config("multigoal", parse_overrides(["updates_per_iteration=2", "alpha_update_interval=10000"]))
    seconds = {"env": 1e-3, "act": 2e-3, "buffer": 0.5e-3, "update": 4e-3, "entropy": 1.0, "iteration": 10e-3,
               "evaluation": 3e-3}
    rows = {name.split(" (")[0]: (calls, per_iteration) for name, _, calls, per_iteration in
            profile.table_rows(seconds, cfg, episode_length=500)}
    assert rows["update"] == ("2", 8e-3) and rows["entropy estimate"] == ("1/5000", 1.0 / 5000)
    assert math.isclose(rows["sum of the parts"][1], 11.7e-3) and math.isclose(rows["the rest"][1], -1.7e-3)
    # Not in the sum: each chunk's evaluation, E episodes stepped at most to the time limit.
    assert rows["evaluation at most"] == (f"500/{cfg.eval_interval}", 3e-3 * 500 / cfg.eval_interval)


def test_the_nvidia_driver_is_read_from_nvidia_smi(monkeypatch):
    from mjx_dacer.benchmarks import common

    def fake_run(out, rc=0):
        return lambda *a, **k: subprocess.CompletedProcess(a, rc, stdout=out, stderr="")

    monkeypatch.setattr(common.subprocess, "run", fake_run("550.54.15\n550.54.15\n"))
    assert common.nvidia_driver() == "550.54.15"
    monkeypatch.setattr(common.subprocess, "run", fake_run("", rc=9))
    assert common.nvidia_driver() is None

    def missing(*a, **k):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(common.subprocess, "run", missing)
    assert common.nvidia_driver() is None
