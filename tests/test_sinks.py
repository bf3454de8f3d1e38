"""The TensorBoard and W&B sinks and curves.png, fed ChunkResults made by hand (no training)."""

from __future__ import annotations

import math
import pathlib
import struct
import sys

import numpy as np
import pytest

import mjx_dacer
from mjx_dacer import report, sinks
from mjx_dacer.config import Config, ConfigError
from mjx_dacer.rundir import RunDir, RunSpec

AGENT = ("actor_loss", "alpha", "critic_loss", "entropy", "q_mean", "q_std", "sigma_bound", "target_entropy",
         "target_mean", "td_error")
WARMUP_STEPS, NUM_ENVS = 400, 20  # env steps of the warm-up; env steps per iteration


def row(run, label, seed, iteration, *, warmup=False, frozen=False, episodes=3, **values):
    """A metrics.csv row as `sinks.chunk_rows` makes it: None where a value does not exist."""
    r = {"run": run, "label": label, "seed": seed, "iteration": iteration,
         "env_steps": WARMUP_STEPS + NUM_ENVS * iteration,
         "eval_return": -100.0 + iteration + run, "eval_return_std": 5.0, "train_return": -150.0 + iteration,
         "train_episodes": episodes, "updates": 0 if warmup else iteration, "policy_iterations": iteration // 2}
    r.update({k: (None if warmup else 0.5 + i + run) for i, k in enumerate(AGENT)})
    r.update(frozen=int(frozen), diverged=0, nonfinite_iteration=-1, nonfinite_metric="")
    if episodes == 0:
        r["train_return"] = None
    if frozen:
        r.update({k: None for k in r if k not in (*report.ID_COLUMNS, *sinks.GUARD_COLUMNS)})
    r.update(values)
    return r


def result(rows, chunk=1, warmup=False):
    return sinks.ChunkResult(chunk=chunk, num_chunks=3, iteration=rows[0]["iteration"],
                             env_steps=rows[0]["env_steps"], warmup=warmup, seconds=1.0, eta_seconds=None,
                             env_steps_per_second=1.0, updates_per_second=1.0, rows=rows)


LABELS = ("lr_actor=0.0001", "a/b c")  # the second: a label no folder name can hold as it is
CHUNKS = [
    [row(0, LABELS[0], 0, 0, warmup=True, episodes=0), row(1, LABELS[1], 0, 0, warmup=True, episodes=0)],
    [row(0, LABELS[0], 0, 10), row(1, LABELS[1], 0, 10, q_std=math.nan)],
    [row(0, LABELS[0], 0, 20), row(1, LABELS[1], 0, 20, frozen=True)],
]


# ----------------------------------------------------------------------------- TensorBoard
def read_events(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the scalar events in `folder`, read from the TFRecord files directly:
    per record a uint64 length, its CRC, the Event proto, the proto's CRC."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def write_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    sink = sinks.TensorBoardSink(RunDir(tmp_path))
    sink.start([])
    for i, rows in enumerate(CHUNKS):
        sink.write(result(rows, chunk=i + 1, warmup=i == 0))
    sink.close()
    return tmp_path / "tb"


def test_a_resume_writes_tensorboard_again_from_the_kept_rows(tmp_path):
    """Stopped after chunk 3 with its checkpoint after chunk 2: chunk 3 runs again (on a GPU, not always to
    the same numbers). TensorBoard must show it once, with the new value, as metrics.csv does."""
    tb = write_tensorboard(tmp_path)
    again = [dict(r, eval_return=r["eval_return"] + 1000.0) if r["eval_return"] is not None else r for r in CHUNKS[2]]
    sink = sinks.TensorBoardSink(RunDir(tmp_path))
    sink.start([r for rows in CHUNKS[:2] for r in rows])
    sink.write(result(again, chunk=3))
    sink.close()
    events = read_events(tb / "lr_actor=0.0001" / "seed0")
    assert events["eval/return"] == [(0, -100.0), (10, -90.0), (20, -80.0 + 1000.0)]
    assert events["by_env_steps/eval/return"] == [(400, -100.0), (600, -90.0), (800, 920.0)]


def test_tensorboard_runs_are_named_by_label_and_seed_and_tags_are_grouped(tmp_path):
    tb = write_tensorboard(tmp_path)
    assert sorted(str(p.relative_to(tb)) for p in tb.glob("*/*")) == ["a_b_c/seed0", "lr_actor=0.0001/seed0"]

    events = read_events(tb / "lr_actor=0.0001" / "seed0")
    expected_tags = {"eval/return", "eval/return_std", "train/return", "train/episodes", "train/updates",
                     "train/policy_iterations", "loss/actor", "loss/critic", "alpha/alpha", "alpha/entropy",
                     "alpha/target_entropy", "critic/q_mean", "critic/q_std", "critic/sigma_bound",
                     "critic/target_mean", "critic/td_error", "train/env_steps", "by_env_steps/eval/return",
                     "by_env_steps/train/return"}
    assert set(events) == expected_tags
    # x = iteration; the warm-up's row (iteration 0) has no losses and no training episode: not written.
    assert [s for s, _ in events["eval/return"]] == [0, 10, 20]
    assert events["eval/return"][0][1] == pytest.approx(-100.0)
    assert [s for s, _ in events["loss/actor"]] == [10, 20]
    assert events["loss/critic"] == [(10, pytest.approx(2.5)), (20, pytest.approx(2.5))]
    assert [s for s, _ in events["train/return"]] == [10, 20]
    assert events["train/updates"] == [(0, 0.0), (10, 10.0), (20, 20.0)]
    # env steps: a tag at x = iteration, and the returns again at x = env steps.
    assert events["train/env_steps"] == [(0, 400.0), (10, 600.0), (20, 800.0)]
    assert events["by_env_steps/eval/return"] == [(400, -100.0), (600, -90.0), (800, -80.0)]
    assert [s for s, _ in events["by_env_steps/train/return"]] == [600, 800]

    # The second run: a NaN is not written, and nothing at all once it is frozen.
    other = read_events(tb / "a_b_c" / "seed0")
    assert "critic/q_std" not in other  # None in the warm-up, NaN at 10, frozen at 20
    assert [s for s, _ in other["critic/q_mean"]] == [10]
    assert [s for s, _ in other["eval/return"]] == [0, 10]
    assert all(math.isfinite(v) for pts in other.values() for _, v in pts)


def test_tensorboard_reads_back_with_tensorboard(tmp_path):
    """What `tensorboard --logdir RUN/tb` loads (the `tensorboard` extra)."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    tb = write_tensorboard(tmp_path)
    acc = event_accumulator.EventAccumulator(str(tb / "lr_actor=0.0001" / "seed0"))
    acc.Reload()
    assert "alpha/entropy" in acc.Tags()["scalars"]
    assert [(e.step, e.value) for e in acc.Scalars("alpha/entropy")] == [(10, 3.5), (20, 3.5)]


def test_tag_fallbacks_and_folder_names():
    assert sinks.metric_tag("value_loss") == "loss/value"
    assert sinks.metric_tag("kl") == "other/kl"
    assert sinks.path_part("..") == "_" and sinks.path_part("x=1e-05,y=-2") == "x=1e-05,y=-2"
    tb = sinks.TensorBoardSink(RunDir(pathlib.Path("unused")))
    assert tb.folder({"run": 0, "label": "a/b", "seed": 0}) == "a_b/seed0"
    assert tb.folder({"run": 1, "label": "a:b", "seed": 0}) == "a_b~2/seed0"  # not the same folder
    assert tb.folder({"run": 2, "label": "a/b", "seed": 1}) == "a_b/seed1"


# ----------------------------------------------------------------------------------- W&B
def test_wandb_one_run_per_grid_point_and_seed(tmp_path, fake_wandb):
    config = Config().replace(env="MultiGoal-v0", total_iterations=20, num_envs=NUM_ENVS, seed=7)
    spec = RunSpec(grid=({"lr_actor": 1e-4}, {"lr_actor": 3e-4}), seeds=(0, 1))
    run_dir = RunDir.create(tmp_path / "sweep", config, spec)
    sink = sinks.WandbSink("my-project", run_dir, config, spec)
    sink.start([])
    labels = [spec.label(g) for g, _ in spec.entries]
    rows = [[row(b, labels[b], s, it, warmup=it == 0, episodes=0 if it == 0 else 3)
             for b, (_, s) in enumerate(spec.entries)] for it in (0, 10)]
    rows[1][3] = row(3, labels[3], 1, 10, frozen=True)
    for i, r in enumerate(rows):
        sink.write(result(r, chunk=i + 1))
    sink.close()

    runs = fake_wandb.runs
    assert len(runs) == 4 and all(r.finished for r in runs)
    kw = runs[3].kwargs
    assert kw["project"] == "my-project"
    assert kw["group"] == "sweep/lr_actor=0.0003" and kw["name"] == "sweep/lr_actor=0.0003/seed1"
    assert [r.kwargs["group"] for r in runs] == ["sweep/lr_actor=0.0001"] * 2 + ["sweep/lr_actor=0.0003"] * 2
    assert kw["config"]["lr_actor"] == 3e-4 and kw["config"]["env"] == "MultiGoal-v0"
    assert kw["config"]["run"] == {"index": 3, "seed": 1, "prng_seed": 8, "grid_label": "lr_actor=0.0003",
                                   "grid_point": {"lr_actor": 3e-4}, "dir": str(run_dir.path.resolve())}
    assert kw["reinit"] == "create_new" and kw["resume"] == "allow"
    assert kw["tags"] == ["MultiGoal-v0", "dacer"]
    assert len({r.kwargs["id"] for r in runs}) == 4

    # step = iteration; the TensorBoard tags; None (warm-up losses, no episode) not sent; a frozen run: nothing.
    step0, data0 = runs[0].logged[0]
    assert step0 == 0 and "loss/actor" not in data0 and "train/return" not in data0
    assert data0["eval/return"] == -100.0 and data0["train/env_steps"] == WARMUP_STEPS
    step1, data1 = runs[0].logged[1]
    assert step1 == 10 and set(data1) == {sinks.metric_tag(k) for k in row(0, "", 0, 10)
                                          if k not in (*report.ID_COLUMNS, *sinks.GUARD_COLUMNS)} | {
        "train/env_steps"}
    assert data1["alpha/alpha"] == 1.5 and data1["train/updates"] == 10
    assert [s for s, _ in runs[3].logged] == [0]

    # A resumed run continues the same W&B runs.
    again = sinks.WandbSink("my-project", RunDir(tmp_path / "sweep"), config, spec)
    again.start(rows[0])
    again.close()
    assert [r.kwargs["id"] for r in runs[4:]] == [r.kwargs["id"] for r in runs[:4]]


def test_wandb_init_failure_is_one_line(tmp_path, fake_wandb):
    def init(**kwargs):
        raise RuntimeError("api_key not configured (no-tty)")

    fake_wandb.init = init
    spec = RunSpec(grid=({},), seeds=(0,))
    sink = sinks.WandbSink("p", RunDir(tmp_path), Config(), spec)
    with pytest.raises(ConfigError, match="wandb.init failed .*api_key not configured.*wandb login"):
        sink.start([])


def test_track_without_wandb_fails_before_the_run_directory_is_made(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ModuleNotFoundError
    with pytest.raises(ConfigError) as e:
        sinks.check_tracking_available("my-project")
    assert str(e.value) == "--track needs wandb: pip install 'mjx_dacer[wandb]' (or wandb)"
    sinks.check_tracking_available(None)  # tracking off: nothing needed
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="needs wandb"):
        mjx_dacer.run(Config().replace(env="MultiGoal-v0"), out, track="my-project")
    assert not out.exists()


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 129, "a:b"])
def test_track_rejects_names_wandb_refuses(bad, fake_wandb):
    with pytest.raises(ConfigError, match="W&B project name"):
        sinks.check_tracking_available(bad)


# ------------------------------------------------------------------------------- curves
def test_seed_band_is_the_bootstrap_interval_of_the_mean():
    returns = np.array([[0.0, 10.0, 20.0], [4.0, 30.0, 21.0]])
    mean, (lo, hi) = report.seed_band(returns)
    np.testing.assert_allclose(mean, returns.mean(axis=0))
    idx = np.random.default_rng(report.BOOTSTRAP_SEED).integers(0, 2, size=(report.BOOTSTRAP_RESAMPLES, 2))
    want_lo, want_hi = np.percentile(returns[idx].mean(axis=1), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(lo, want_lo)
    np.testing.assert_allclose(hi, want_hi)
    # Two seeds: the band lies within the seeds' range, the 95% t-interval (quantile 12.706) far outside it.
    assert np.all(lo >= returns.min(axis=0)) and np.all(hi <= returns.max(axis=0))
    t_half = 12.706 * returns.std(axis=0, ddof=1) / math.sqrt(2)
    assert np.all(mean + t_half > returns.max(axis=0) + 5)
    mean1, band1 = report.seed_band(returns[:1])
    assert band1 is None and np.array_equal(mean1, returns[0])


def test_env_steps_axis_is_read_from_the_rows():
    rows = [row(0, "default", 0, it) for it in (0, 10, 20)]
    assert report.env_steps_map(rows) == (WARMUP_STEPS, NUM_ENVS)
    assert report.env_steps_map(rows[:1]) is None  # one point: no line
    assert report.env_steps_map([*rows, {**rows[1], "env_steps": 601}]) is None  # not one line


def test_write_curves_draws_the_band_and_both_x_axes(tmp_path):
    rows = [row(0, "default", 0, it, eval_return=float(it)) for it in (0, 10, 20)]
    rows += [row(1, "default", 1, it, eval_return=float(2 * it)) for it in (0, 10, 20)]
    path = tmp_path / "curves.png"
    fig = report.write_curves(rows, path, "DACER on MultiGoal-v0")
    assert path.stat().st_size > 0
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [0, 10, 20])  # iteration 0: the untrained policy
    np.testing.assert_allclose(line.get_ydata(), [0.0, 15.0, 30.0])
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    lo, hi = report.bootstrap_ci(np.array([[0.0, 10.0, 20.0], [0.0, 20.0, 40.0]]))
    assert ys.min() == pytest.approx(lo.min()) and ys.max() == pytest.approx(hi.max())
    assert "bootstrap 95% CI" in ax.get_legend().get_title().get_text()
    assert "default (2 seeds)" in [t.get_text() for t in ax.get_legend().get_texts()]
    top = [a for a in [*fig.axes, *ax.child_axes] if a is not ax and "env steps" in a.get_xlabel()]
    assert len(top) == 1 and "400" in top[0].get_xlabel()

    one = report.write_curves(rows[:3], tmp_path / "one.png", "one seed")
    assert not one.axes[0].collections and "no band" in one.axes[0].get_legend().get_title().get_text()


def test_runner_adds_the_wandb_sink_only_when_tracking(tmp_path, fake_wandb):
    from mjx_dacer.runner import Runner

    config = mjx_dacer.load_config("multigoal").replace(
        total_iterations=4, eval_interval=2, warmup_steps=20, num_envs=10, buffer_capacity=200, batch_size=8,
        eval_episodes=2, hidden_sizes=(8, 8), critic_hidden_sizes=(8, 8), diffusion_steps=2)
    spec = RunSpec(grid=({},), seeds=(0,))
    tracked = Runner(config, spec, tmp_path / "a", progress=lambda _: None, track="proj")
    assert [type(s).__name__ for s in tracked.sinks][-1] == "WandbSink"
    assert not (tmp_path / "a").exists()  # nothing written before `run`
    plain = Runner(config, spec, tmp_path / "b", progress=lambda _: None)
    assert not any(isinstance(s, sinks.WandbSink) for s in plain.sinks)
