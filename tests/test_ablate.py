"""`mjx-dacer ablate`: the paper's ablation panels (Sec. 5.3) as ordinary run directories."""

import subprocess
import sys

import pytest

from mjx_dacer import report
from mjx_dacer.cli import ablate
from mjx_dacer.config import load_config
from mjx_dacer.rundir import RunDir

TINY = ["total_iterations=2", "eval_interval=2", "warmup_steps=20", "num_envs=10", "buffer_capacity=200",
        "batch_size=8", "eval_episodes=1", "hidden_sizes=8,8", "critic_hidden_sizes=8,8", "diffusion_steps=2",
        "entropy_samples=6", "alpha_update_interval=1"]


def test_panels_are_the_papers():
    config = load_config("walker2d")
    assert ablate.runs(config, "regulator") == [("regulator", config, ({}, {"noise_scale": 0.0}))]
    [(_, _, (adaptive, fixed, decaying))] = ablate.runs(config, "noise")
    assert adaptive == {} and fixed["lr_alpha"] == decaying["lr_alpha"] == 0.0
    assert fixed["noise_scale"] * config.initial_alpha == 0.1  # lambda * alpha held at 0.1
    start = decaying["noise_scale"] * config.initial_alpha
    assert (start, start * (1 - decaying["noise_decay"])) == pytest.approx((0.27, 0.1))  # 0.27 -> 0.1
    steps = ablate.runs(config, "steps")
    assert [(name, c.diffusion_steps) for name, c, _ in steps] == [("steps-T10", 10), ("steps-T20", 20),
                                                                   ("steps-T30", 30)]


def test_ablate_writes_one_run_directory_per_program_and_fixed_alpha_stays_fixed(tmp_path):
    out = tmp_path / "abl"
    sets = sum((["--set", t] for t in TINY), [])
    done = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "ablate", "--config", "multigoal", "--seeds", "1",
                           "--panel", "regulator", "--panel", "noise", *sets, "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["noise", "regulator"]
    _, config, spec = RunDir.open(out / "noise")
    assert config.env == "MultiGoal-v0" and len(spec.grid) == 3
    rows = report.read_rows(out / "noise" / "metrics.csv")
    fixed = [r for r in rows if r["label"] != "default" and r["iteration"] > 0]
    adaptive = [r for r in rows if r["label"] == "default" and r["iteration"] > 0]
    assert fixed and all(abs(r["alpha"] - config.initial_alpha) < 1e-6 for r in fixed)  # lr_alpha 0
    assert all(abs(r["alpha"] - config.initial_alpha) > 1e-4 for r in adaptive)  # the regulator moved it
    labels = {r["label"] for r in report.read_rows(out / "regulator" / "metrics.csv")}
    assert labels == {"default", "noise_scale=0"}
    again = subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "ablate", "--config", "multigoal", "--algo", "sac",
                            "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    # The ablations are DACER's, each panel a run directory resumed on its own: ablate has no --algo, --resume.
    assert again.returncode == 2 and "unrecognized arguments: --algo sac" in again.stderr, again.stderr
    assert not (tmp_path / "x").exists()
