"""`mjx-dacer table` and `mjx-dacer plot`: Table 1 and curves across run directories, from fake run directories."""

import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml

from mjx_dacer import report
from mjx_dacer.cli import main
from mjx_dacer.config import Config
from mjx_dacer.rundir import RunDir, RunSpec

TOTAL = 100  # total_iterations of the fake runs: the metric's window is iterations >= 90


def make_run(path: pathlib.Path, env: str, curves: dict, algo: str | None = None, seed: int = 0,
             labels: tuple[str, ...] = ("default",), **settings) -> pathlib.Path:
    """A run directory holding config.yaml and metrics.csv.

    curves: (label, seed) -> eval returns at iterations 0, 10, ..., 10 * (P - 1); num_envs 20.
    algo: written into config.yaml's `algo`; None removes the key (an older run directory).
    settings: other config keys.
    """
    seeds = tuple(sorted({s for _, s in curves}))
    RunDir.create(path, Config().replace(env=env, total_iterations=TOTAL, num_envs=20, seed=seed, **settings),
                  RunSpec(grid=tuple({} if lb == "default" else {"noise_scale": float(lb.split("=")[1])}
                                     for lb in labels), seeds=seeds))
    raw = yaml.safe_load((path / "config.yaml").read_text())
    raw.pop("algo", None)
    if algo is not None:
        raw["algo"] = algo
    (path / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    rows = []
    for run, ((label, s), returns) in enumerate(sorted(curves.items())):
        for p, value in enumerate(returns):
            rows.append({"run": run, "label": label, "seed": s, "iteration": 10 * p, "env_steps": 200 * p + 20,
                         "eval_return": value, "eval_return_std": 1.0, "frozen": float(math.isnan(value))})
    rows.sort(key=lambda r: (r["iteration"], r["run"]))
    report.append_rows(path / "metrics.csv", rows)
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


# Seed 0 peaks at 100 inside the window (iterations 90, 100), seed 1 at 200; the 500 at
# iteration 50 lies outside the window and must not count.
HOPPER = {("default", 0): [0, 500, 10, 10, 10, 10, 10, 10, 10, 100, 50],
          ("default", 1): [0, 10, 10, 10, 10, 10, 10, 10, 10, 150, 200]}


def test_table_matches_a_hand_computation_and_shows_the_paper(tmp_path, capsys):
    run = make_run(tmp_path / "hopper", "Hopper-v5", HOPPER)
    assert main(["table", str(run), "--paper"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "highest evaluation return within the last 10% of iterations" in lines[0]
    header = next(ln for ln in lines if ln.startswith("| task"))
    assert header == "| task | DACER | DACER (paper) |"
    row = next(ln for ln in lines if ln.startswith("| Hopper-v5"))
    assert row == "| Hopper-v5 | 150.0 +- 50.0 (2 seeds) | 4104 +- 49 |"


def test_missing_algo_key_is_dacer_and_tasks_follow_the_papers_order(tmp_path, capsys):
    hop = make_run(tmp_path / "hop", "Hopper-v5", HOPPER, algo=None)
    mg = make_run(tmp_path / "mg", "MultiGoal-v0", {("default", 0): [1.0] * 11})
    ant = make_run(tmp_path / "ant", "Ant-v5", {("default", 0): [3.0] * 11}, algo="dacer")
    sac = make_run(tmp_path / "sac", "Hopper-v5", {("default", 0): [7.0] * 11}, algo="sac")
    assert main(["table", str(mg), str(hop), str(sac), str(ant), "--paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| task | DACER | DACER (paper) | SAC | SAC (paper) |"
    body = [ln for ln in lines[4:] if ln.startswith("|")]
    assert [ln.split(" | ")[0] for ln in body] == ["| Ant-v5", "| Hopper-v5", "| MultiGoal-v0"]
    assert body[1] == "| Hopper-v5 | 150.0 +- 50.0 (2 seeds) | 4104 +- 49 | 7.0 +- 0.0 (1 seed) | 2483 +- 943 |"
    assert body[2] == "| MultiGoal-v0 | 1.0 +- 0.0 (1 seed) | - | - | - |"  # not in the paper


def test_directories_of_one_task_are_pooled_by_seed(tmp_path):
    # Two single-seed runs: seed offsets 0 and 1 make PRNG seeds 0 and 1.
    a = make_run(tmp_path / "a", "Hopper-v5", {("default", 0): HOPPER["default", 0]}, seed=0)
    b = make_run(tmp_path / "b", "Hopper-v5", {("default", 0): HOPPER["default", 1]}, seed=1)
    groups = report.pool_by_seed(report.open_runs([a, b, a]))  # a directory given twice is read once
    assert list(groups) == [("Hopper-v5", "dacer", "default")]
    curves = groups["Hopper-v5", "dacer", "default"]
    assert [c.seed for c in curves] == [0, 1]
    cell = report.table_cell(curves)
    np.testing.assert_allclose(cell.per_seed, [100.0, 200.0])
    assert report.cell_text(cell) == "150.0 +- 50.0 (2 seeds)"



def test_directories_of_one_group_that_share_a_seed_are_told_apart_not_pooled(tmp_path, capsys):
    """Pooled, a seed held twice would count twice: such directories are separate experiments (`ablate`'s
    panels; a task trained twice from seed 0), labelled by the config keys that differ between them, or by
    their folder where the configs are the same."""
    one = {("default", 0): HOPPER["default", 0]}
    steps10 = make_run(tmp_path / "abl" / "steps-T10", "Hopper-v5", one, diffusion_steps=10)
    steps30 = make_run(tmp_path / "abl" / "steps-T30", "Hopper-v5", {("default", 0): HOPPER["default", 1]},
                       diffusion_steps=30)
    again = make_run(tmp_path / "again" / "steps-T30", "Hopper-v5", one, diffusion_steps=30)
    other_seed = make_run(tmp_path / "seed1", "Hopper-v5", one, seed=1, diffusion_steps=10)  # pooled with T10
    sweep = make_run(tmp_path / "sweep", "Hopper-v5", {("noise_scale=0.2", 0): [5.0] * 11},
                     labels=("noise_scale=0.2",))
    groups = report.pool_by_seed(report.open_runs([steps10, steps30, sweep]))
    assert sorted(label for _, _, label in groups) == ["diffusion_steps=10", "diffusion_steps=30", "noise_scale=0.2"]
    assert report.cell_text(report.table_cell(groups["Hopper-v5", "dacer", "diffusion_steps=30"])) \
        == "200.0 +- 0.0 (1 seed)"
    # The same config twice (and one more): its folder's name, or its path where the names repeat too.
    groups = report.pool_by_seed(report.open_runs([steps10, steps30, again, other_seed]))
    assert {label: [c.seed for c in curves] for (_, _, label), curves in groups.items()} == {
        "diffusion_steps=10": [0, 1], f"diffusion_steps=30 ({steps30})": [0], f"diffusion_steps=30 ({again})": [0]}
    twin = make_run(tmp_path / "twin", "Hopper-v5", one, diffusion_steps=10)  # steps10 trained again
    assert sorted(label for _, _, label in report.pool_by_seed(report.open_runs([steps10, twin]))) == [
        "steps-T10", "twin"]
    assert main(["table", str(steps10), str(steps30)]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| task"))
    assert header == "| task | DACER [diffusion_steps=10] | DACER [diffusion_steps=30] |"
    # Numbers in labels sort by value; a plot of many lines holds its legend below the axes.
    keys = [("Hopper-v5", "dacer", f"diffusion_steps={t}") for t in (30, 5, 10)] + [("Hopper-v5", "dacer", "default")]
    assert [label for _, label, _ in report.columns(keys)] == [
        "default", "diffusion_steps=5", "diffusion_steps=10", "diffusion_steps=30"]
    many = [make_run(tmp_path / "many" / f"T{t}", "Hopper-v5", one, diffusion_steps=t) for t in (2, 4, 6, 8, 10)]
    fig = report.plot_by_task(report.pool_by_seed(report.open_runs(many)), tmp_path / "many.png")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 5 and ax.get_legend().get_bbox_to_anchor().y1 < ax.bbox.y0


def test_frozen_seeds_are_excluded_and_counted(tmp_path, capsys):
    frozen = [0, 10, 10, 10, 10, 10, 10, math.nan, math.nan, math.nan, math.nan]
    run = make_run(tmp_path / "r", "Walker2d-v5", {**{("default", s): v for (_, s), v in HOPPER.items()},
                                                   ("default", 2): frozen})
    assert main(["table", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| Walker2d-v5 | 150.0 +- 50.0 (2 seeds; 1 NaN excluded) |" in out
    assert "1 seed excluded: NaN evaluation returns" in out.splitlines()[0]


def test_grid_labels_become_columns_and_latex_parses(tmp_path):
    run = make_run(tmp_path / "sweep", "Hopper-v5",
                   {("noise_scale=0.1", 0): [1.0] * 11, ("noise_scale=0.2", 0): [2.0] * 11},
                   labels=("noise_scale=0.1", "noise_scale=0.2"))
    out = tmp_path / "table.tex"
    done = cli("table", run, "--format", "latex", "--paper", "--out", out)
    assert done.returncode == 0, done.stderr
    tex = out.read_text()
    assert tex == done.stdout
    lines = tex.splitlines()
    assert r"\begin{tabular}{lccc}" in lines and r"\end{tabular}" in lines
    assert any(ln.startswith(r"\caption{") and r"$\pm$" in ln for ln in lines)
    header = next(ln for ln in lines if ln.startswith("task &"))
    assert header == r"task & DACER [noise\_scale=0.1] & DACER [noise\_scale=0.2] & DACER (paper) \\"
    row = next(ln for ln in lines if ln.startswith("Hopper-v5"))
    cells = row.removesuffix(r" \\").split(" & ")
    assert cells == ["Hopper-v5", r"$1.0 \pm 0.0$ (1 seed)", r"$2.0 \pm 0.0$ (1 seed)", r"$4104 \pm 49$"]


@pytest.mark.parametrize("damage, fragment", [
    ("absent", "is not a run directory (no such directory)"),
    ("empty directory", "is not a run directory (no config.yaml)"),
    ("no metrics.csv", "has no metrics.csv"),
    ("header only", "has no evaluation rows"),
    ("truncated row", "metrics.csv is damaged: line 3 has fewer fields than the header"),
    ("not text", "metrics.csv is damaged: it is not text"),
    ("text iteration", "metrics.csv is damaged: line 2: iteration 'ten' is not an integer"),
    ("config.yaml not YAML", "config.yaml is not valid YAML"),
    ("config.yaml a list", "config.yaml does not hold a config mapping"),
])
def test_unusable_run_directories_exit_2_with_one_line(tmp_path, damage, fragment, capsys):
    path = tmp_path / "run"
    header = "run,label,seed,iteration,env_steps,eval_return\n"
    if damage == "empty directory":
        path.mkdir()
    elif damage != "absent":
        make_run(path, "Hopper-v5", HOPPER)
        metrics, config = path / "metrics.csv", path / "config.yaml"
        if damage == "no metrics.csv":
            metrics.unlink()
        elif damage == "header only":
            metrics.write_text(header)
        elif damage == "truncated row":  # a write cut short
            metrics.write_text(header + "0,default,0,0,20,1.5\n0,default,0,10,2")
        elif damage == "not text":
            metrics.write_bytes(b"\xff\xfe\x00\x81")
        elif damage == "text iteration":
            metrics.write_text(header + "0,default,0,ten,20,1.5\n")
        elif damage == "config.yaml not YAML":
            config.write_text("env: [Hopper-v5\n")
        else:
            config.write_text("- 1\n- 2\n")
    for command in ("table", "plot"):  # the same readers: one line each, nothing written
        code = main([command, str(path), "--out", str(tmp_path / f"{command}.png")])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2 and len(lines) == 1, captured.err
        assert lines[0].startswith("mjx-dacer: error: ") and fragment in lines[0], captured.err
        assert captured.out == "" and not (tmp_path / f"{command}.png").exists()


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    """An image matplotlib cannot write, a folder that does not exist: one line, exit 2; a file the file system
    refuses: its own words and the path, exit 1; never a traceback."""
    run = make_run(tmp_path / "run", "Hopper-v5", HOPPER)
    for args, code, fragment in [
        (["plot", run, "--out", tmp_path / "curves.txt"], 2, "not an image format matplotlib writes"),
        (["plot", run, "--out", tmp_path / "nowhere" / "c.png"], 2, "does not exist"),
        (["table", run, "--out", tmp_path / "run"], 2, "is a directory; give a file name"),
        (["multigoal", run, "--figure", tmp_path / "fig.txt"], 2, "--figure"),
        (["multigoal", run, "--run", "-1"], 2, "--run must be >= 0"),
    ]:
        assert main([str(a) for a in args]) == code
        err = capsys.readouterr().err
        assert err.startswith("mjx-dacer: error: ") and fragment in err and len(err.strip().splitlines()) == 1, err
    if pathlib.Path("/proc/self").is_dir():  # Linux: /proc takes no new files, whoever asks (root too)
        assert main(["table", str(run), "--out", "/proc/mjx_dacer_table.md"]) == 1
        err = capsys.readouterr().err
        assert err.strip() == "mjx-dacer: error: No such file or directory: /proc/mjx_dacer_table.md", err


def test_bootstrap_ci_matches_numpy():
    values = np.array([[1.0, 5.0, 2.0, 0.0], [3.0, 6.0, 2.5, 10.0], [8.0, 4.0, 1.0, 20.0]])  # (S=3, P=4)
    lo, hi = report.bootstrap_ci(values)
    idx = np.random.default_rng(0).integers(0, 3, size=(1000, 3))
    want = np.percentile(values[idx].mean(axis=1), [2.5, 97.5], axis=0)
    np.testing.assert_allclose(lo, want[0])
    np.testing.assert_allclose(hi, want[1])
    assert np.all(lo <= values.mean(0)) and np.all(values.mean(0) <= hi)
    # A point with a frozen (NaN) seed uses the finite seeds; a single finite seed gives no band.
    with_nan = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, np.nan]])
    lo, hi = report.bootstrap_ci(with_nan)
    assert np.isfinite(lo[0]) and np.isnan(lo[1]) and np.isnan(hi[1])
    np.testing.assert_allclose(report.finite_mean(with_nan), [3.0, 2.0])


@pytest.mark.parametrize("x", ["iterations", "env_steps"])
def test_plot_has_one_subplot_per_task_and_one_line_per_algorithm(tmp_path, x):
    runs = [make_run(tmp_path / "hop", "Hopper-v5", HOPPER),
            make_run(tmp_path / "sac", "Hopper-v5", {("default", 0): [7.0] * 11}, algo="sac"),
            make_run(tmp_path / "ant", "Ant-v5", {("default", 0): [3.0] * 11})]
    out = tmp_path / "curves.png"
    fig = report.plot_by_task(report.pool_by_seed(report.open_runs(runs)), out, x=x)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [ax.get_title() for ax in fig.axes] == ["Ant-v5", "Hopper-v5"]
    ant, hopper = fig.axes
    assert [ln.get_label() for ln in hopper.get_lines()] == ["DACER (2 seeds)", "SAC (1 seed)"]
    assert len(hopper.collections) == 1 and len(ant.collections) == 0  # a band only with >1 seed
    xs = hopper.get_lines()[0].get_xdata()
    np.testing.assert_array_equal(xs, np.arange(11) * (10 if x == "iterations" else 200) + (0 if x == "iterations"
                                                                                            else 20))
    np.testing.assert_allclose(hopper.get_lines()[0].get_ydata(), np.mean(list(HOPPER.values()), axis=0))
    assert "bootstrap 95% CI of the mean" in fig._suptitle.get_text()


def test_plot_cli_writes_the_png(tmp_path):
    run = make_run(tmp_path / "hop", "Hopper-v5", HOPPER)
    out = tmp_path / "c.png"
    done = cli("plot", run, "--x", "env_steps", "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "1 task(s)" in done.stdout


# ------------------------------------------------------------------- wall clock (timing.csv)
def write_timing(path: pathlib.Path, rows: list[dict]) -> None:
    report.append_rows(path / "timing.csv", [
        {"run": None, "chunk": i + 1, "chunk_seconds": 1.0, "compile_seconds": None, "session": 1, **r}
        for i, r in enumerate(rows)])


def test_reach_gives_each_seeds_iteration_env_steps_and_wall_clock(tmp_path, capsys):
    shared = make_run(tmp_path / "hopper", "Hopper-v5", HOPPER)
    # One program: every run ends the chunk of iteration 10p at 60p + 30 s.
    write_timing(shared, [{"iteration": 10 * p, "env_steps": 200 * p + 20, "wall_seconds": 60.0 * p + 30}
                          for p in range(11)])
    # Runs one after another (PPO): each has its own clock; run 1's is 1000 s ahead. No timing.csv: "-".
    one_by_one = make_run(tmp_path / "walker", "Walker2d-v5", HOPPER)
    write_timing(one_by_one, [{"run": run, "iteration": 10 * p, "env_steps": 200 * p + 20,
                               "wall_seconds": 10.0 * p + 1000 * run} for run in (0, 1) for p in range(11)])
    untimed = make_run(tmp_path / "ant", "Ant-v5", HOPPER)
    assert main(["table", str(shared), str(one_by_one), str(untimed), "--reach", "100"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ") and "task" not in ln]
    # Seed 0 first reaches 100 at iteration 10 (500), seed 1 at iteration 90 (150); bests 500 and 200.
    assert rows == [  # tasks in the paper's order
        "| Ant-v5 | DACER | default | 0 | 10 | 220 | - | 500.0 | 500.0 |",
        "| Ant-v5 | DACER | default | 1 | 90 | 1820 | - | 150.0 | 200.0 |",
        "| Walker2d-v5 | DACER | default | 0 | 10 | 220 | 0m10s | 500.0 | 500.0 |",
        "| Walker2d-v5 | DACER | default | 1 | 90 | 1820 | 18m10s | 150.0 | 200.0 |",
        "| Hopper-v5 | DACER | default | 0 | 10 | 220 | 1m30s | 500.0 | 500.0 |",
        "| Hopper-v5 | DACER | default | 1 | 90 | 1820 | 9m30s | 150.0 | 200.0 |",
    ]
    assert main(["table", str(shared), "--reach", "300"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| Hopper")]
    assert rows[1] == "| Hopper-v5 | DACER | default | 1 | not reached | | | | 200.0 |"
    for bad, fragment in ((["--reach", "nan"], "--reach must be a finite return"),
                          (["--reach", "1", "--format", "latex"], "--reach prints its own Markdown table")):
        out = cli("table", shared, *bad)
        assert out.returncode == 2 and fragment in out.stderr and len(out.stderr.strip().splitlines()) == 1, out


def test_wall_clock_summary_adds_up_timing_rows():
    # A warm-up chunk (iteration 0, advances none), then two chunks of 10 iterations in 2 s each.
    program = [{"run": None, "iteration": 0, "wall_seconds": 16.0, "chunk_seconds": 1.0, "compile_seconds": 10.0,
                "session": 1},
               {"run": None, "iteration": 10, "wall_seconds": 25.0, "chunk_seconds": 2.0, "compile_seconds": 5.0,
                "session": 1},
               {"run": None, "iteration": 20, "wall_seconds": 40.0, "chunk_seconds": 2.0, "compile_seconds": 0.0,
                "session": 2}]
    assert report.wall_clock_summary(program) == (
        "Wall clock: 0m40s to iteration 20 (program build and compiles included); compiling 0m15s; the chunks "
        "0m05s; 200.00 ms per training iteration; 2 sessions (each chunk in timing.csv).")
    # Two runs one after another with their own clocks (30 s and 50 s): 80 s; compiles not known.
    by_run = [{"run": run, "iteration": it, "wall_seconds": wall, "chunk_seconds": cs, "compile_seconds": None,
               "session": 1}
              for run, it, wall, cs in ((0, 10, 20.0, 20.0), (0, 20, 30.0, 10.0), (1, 10, 40.0, 40.0),
                                        (1, 20, 50.0, 10.0))]
    assert report.wall_clock_summary(by_run) == (
        "Wall clock: 1m20s to iteration 20 (program build and compiles included); the chunks 1m20s; "
        "2000.00 ms per training iteration; 1 session (each chunk in timing.csv).")
    assert report.wall_clock_summary([]) is None
    resumed_old = [{**program[-1], "wall_seconds": None}]
    assert report.wall_clock_summary(resumed_old).startswith("Wall clock: unknown (resumed from a checkpoint")
