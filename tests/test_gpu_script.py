""".ci/gpu, the GPU checks' driver, run here with a stand-in interpreter.

The script is what a short device session runs, once, with no second try, so
its plumbing is checked on the CPU: the parts it accepts, the order it runs
them in, the steps it cuts or skips to fit GPU_DEADLINE, and what every
Python process it starts sees (the installed package first on PYTHONPATH, the
checkout kept off sys.path). The stand-in records each call instead of running
it, so nothing here needs a GPU or takes more than a few seconds.
"""

from __future__ import annotations

import os
import pathlib
import re
import stat
import subprocess
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "gpu"


@pytest.fixture()
def fake_python(tmp_path):
    """An executable that logs its arguments (line breaks as spaces) and environment, a line per call; exits 0.
    Given `--trace DIR`, it leaves a file three folders down in DIR, as jax.profiler does."""
    log = tmp_path / "calls.log"
    exe = tmp_path / "python"
    exe.write_text('#!/usr/bin/env bash\n'
                   'echo "PYTHONPATH=${PYTHONPATH:-} PYTHONSAFEPATH=${PYTHONSAFEPATH:-} ARGS=$*" | tr "\\n" " " '
                   '>> "$FAKE_LOG"\necho >> "$FAKE_LOG"\n'
                   'prev=; for a in "$@"; do if [ "$prev" = --trace ]; then mkdir -p "$a/plugins/profile/run" && '
                   'echo trace > "$a/plugins/profile/run/host.xplane.pb"; fi; prev=$a; done\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe, log


def run_script(tmp_path, fake_python, *parts, **env):
    exe, log = fake_python
    full = {**os.environ, "PYTHON": str(exe), "FAKE_LOG": str(log), **env}
    full.pop("PYTHONPATH", None)
    return subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), *parts], env=full,
                          capture_output=True, text=True, timeout=120)


def steps(tmp_path) -> list[tuple[str, str, int]]:
    """(name, exit, limit) of each row of OUT/steps.md."""
    rows = []
    for line in (tmp_path / "out" / "steps.md").read_text().splitlines()[2:]:
        name, status, seconds = (c.strip() for c in line.strip("|").split("|")[:3])
        rows.append((name, status, int(re.search(r"\((-?\d+)\)", seconds).group(1))))
    return rows


@pytest.mark.parametrize("parts, env, message", [
    (["check", "bogus"], {}, "unknown part 'bogus'"),
    ([], {}, "usage:"),
    (["check"], {"GPU_DEADLINE": "9m"}, "GPU_DEADLINE must be whole seconds"),
])
def test_bad_input_is_one_line_and_runs_nothing(tmp_path, fake_python, parts, env, message):
    done = run_script(tmp_path, fake_python, *parts, **env)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not fake_python[1].exists()


def test_steps_that_do_not_fit_the_deadline_are_skipped_and_listed(tmp_path, fake_python):
    done = run_script(tmp_path, fake_python, "check", "learn", GPU_DEADLINE="40")
    assert done.returncode == 0, done.stderr
    assert [(n, s) for n, s, _ in steps(tmp_path)] == [
        (n, "skipped") for n in ("versions", "tests", "fidelity", "gmm", "learn", "reach")]
    assert not fake_python[1].exists()


