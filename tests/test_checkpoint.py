"""Checkpoints, exact resume, interruption, corrupt checkpoints and the divergence guard."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mjx_dacer import report, train
from mjx_dacer.config import ConfigError, load_config, parse_overrides
from mjx_dacer.cli import train as train_cli
from mjx_dacer.cli.train import parse_grid
from mjx_dacer.rundir import RunSpec
from mjx_dacer.runner import EXIT_DIVERGED, Runner, RunStopped

# Three chunks of 2 iterations: the warm-up (20 transitions / 10 envs) and 4 iterations after it.
TINY = [
    "total_iterations=4", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=200",
    "batch_size=8", "eval_episodes=2", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
    "entropy_samples=6", "alpha_update_interval=2", "checkpoint_interval=1",
]
SPEC = RunSpec(grid=({},), seeds=(0, 1))


def tiny_config(*extra):
    return load_config("multigoal", parse_overrides([*TINY, *extra]))


def metric_rows(run_dir):
    return report.read_rows(run_dir / "metrics.csv")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    lines = []
    Runner(tiny_config(), SPEC, out, progress=lines.append).run()
    return out, lines


def test_full_run_checkpoints_and_exports_the_policy(uninterrupted):
    out, lines = uninterrupted
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3"]  # keep 2
    assert lines[[line.startswith("checkpoint ") for line in lines].index(True)].startswith("checkpoint 1: ")
    assert all("MiB in" in line for line in lines if line.startswith("checkpoint "))
    assert (out / "policy.msgpack").is_file()
    assert len(metric_rows(out)) == 3 * 2


def test_interrupted_run_resumes_to_the_same_metrics(uninterrupted, tmp_path):
    full, _ = uninterrupted
    out = tmp_path / "run"

    def interrupt_after_first_chunk(line):
        if line.startswith("[1/3]"):
            os.kill(os.getpid(), signal.SIGINT)  # handled between chunks, like a Ctrl-C

    started = time.perf_counter()
    with pytest.raises(RunStopped) as stopped:
        Runner(tiny_config(), SPEC, out, progress=interrupt_after_first_chunk).run()
    first_session = time.perf_counter() - started
    assert stopped.value.exit_code == 130
    assert stopped.value.resume_dir == out and "interrupted after chunk 1/3" in str(stopped.value)
    assert len(metric_rows(out)) == 2  # one chunk x 2 seeds
    before = report.read_rows(out / "timing.csv")

    started = time.perf_counter()
    Runner(tiny_config(), SPEC, out, progress=lambda _: None).run(resume=True)
    second_session = time.perf_counter() - started
    assert metric_rows(out) == metric_rows(full)  # every value of every row, exactly

    # timing.csv: chunk 1 as the first session wrote it, then the second session's chunks, whose wall
    # clock goes on from it: within the two sessions' own durations, measured around them here.
    timing = report.read_rows(out / "timing.csv")
    assert timing[:1] == before and [r["session"] for r in timing] == [1, 2, 2]
    assert [(r["chunk"], r["iteration"], r["env_steps"], r["run"]) for r in timing] == \
        [(1, 0, 20, None), (2, 2, 40, None), (3, 4, 60, None)]
    walls = [r["wall_seconds"] for r in timing]
    assert walls == sorted(walls) and 0 < walls[0] <= first_session
    assert walls[-1] <= first_session + second_session
    # Each session compiles its programs before its first chunk; the chunks and compiles fit in the clock.
    assert timing[0]["compile_seconds"] > 0 and timing[1]["compile_seconds"] > 0 and timing[2]["compile_seconds"] == 0
    second = timing[1]["compile_seconds"] + timing[1]["chunk_seconds"] + timing[2]["chunk_seconds"]
    assert walls[-1] - walls[0] >= second
    assert "Wall clock: " in (out / "summary.md").read_text() and "2 sessions" in (out / "summary.md").read_text()


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(uninterrupted, tmp_path):
    full, _ = uninterrupted
    out = tmp_path / "run"
    Runner(tiny_config(), SPEC, out, progress=lambda _: None).run()
    # Truncate every data file of the newest checkpoint. (Damaging only the largest one is not
    # enough: how tensorstore spreads the arrays over files depends on write timing, and the
    # largest file may hold nothing this restore reads.)
    state = out / "checkpoints" / "3" / "state"
    files = [p for p in state.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for victim in files:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    lines = []
    Runner(tiny_config(), SPEC, out, progress=lines.append).run(resume=True)
    assert any("warning: skipped checkpoint 3" in line for line in lines), lines
    assert any("resuming after chunk 2" in line for line in lines), lines
    assert metric_rows(out) == metric_rows(full)


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    # reward_scale = 1e38 overflows the critic targets to inf on the first update: warm-up is
    # 20 transitions = 2 iterations of 10 envs (chunk 1), so that is iteration 1 after it, in chunk 2.
    spec = RunSpec(grid=parse_grid(["reward_scale=0.2,1e38"]), seeds=(0,))
    with pytest.raises(RunStopped) as stopped:
        Runner(tiny_config(), spec, out, progress=lambda _: None).run()
    assert stopped.value.exit_code == EXIT_DIVERGED
    message = str(stopped.value)
    assert "run 1 (seed 0)" in message and "iteration 1 " in message and "'" in message
    # Chunk 1 (the 2 warm-up iterations) was checkpointed; chunk 2 diverged and was not.
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
    # Run 0 can go on with run 1 frozen: the CLI names the command.
    assert message.endswith("; the last good checkpoint is kept") and stopped.value.resume_dir == out
    assert train_cli.stop_hint(stopped.value) == f"; to go on with that run frozen: mjx-dacer train --resume {out} " \
        "--on-divergence=drop"


def test_drop_mode_freezes_the_diverged_run_and_continues_the_others(tmp_path):
    out = tmp_path / "run"
    spec = RunSpec(grid=parse_grid(["reward_scale=0.2,1e38"]), seeds=(0,))
    lines = []
    Runner(tiny_config(), spec, out, progress=lines.append, on_divergence="drop").run()
    rows = metric_rows(out)
    healthy = [r for r in rows if r["run"] == 0]
    broken = [r for r in rows if r["run"] == 1]
    assert all(r["frozen"] == 0 for r in healthy) and all(r["critic_loss"] == r["critic_loss"] for r in healthy[1:])
    assert [r["frozen"] for r in broken] == [0.0, 1.0, 1.0]
    # reward_scale = 1e38 makes the critic targets infinite: the critic loss is the first metric hit.
    assert broken[1]["diverged"] == 1.0 and broken[1]["nonfinite_metric"] == "critic_loss"
    # Once: a frozen run's next chunks run from its held state, a continuation thrown away, not a divergence.
    assert (broken[2]["diverged"], broken[2]["nonfinite_iteration"], broken[2]["nonfinite_metric"]) == (0, -1, None)
    assert sum(line.startswith("diverged: run 1") for line in lines) == 1


def test_drop_mode_stops_when_no_run_is_left(tmp_path):
    """Dropping every run would train to the end on frozen runs and report NaN: it stops instead, exit 3."""
    spec = RunSpec(grid=parse_grid(["reward_scale=1e37,1e38"]), seeds=(0,))
    with pytest.raises(RunStopped) as stopped:
        Runner(tiny_config(), spec, tmp_path / "run", progress=lambda _: None, on_divergence="drop").run()
    assert stopped.value.exit_code == EXIT_DIVERGED and stopped.value.resume_dir is None
    assert "and no run is left that has not diverged; the last good checkpoint is kept; train again with " \
        "smaller learning rates or reward_scale" in str(stopped.value)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_without_a_warmup_chunk_1_evaluates_the_untrained_policy_and_other_layouts_are_refused(tmp_path, monkeypatch):
    """warmup_steps=0: chunk 1 runs no iteration and only evaluates (iteration 0, no env step), as a warm-up's
    chunk does at its end. A checkpoint is named by its chunk count, so one from another chunk layout (before
    this chunk, such a run's chunk 1 was 2 iterations) must be refused on resume, not go on shifted."""
    out, lines = tmp_path / "run", []
    Runner(tiny_config("warmup_steps=0"), SPEC, out, progress=lines.append).run()
    rows = [(r["iteration"], r["env_steps"], r["updates"]) for r in metric_rows(out) if r["seed"] == 1]
    assert rows == [(0, 0, 0), (2, 20, 2), (4, 40, 2)], rows
    first = next(line for line in lines if line.startswith("[1/3]"))
    assert "| no warm-up | untrained policy " in first, first

    before = {name: (out / name).read_text() for name in ("metrics.csv", "config.yaml")}
    monkeypatch.setattr(train, "chunk_sizes", lambda cfg: [cfg.eval_interval] * (cfg.total_iterations // 2))
    with pytest.raises(ConfigError, match=r"checkpoint 3 holds iteration 4 \(warm-up included\), but this run's "
                                          r"chunk 3 ends at 6: it was written with another chunk layout"):
        Runner(tiny_config("warmup_steps=0", "total_iterations=8"), SPEC, out, progress=lines.append).run(resume=True)
    assert before == {name: (out / name).read_text() for name in before}


def test_resume_bad_directories_are_clear_errors(uninterrupted, tmp_path):
    full, _ = uninterrupted
    missing = cli("train", "--resume", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    other = cli("train", "--resume", str(full), "--config", "multigoal", *sum((["--set", t] for t in TINY), []),
                "--set", "lr_actor=0.5")
    assert other.returncode == 2 and "lr_actor is 0.0001 in that run, 0.5 given" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_zero_size_leaves_round_trip_with_structure_shapes_and_dtypes(tmp_path):
    """orbax cannot store arrays of size zero; MJX states have them (e.g. `act` of a model without
    stateful actuators, shape (N, 0)). The checkpoint must give back every leaf as it was."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import struct

    from mjx_dacer.checkpoint import Checkpointer

    @struct.dataclass
    class State:
        weights: jax.Array
        act: jax.Array
        nested: dict

    state = State(weights=jnp.arange(6.0).reshape(2, 3), act=jnp.zeros((4, 0)),
                  nested={"count": jnp.int32(7), "empty": jnp.zeros((0, 3), jnp.uint32), "key": jax.random.PRNGKey(1)})
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, state, [{"run": 0}])
    restored = checkpointer.restore(jax.eval_shape(lambda: state))
    checkpointer.close()
    assert jax.tree.structure(restored.state) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert restored.rows == [{"run": 0}]


def test_restore_into_another_program_names_the_mismatch(tmp_path):
    import jax
    import jax.numpy as jnp

    from mjx_dacer.checkpoint import CheckpointError, Checkpointer

    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, {"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)}, [])
    with pytest.raises(CheckpointError, match=r"array 0 is float32\[2, 3\] there, float32\[2, 5\] expected"):
        checkpointer.restore({"a": jax.ShapeDtypeStruct((2, 5), jnp.float32), "b": jax.ShapeDtypeStruct((4,), jnp.float32)})
    with pytest.raises(CheckpointError, match="holds 2 arrays, this program's state has 1"):
        checkpointer.restore({"a": jax.ShapeDtypeStruct((2, 3), jnp.float32)})
    checkpointer.close()


def test_run_api_writes_the_same_run_directory_and_returns_its_rows(uninterrupted, tmp_path):
    import mjx_dacer
    from mjx_dacer.config import ConfigError

    full, _ = uninterrupted
    out = tmp_path / "api"
    rows = mjx_dacer.run(tiny_config(), out, seeds=2, progress_fn=lambda _: None)
    assert rows == metric_rows(out) == metric_rows(full)
    assert (out / "policy.msgpack").is_file() and (out / "summary.md").is_file()
    with pytest.raises(ConfigError, match="not an empty directory"):
        mjx_dacer.run(tiny_config(), out, progress_fn=lambda _: None)
    assert mjx_dacer.run(None, out, resume=True, progress_fn=lambda _: None) == rows  # finished: nothing to do


@pytest.mark.parametrize("arguments, fragment", [
    ({"seeds": "3"}, "seeds must be a count >= 1 or a list of seeds, got '3'"),
    ({"seeds": 2.5}, "got 2.5"),
    ({"seeds": 0}, "got 0"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),  # trained twice, counted once by `table`
    ({"grid": {"lr_actor": 1e-3}}, "grid must be a list of points"),
    ({"grid": [{"batch_size": 32}]}, "grid key 'batch_size' cannot be swept"),  # was recorded, not trained
    ({"config": tiny_config("algo=td3"), "grid": [{"lr_alpha": 0.1}, {"lr_alpha": 0.2}]},
     "grid key 'lr_alpha': td3 does not read it, so every grid point would train the same run"),
    ({"config": {"env": "MultiGoal-v0"}}, "config must be a Config, a preset name or a YAML path, got a dict"),
])
def test_run_api_arguments_of_the_wrong_kind_are_one_line_config_errors(arguments, fragment, tmp_path):
    import mjx_dacer
    from mjx_dacer.config import ConfigError

    arguments = {"config": tiny_config(), **arguments}
    with pytest.raises(ConfigError, match=re.escape(fragment)) as e:
        mjx_dacer.run(out=tmp_path / "run", progress_fn=lambda _: None, **arguments)
    assert len(str(e.value).splitlines()) == 1 and not (tmp_path / "run").exists()


def test_checksums_read_every_leaf_as_the_stored_checkpoints_do():
    """`artifact_io.checksums` is stored in every checkpoint's metadata and policy artifact: its values must not
    change (or old files look damaged), and one flipped byte must change exactly its leaf's value."""
    import zlib

    import jax
    import numpy as np

    from mjx_dacer.artifact_io import checksums

    tree = {"scalar": np.float32(3.0), "transposed": np.arange(12.0).reshape(3, 4).T, "empty": np.zeros((4, 0)),
            "flags": np.array([True, False]), "key": np.asarray(jax.random.PRNGKey(3)), "count": np.int64(-5),
            "fortran": np.asfortranarray(np.ones((2, 3), np.float16))}
    # The formula the first checkpoints were written with.
    first = [zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1)) for x in jax.tree.leaves(tree)]
    assert checksums(tree) == first
    blob = b"body\x00\x00"
    assert checksums(blob) == [zlib.crc32(blob)]  # bytes are one leaf, trailing zeros included

    flipped = dict(tree, transposed=tree["transposed"].copy())
    flipped["transposed"].reshape(-1).view(np.uint8)[5] ^= 0x10  # a C-order copy: reshape is a view
    changed = [a != b for a, b in zip(checksums(tree), checksums(flipped))]
    assert changed == [k == "transposed" for k in sorted(tree)]  # jax.tree.leaves orders dict keys


def test_a_flipped_byte_in_the_newest_checkpoint_is_caught_by_its_checksum(tmp_path, monkeypatch):
    """Damage that orbax itself reads without complaint (a bit flipped on disk): the recorded CRC32 rejects it,
    the previous checkpoint is used; with every checkpoint damaged, a one-line CheckpointError."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mjx_dacer.checkpoint import CheckpointError, Checkpointer

    state = {"w": jnp.arange(8.0), "n": jnp.int32(3)}
    abstract = jax.eval_shape(lambda: state)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, state, [{"chunk": 1}])
    checkpointer.save(2, jax.tree.map(lambda x: x + 1, state), [{"chunk": 2}])
    real_restore = checkpointer.manager.restore
    damaged_steps = {2}

    def restore_with_a_flipped_bit(step, args):
        out = real_restore(step, args=args)
        if "state" not in args or step not in damaged_steps:
            return out
        arrays = {k: np.array(v) for k, v in out["state"].items()}
        victim = max(arrays, key=lambda k: arrays[k].size)
        arrays[victim].reshape(-1).view(np.uint8)[0] ^= 0x01
        return {"state": arrays}

    monkeypatch.setattr(checkpointer.manager, "restore", restore_with_a_flipped_bit)
    restored = checkpointer.restore(abstract)
    assert restored.chunks_done == 1 and restored.rows == [{"chunk": 1}]
    np.testing.assert_array_equal(restored.state["w"], np.arange(8.0))
    assert len(restored.skipped) == 1 and "checkpoint 2" in restored.skipped[0]
    assert "checksums do not match" in restored.skipped[0]

    damaged_steps.add(1)
    with pytest.raises(CheckpointError, match="no usable checkpoint .*checksums do not match") as e:
        checkpointer.restore(abstract)
    assert "\n" not in str(e.value)
    checkpointer.close()


def test_a_read_only_reader_skips_a_damaged_checkpoint_and_changes_nothing(tmp_path):
    """What `mjx-dacer eval` and `export` use: the newest usable checkpoint, with the unusable newer one left in
    place (a resuming run deletes it), orbax's leftover temporary folders kept (they may be a write in
    progress), and no checkpoints/ made where there is none."""
    import jax
    import jax.numpy as jnp

    from mjx_dacer.checkpoint import CheckpointError, Checkpointer

    state = {"w": jnp.arange(8.0)}
    abstract = jax.eval_shape(lambda: state)
    writer = Checkpointer(tmp_path)
    writer.save(1, state, [{"chunk": 1}])
    writer.save(2, state, [{"chunk": 2}])
    writer.close()
    directory = tmp_path / "checkpoints"
    for f in (directory / "2").rglob("*"):
        if f.is_file() and f.stat().st_size:
            f.write_bytes(b"\0" * f.stat().st_size)  # every file of checkpoint 2 zeroed
    (directory / "3.orbax-checkpoint-tmp-1").mkdir()  # as another process's save in progress leaves it
    listing = sorted(p.name for p in directory.iterdir())

    reader = Checkpointer(tmp_path, read_only=True)
    restored = reader.restore(abstract)
    reader.close()
    assert restored.chunks_done == 1 and len(restored.skipped) == 1 and "checkpoint 2" in restored.skipped[0]
    assert sorted(p.name for p in directory.iterdir()) == listing

    resuming = Checkpointer(tmp_path)  # a resuming run: the damaged step goes, so that it can be saved again
    assert resuming.restore(abstract).chunks_done == 1
    resuming.close()
    assert "2" not in [p.name for p in directory.iterdir()]

    empty = tmp_path / "empty"
    empty.mkdir()
    reader = Checkpointer(empty, read_only=True)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        reader.restore(abstract)
    reader.close()
    assert list(empty.iterdir()) == []


def test_session_clock_goes_on_from_the_restored_rows():
    from mjx_dacer.runner import _SessionClock

    started = time.perf_counter()
    fresh = _SessionClock(started, [], 0).row(1, 0, 20, 1.0, 2.0)
    assert fresh["session"] == 1 and 0 <= fresh["wall_seconds"] < 60 and fresh["run"] is None
    resumed = _SessionClock(started, [{"wall_seconds": 100.0, "session": 2}], 3).row(4, 6, 80, 1.0, 0.0)
    assert resumed["session"] == 3 and 100 <= resumed["wall_seconds"] < 160
    # A checkpoint from before timing.csv: the clock of the earlier sessions is not known.
    old = _SessionClock(started, [], 3).row(4, 6, 80, 1.0, 0.0)
    assert old["session"] == 2 and old["wall_seconds"] is None
    assert "unknown" in report.wall_clock_summary([old])


def test_a_snapshot_owns_its_memory_so_the_state_can_still_be_donated():
    import jax
    import jax.numpy as jnp

    from mjx_dacer.checkpoint import snapshot

    x = jnp.arange(100_000.0)
    leaves = snapshot({"a": x, "b": 3})
    step = jax.jit(lambda a: a.at[0].set(-1.0), donate_argnums=0)
    y = step(x)
    assert x.is_deleted()  # donated: no view of its buffer was left behind
    assert float(y[0]) == -1.0 and leaves[0][0] == 0.0 and leaves[0][-1] == 99_999.0 and int(leaves[1]) == 3


def test_checkpoints_are_written_while_the_next_chunk_runs(uninterrupted, tmp_path, monkeypatch):
    """A slow disk, simulated: each write takes 4 s. Training goes on meanwhile, the end of the run waits
    for the last write, and the run is the uninterrupted one, value for value. (4 s, not less: the tiny
    chunk must end before the write does, also on 2 cores busy with another test process.)"""
    from mjx_dacer.checkpoint import Checkpointer

    full, _ = uninterrupted
    write = Checkpointer.write
    events = []

    def slow_write(self, chunks_done, *args):
        events.append(f"write {chunks_done} starts")
        time.sleep(4.0)
        out = write(self, chunks_done, *args)
        events.append(f"write {chunks_done} ends")
        return out

    monkeypatch.setattr(Checkpointer, "write", slow_write)
    out = tmp_path / "run"
    lines = []
    Runner(tiny_config(), SPEC, out, progress=lambda line: (lines.append(line), events.append(line[:5]))).run()
    # Chunk 2's progress line comes before checkpoint 1 is written; the run returns after the last write.
    assert events.index("[2/3]") < events.index("write 1 ends") and "write 3 ends" in events, events
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3"]
    assert metric_rows(out) == metric_rows(full)
    # The line says when the training had to wait for a write (here before checkpoint 2's snapshot).
    assert any(line.startswith("checkpoint ") and "training waited" in line for line in lines), lines


def test_a_failed_checkpoint_write_stops_the_run_with_its_error(tmp_path, monkeypatch):
    from mjx_dacer.checkpoint import Checkpointer

    write = Checkpointer.write

    def disk_full_at_2(self, chunks_done, *args):
        if chunks_done == 2:
            raise OSError(28, "No space left on device")
        return write(self, chunks_done, *args)

    monkeypatch.setattr(Checkpointer, "write", disk_full_at_2)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        Runner(tiny_config(), SPEC, out, progress=lambda _: None).run()
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