def test_parts_run_in_order_cut_to_the_deadline_with_the_installed_package_first(tmp_path, fake_python):
    site = tmp_path / "site"
    done = run_script(tmp_path, fake_python, "install", "check", "bench", GPU_DEADLINE="100", GPU_SITE=str(site))
    assert done.returncode == 0, done.stderr
    rows = steps(tmp_path)
    assert [n for n, _, _ in rows] == ["install", "versions", "tests", "fidelity", "gmm", "train", "profile",
                                       "memory", "train_seeds", "envs", "train_unroll", "train_cmdbuf", "build"]
    assert all(status == "0" for _, status, _ in rows), rows
    # 100 s, less the 20 s SIGKILL grace and a 5 s margin: no step may be given more than 75 s.
    assert all(limit <= 75 for _, _, limit in rows) and rows[1][2] == 60, rows
    calls = [c.strip() for c in fake_python[1].read_text().splitlines()]
    # The install: the wheels, then the project built with the wheels' setuptools on the path.
    assert "ARGS=-m pip install" in calls[0] and ".whl/" in calls[0] and f"--target {site}" in calls[0]
    assert calls[1].startswith(f"PYTHONPATH={site} ") and calls[1].endswith(f"--target {site} .")
    # Every later process: the installed package first, the working folder off sys.path.
    for call in calls[2:]:
        assert call.startswith(f"PYTHONPATH={site} PYTHONSAFEPATH=1 ARGS="), call
    assert any("-m pytest" in c and "tests/test_precision.py" in c for c in calls)
    assert any("-m mjx_dacer.cli bench train --envs Humanoid-v5 --seeds 16 --memory-only" in c for c in calls)


def test_a_failed_install_stops_the_parts_after_it(tmp_path, fake_python):
    exe, log = fake_python
    exe.write_text('#!/usr/bin/env bash\necho "ARGS=$*" >> "$FAKE_LOG"\nexit 1\n')
    done = run_script(tmp_path, fake_python, "install", "check")
    assert done.returncode == 1 and "install failed" in done.stderr
    assert [n for n, _, _ in steps(tmp_path)] == ["install"]


def test_gpu_steps_runs_only_the_steps_named(tmp_path, fake_python):
    done = run_script(tmp_path, fake_python, "check", "bench", GPU_STEPS="gmm envs")
    assert done.returncode == 0, done.stderr
    assert [(n, s) for n, s, _ in steps(tmp_path)] == [("gmm", "0"), ("envs", "0")]
    calls = fake_python[1].read_text().splitlines()
    assert len(calls) == 2 and "bench gmm" in calls[0] and "bench envs" in calls[1]


def packed(archive: pathlib.Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}


def test_gpu_pack_brings_everything_back_as_three_shallow_files(tmp_path, fake_python):
    """A device command returns a few files from $OUT, none deeper than two folders: GPU_PACK leaves
    OUT's logs and tables as one archive, the deep profiler traces as another, and the summary."""
    pack = tmp_path / "pack"
    done = run_script(tmp_path, fake_python, "install", "bench", GPU_PACK=str(pack), GPU_SITE=str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in pack.iterdir()) == ["gpu.tar.gz", "steps.md", "trace.tar.gz"]
    assert (pack / "steps.md").read_text() == (tmp_path / "out" / "steps.md").read_text()
    logs = {f"{name}.log" for name, _, _ in steps(tmp_path)}
    assert packed(pack / "gpu.tar.gz") == logs | {"steps.md"}
    assert packed(pack / "trace.tar.gz") == {"trace_humanoid/plugins/profile/run/host.xplane.pb"}


def test_gpu_pack_also_packs_a_failed_install(tmp_path, fake_python):
    exe, _ = fake_python
    exe.write_text("#!/usr/bin/env bash\necho pip says no\nexit 1\n")
    pack = tmp_path / "pack"
    done = run_script(tmp_path, fake_python, "install", "check", GPU_PACK=str(pack))
    assert done.returncode == 1 and "install failed" in done.stderr
    assert sorted(p.name for p in pack.iterdir()) == ["gpu.tar.gz", "steps.md"]
    with tarfile.open(pack / "gpu.tar.gz") as tar:
        assert tar.extractfile("./install.log").read() == b"pip says no\n"


@pytest.mark.parametrize("pack", ["out", "out/packed", "."])
def test_gpu_pack_and_out_nested_is_one_line_and_runs_nothing(tmp_path, fake_python, pack):
    done = run_script(tmp_path, fake_python, "check", GPU_PACK=str(tmp_path / pack))
    assert done.returncode == 2
    assert done.stderr.strip() == "GPU_PACK and OUT must be separate folders, not one inside the other"
    assert not (tmp_path / "out").exists() and not fake_python[1].exists()
