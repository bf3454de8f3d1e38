"""The policy artifact (`mjx_dacer.policy`) and `mjx-dacer eval` (`mjx_dacer.cli.evaluate`).

No training run: the artifact is written from freshly initialised networks
(tiny ones), which is all the save/load path needs; the eval CLI is exercised
end to end in a subprocess on an untrained Hopper policy, in MJX and in
Gymnasium's C-MuJoCo env.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
import re
import stat
import subprocess
import sys
import textwrap
import zlib
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import yaml
from flax import serialization

from mjx_dacer import artifact_io
from mjx_dacer.config import Config, to_dict
from mjx_dacer.dacer import DACER
from mjx_dacer.errors import CheckpointError, PolicyFileError
from mjx_dacer.policy import load_policies, load_policy, read_artifact, save_policy

# Hopper-v5's sizes (Gymnasium's defaults); asserted against Gymnasium in the CLI test's fixture.
OBS, ACT = 11, 3
SIZES = {"noise_scale": [0.1, 0.1], "obs_size": OBS, "action_size": ACT}
RUNS = 2
TINY = dict(hidden_sizes=(8, 8), critic_hidden_sizes=(8, 8), diffusion_steps=2)


def tiny_config(env: str = "Hopper-v5") -> Config:
    return Config(env=env, **TINY)


def init_batch(config: Config, obs_size: int, action_size: int, runs: int = RUNS, seed: int = 0):
    """(agent, DacerState-shaped batch with leading axis `runs`) of the agent's policy.

    The structure, shapes and dtypes are the agent's own (`jax.eval_shape` of
    `DACER.init`, vmapped); the values are random numpy draws instead of the
    initialiser's: compiling even the tiny `init` costs 5-10 s on the CI CPU,
    and any finite values serve a save/load test.
    """
    agent = DACER(config, obs_size, action_size)
    shapes = jax.eval_shape(jax.vmap(agent.init), jax.random.split(jax.random.PRNGKey(seed), runs))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: (0.5 * rng.standard_normal(x.shape)).astype(x.dtype), shapes.policy_params)
    # Distinct log_alpha per run, so that picking the wrong run shows.
    log_alpha = np.log(config.initial_alpha).astype(np.float32) + np.arange(runs, dtype=np.float32)
    return agent, SimpleNamespace(policy_params=params, log_alpha=log_alpha)


def write_artifact(path, config, state, iteration=5, **kwargs):
    n = state.log_alpha.shape[0]
    kwargs = {"noise_scale": np.full(n, config.noise_scale), "obs_size": OBS, "action_size": ACT, **kwargs}
    return save_policy(path, config, state.policy_params, state.log_alpha, [f"point{i}" for i in range(n)],
                       list(range(10, 10 + n)), iteration, **kwargs)


def run_params(state, run):
    return jax.tree.map(lambda x: np.asarray(x[run]), state.policy_params)


@pytest.fixture(scope="module")
def hopper_batch():
    config = tiny_config()
    agent, state = init_batch(config, OBS, ACT)
    return config, agent, state


@pytest.fixture
def artifact(tmp_path, hopper_batch):
    config, _, state = hopper_batch
    return write_artifact(tmp_path / "run" / "policy.msgpack", config, state)


def one_line(err: Exception) -> str:
    message = str(err)
    assert message and "\n" not in message, message
    return message


# ----------------------------------------------------------------- round trip
def test_round_trip_restores_params_bit_exactly_and_the_metadata(artifact, hopper_batch):
    config, _, state = hopper_batch
    body = read_artifact(artifact)
    assert body["config"] == config and body["num_runs"] == RUNS
    assert (body["obs_size"], body["action_size"]) == (OBS, ACT)
    for saved, original in zip(jax.tree.leaves(body["policy_params"]), jax.tree.leaves(state.policy_params)):
        assert saved.dtype == original.dtype and np.array_equal(saved, np.asarray(original))
    np.testing.assert_array_equal(body["log_alpha"], np.asarray(state.log_alpha))
    np.testing.assert_array_equal(body["noise_scale"], np.full(RUNS, config.noise_scale, np.float32))

    for run in range(RUNS):
        policy = load_policy(artifact.parent, run=run)  # a run directory works as well as the file
        assert (policy.run, policy.num_runs, policy.label, policy.seed, policy.iteration) == (
            run, RUNS, f"point{run}", 10 + run, 5)
        assert policy.env_name == "Hopper-v5" and policy.config == config
        for got, want in zip(jax.tree.leaves(policy.params.network), jax.tree.leaves(run_params(state, run))):
            assert np.array_equal(np.asarray(got), want)
        assert float(policy.params.log_alpha) == float(state.log_alpha[run])

    # Every run at once, from one read of the file: the same runs, in order, sharing one agent (one compile).
    together = load_policies(artifact)
    assert [p.run for p in together] == list(range(RUNS)) and len({id(p.agent) for p in together}) == 1
    for policy in together:
        for got, want in zip(jax.tree.leaves(policy.params.network), jax.tree.leaves(run_params(state, policy.run))):
            assert np.array_equal(np.asarray(got), want)
    assert [p.run for p in load_policies(artifact, [1, 0])] == [1, 0]
    with pytest.raises(ValueError, match=f"run {RUNS} is out of range"):
        load_policies(artifact, [0, RUNS])


def test_actions_equal_deterministic_action_on_the_same_key_sequence(artifact, hopper_batch):
    _, agent, state = hopper_batch
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    policy = load_policy(artifact, run=1, seed=3)
    batch_action = policy(obs)  # (N, S) -> (N, A)
    single_action = policy(obs[0])  # (S,) -> (A,)
    assert batch_action.shape == (5, ACT) and single_action.shape == (ACT,)
    assert batch_action.dtype == np.float32 and isinstance(batch_action, np.ndarray)

    # Each call: key -> (next key, chain key).
    key = jax.random.PRNGKey(3)
    key, chain_key = jax.random.split(key)
    expected_batch = agent.deterministic_action(run_params(state, 1), obs, chain_key)
    _, chain_key = jax.random.split(key)
    expected_single = agent.deterministic_action(run_params(state, 1), obs[:1], chain_key)[0]
    np.testing.assert_allclose(batch_action, expected_batch, atol=1e-5)
    np.testing.assert_allclose(single_action, expected_single, atol=1e-5)
    for a in (batch_action, single_action):
        assert np.all(np.abs(a) <= 1.0)

    # The key advances: the same observation twice gives another chain sample.
    assert not np.allclose(policy(obs), batch_action)
    # A fresh policy with the same seed replays the same actions; run 0 has other params.
    np.testing.assert_array_equal(load_policy(artifact, run=1, seed=3)(obs), batch_action)
    assert not np.allclose(load_policy(artifact, run=0, seed=3)(obs), batch_action)


def test_behaviour_noise_when_not_deterministic(artifact, hopper_batch):
    _, agent, state = hopper_batch
    obs = np.random.default_rng(1).normal(size=(64, OBS)).astype(np.float32)
    noisy = load_policy(artifact, run=1, deterministic=False, seed=7)(obs)
    plain = load_policy(artifact, run=1, deterministic=True, seed=7)(obs)
    assert noisy.shape == plain.shape == (64, ACT) and np.all(np.abs(noisy) <= 1.0)
    assert not np.allclose(noisy, plain, atol=1e-3)
    _, chain_key = jax.random.split(jax.random.PRNGKey(7))
    expected = agent.noisy_action(run_params(state, 1), obs, chain_key, state.log_alpha[1],
                                  tiny_config().noise_scale)
    np.testing.assert_allclose(noisy, expected, atol=1e-5)


def test_noise_scale_per_run_is_stored(tmp_path, hopper_batch):
    config, _, state = hopper_batch
    path = write_artifact(tmp_path / "policy.msgpack", config, state, noise_scale=np.array([0.05, 0.2]))
    assert [float(load_policy(path, run=r).params.noise_scale) for r in range(RUNS)] == pytest.approx([0.05, 0.2])


def test_noise_scale_and_sizes_are_required_keywords(tmp_path, hopper_batch):
    """No default from config.noise_scale (a sweep trains each run with its own) and no sizes read off layer names."""
    params = inspect.signature(save_policy).parameters
    for name in ("noise_scale", "obs_size", "action_size"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default is inspect.Parameter.empty
    config, _, state = hopper_batch
    with pytest.raises(TypeError, match="noise_scale"):
        save_policy(tmp_path / "p.msgpack", config, state.policy_params, state.log_alpha, ["a", "b"], [0, 1], 0,
                    obs_size=OBS, action_size=ACT)
    assert not list(tmp_path.iterdir())


def documented_file(config, state, iteration=5, noise_scale=None):
    """The bytes of an artifact built from the module docstring's format alone, as the first writer made them."""
    n = state.log_alpha.shape[0]
    body = {
        "config": to_dict(config), "obs_size": OBS, "action_size": ACT, "num_runs": n,
        "labels": [f"point{i}" for i in range(n)], "seeds": list(range(10, 10 + n)), "iteration": iteration,
        "policy_params": jax.tree.map(np.asarray, state.policy_params),
        "log_alpha": np.asarray(state.log_alpha, np.float32),
        "noise_scale": np.full(n, config.noise_scale if noise_scale is None else noise_scale, np.float32),
    }
    payload = serialization.msgpack_serialize(body)
    return serialization.msgpack_serialize(
        {"format": "mjx_dacer.policy", "version": 1, "crc32": zlib.crc32(payload), "body": payload})


def test_the_file_format_is_unchanged(tmp_path, artifact, hopper_batch):
    """save_policy writes exactly the documented bytes, and a file made that way (by older code) loads."""
    config, _, state = hopper_batch
    assert artifact.read_bytes() == documented_file(config, state)
    old = tmp_path / "old.msgpack"
    old.write_bytes(documented_file(config, state, iteration=3, noise_scale=0.25))
    policy = load_policy(old, run=1)
    assert (policy.iteration, policy.label, policy.seed) == (3, "point1", 11)
    assert float(policy.params.noise_scale) == pytest.approx(0.25)
    for got, want in zip(jax.tree.leaves(policy.params.network), jax.tree.leaves(run_params(state, 1))):
        assert np.array_equal(np.asarray(got), want)


# --------------------------------------------------------------------- errors
def test_load_errors_are_one_line_value_errors(tmp_path, artifact):
    with pytest.raises(ValueError, match="no such file") as e:
        load_policy(tmp_path / "nowhere")
    one_line(e.value)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ValueError, match="holds no policy.msgpack") as e:
        load_policy(tmp_path / "empty_run")
    one_line(e.value)

    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"env": "Hopper-v5"}))  # a run's config for its run
    with pytest.raises(ValueError, match=rf"config.yaml is a YAML file, not a policy; pass the run directory "
                                         rf"\({tmp_path}\)") as e:
        load_policy(tmp_path / "config.yaml")
    one_line(e.value)

    data = artifact.read_bytes()
    bad_files = {
        "config.bin": yaml.safe_dump({"env": "Hopper-v5"}).encode(),
        "random.bin": np.random.default_rng(0).bytes(4096),
        "truncated.msgpack": data[: len(data) // 2],
        "flipped.msgpack": data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:],
    }
    for name, content in bad_files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="corrupt or truncated") as e:
            load_policy(tmp_path / name)
        one_line(e.value)

    for run in (RUNS, -1):
        with pytest.raises(ValueError, match=rf"run {run} is out of range: .* holds {RUNS} run\(s\)") as e:
            load_policy(artifact, run=run)
        one_line(e.value)
    for load, which, fragment in [(load_policy, "0", "run must be an integer index into the saved runs, got '0'"),
                                  (load_policies, 0, "runs must be a list of run indices (None: every run), got 0; "
                                                     "load_policy(path, run=I) loads one"),
                                  (load_policies, [0, "1"], "runs must be a list of integer run indices")]:
        with pytest.raises(ValueError, match=re.escape(fragment)) as e:
            load(artifact, which)
        one_line(e.value)

    policy = load_policy(artifact)
    for obs in (np.zeros(OBS + 1), np.zeros((2, OBS - 1)), np.zeros((1, 2, OBS)), np.zeros(())):
        with pytest.raises(ValueError, match=rf"expects \({OBS},\) or \(N, {OBS}\)") as e:
            policy(obs)
        one_line(e.value)


def test_a_flipped_byte_in_the_body_is_caught_by_the_checksum(tmp_path, artifact):
    """The envelope still parses, only the body changed: the shared CRC32 must catch it, in one line."""
    envelope = serialization.msgpack_restore(artifact.read_bytes())
    body = envelope["body"]
    for position in (0, len(body) // 2, len(body) - 1):
        flipped = body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1:]
        damaged = tmp_path / f"flipped{position}.msgpack"
        damaged.write_bytes(serialization.msgpack_serialize({**envelope, "body": flipped}))
        with pytest.raises(PolicyFileError, match=r"corrupt or truncated \(checksum mismatch\); copy it again") as e:
            read_artifact(damaged)
        one_line(e.value)
        # Callers catch either kind: the CLI's CheckpointError, or the ValueError load_policy documents.
        assert isinstance(e.value, CheckpointError) and isinstance(e.value, ValueError)


def test_a_body_without_noise_scale_is_rejected_not_filled_from_the_config(tmp_path, artifact):
    envelope = serialization.msgpack_restore(artifact.read_bytes())
    body = serialization.msgpack_restore(envelope["body"])
    del body["noise_scale"]
    payload = serialization.msgpack_serialize(body)
    path = tmp_path / "no_noise_scale.msgpack"
    path.write_bytes(serialization.msgpack_serialize({**envelope, "crc32": zlib.crc32(payload), "body": payload}))
    with pytest.raises(PolicyFileError, match="body lacks noise_scale") as e:
        load_policy(path)
    one_line(e.value)


def test_save_rejects_inconsistent_inputs(tmp_path, hopper_batch):
    config, _, state = hopper_batch
    path = tmp_path / "policy.msgpack"
    with pytest.raises(ValueError, match="batch sizes disagree"):
        save_policy(path, config, state.policy_params, state.log_alpha, ["a"], [0, 1], 0, **SIZES)
    with pytest.raises(ValueError, match="do not match the config's network"):
        save_policy(path, config.replace(hidden_sizes=[16]), state.policy_params, state.log_alpha, ["a", "b"],
                    [0, 1], 0, **SIZES)
    with pytest.raises(ValueError, match="do not match the config's network"):  # sizes come from the caller
        save_policy(path, config, state.policy_params, state.log_alpha, ["a", "b"], [0, 1], 0,
                    **{**SIZES, "obs_size": OBS + 1})
    assert not path.exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------ atomicity
def test_a_failed_write_keeps_the_previous_artifact(tmp_path, hopper_batch, monkeypatch):
    config, _, state = hopper_batch
    path = write_artifact(tmp_path / "policy.msgpack", config, state, iteration=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    real_fdopen = os.fdopen
    partial_sizes = []

    class FailsMidway:
        """The file object of the temp file: writes half the data, then the disk is full."""

        def __init__(self, fd, *args, **kwargs):
            self.file = real_fdopen(fd, *args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            [tmp] = [p for p in tmp_path.iterdir() if p != path]  # the half-written temp file is there...
            partial_sizes.append(tmp.stat().st_size)
            raise OSError("disk full")

    # The write stops midway / the data never reaches the disk / the rename fails.
    for target, replacement in (("fdopen", FailsMidway), ("fsync", crash), ("replace", crash)):
        with monkeypatch.context() as m:
            m.setattr(artifact_io.os, target, replacement)
            with pytest.raises(OSError, match="disk full"):
                write_artifact(path, config, state, iteration=2)
        assert path.read_bytes() == before
        assert load_policy(path).iteration == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.msgpack"]  # ...and removed: no temp file left
    assert partial_sizes and 0 < partial_sizes[0] < len(before)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_the_artifact_gets_the_mode_open_gives_a_new_file(tmp_path, hopper_batch, umask):
    """Not mkstemp's 0600: the artifact is as readable as metrics.csv and the run's other files."""
    config, _, state = hopper_batch
    previous = os.umask(umask)
    try:
        path = write_artifact(tmp_path / "policy.msgpack", config, state)
        with open(tmp_path / "reference", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "reference").stat().st_mode) == 0o666 & ~umask, oct(mode)


def test_a_process_killed_mid_save_leaves_the_previous_artifact(tmp_path, hopper_batch):
    """A hard kill (no cleanup runs) just before the rename: the old file stays the valid one."""
    config, _, state = hopper_batch
    path = write_artifact(tmp_path / "policy.msgpack", config, state, iteration=1)
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os
        from mjx_dacer.policy import read_artifact, save_policy
        old = read_artifact({str(path)!r})
        os.replace = lambda *a: os._exit(9)
        save_policy({str(path)!r}, old["config"], old["policy_params"], old["log_alpha"], ["a", "b"], [0, 1], 2,
                    noise_scale=old["noise_scale"], obs_size=old["obs_size"], action_size=old["action_size"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stderr
    assert path.read_bytes() == before and load_policy(path).iteration == 1
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(p.name.startswith(".policy.msgpack.") for p in leftovers)
    # What a crash during the write itself would leave: a partial file, which is rejected.
    partial = leftovers[0].read_bytes()
    (tmp_path / "partial.msgpack").write_bytes(partial[: len(partial) - 100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_policy(tmp_path / "partial.msgpack")


# ------------------------------------------------------------------- eval CLI
def eval_cli(*args):
    """`mjx-dacer eval ...` in a subprocess, through the real CLI."""
    return subprocess.run([sys.executable, "-m", "mjx_dacer.cli", "eval", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Run directories (config.yaml + policy.msgpack) of untrained 2-seed Hopper-v5 and MultiGoal-v0 runs."""
    import gymnasium

    gym = gymnasium.make("Hopper-v5")
    assert gym.observation_space.shape == (OBS,) and gym.action_space.shape == (ACT,)
    gym.close()
    dirs = {}
    for env, sizes in (("Hopper-v5", (OBS, ACT)), ("MultiGoal-v0", (2, 2))):
        config = tiny_config(env)
        _, state = init_batch(config, *sizes)
        run_dir = tmp_path_factory.mktemp(env)
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**to_dict(config), "seeds": [0, 1], "grid": [{}]}))
        write_artifact(run_dir / "policy.msgpack", config, state, iteration=0, obs_size=sizes[0], action_size=sizes[1])
        dirs[env] = run_dir
    return dirs


def _table_row(stdout: str, backend: str) -> dict[str, float]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith(backend + " "))
    m = re.match(rf"{backend}\s+(\d+)\s+(\S+) \+- (\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", line)
    assert m, line
    keys = ("episodes", "mean", "std", "min", "max", "length")
    return dict(zip(keys, map(float, m.groups())))


def test_eval_runs_both_backends_with_similar_returns(run_dirs, tmp_path):
    video = tmp_path / "hopper.gif"
    out = eval_cli(run_dirs["Hopper-v5"], "--backend", "both", "--episodes", 2, "--run", 1, "--video", video)
    assert out.returncode in (0, 1), out.stderr
    assert "mjx backend" in out.stdout and "gymnasium backend" in out.stdout
    mjx, gym = _table_row(out.stdout, "mjx"), _table_row(out.stdout, "gymnasium")
    for row in (mjx, gym):
        assert row["episodes"] == 2
        assert all(math.isfinite(v) for v in row.values()), row
        assert row["min"] <= row["mean"] <= row["max"]
        # An untrained Hopper falls over within a few dozen steps, in either simulator.
        assert 1 <= row["length"] < 200, row
        assert 0 < row["mean"] < 200, row
    # Same order of magnitude: ~1 healthy reward per step until the fall, in both.
    assert 0.2 < mjx["mean"] / gym["mean"] < 5.0, (mjx, gym)
    # The video is written, or (no OpenGL here) one line says why, with exit status 1 after the results.
    if out.returncode == 1:
        assert out.stderr.startswith("mjx-dacer: error: no video: ") and not video.exists(), out.stderr
    else:
        assert out.returncode == 0 and video.is_file() and video.stat().st_size > 0, out.stderr


def test_eval_video_of_multigoal_draws_the_episode_on_the_plane(run_dirs, tmp_path):
    import imageio.v3 as iio

    video = tmp_path / "mg.gif"
    out = eval_cli(run_dirs["MultiGoal-v0"], "--episodes", "1", "--video", str(video))
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stdout and f"video: {video}" in out.stdout, out.stdout
    frames = iio.imread(video)
    assert frames.ndim == 4 and 2 <= frames.shape[0] <= 101  # the initial state and one frame per step
    assert not np.array_equal(frames[0], frames[-1])  # the path grows


def test_a_video_that_cannot_be_rendered_is_exit_status_1_after_the_results(run_dirs, tmp_path, capsys, monkeypatch):
    """No OpenGL backend (here: render raises as it then does): the returns are printed, then one line, exit 1."""
    from mjx_dacer import envs
    from mjx_dacer.cli import main

    def no_opengl(*args, **kwargs):
        raise envs.RenderError("no OpenGL context: install EGL or OSMesa\n(a second line)")

    monkeypatch.setattr(envs, "render", no_opengl)
    video = tmp_path / "mg.gif"
    assert main(["eval", str(run_dirs["MultiGoal-v0"]), "--episodes", "1", "--video", str(video)]) == 1
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == ["mjx-dacer: error: no video: no OpenGL context: install EGL or OSMesa"]
    assert _table_row(out.out, "mjx")["episodes"] == 1 and not video.exists()


def test_eval_gymnasium_backend_of_multigoal_is_a_clear_error(run_dirs):
    out = eval_cli(run_dirs["MultiGoal-v0"], "--backend", "gymnasium")
    assert out.returncode == 2
    assert "MultiGoal-v0 has no Gymnasium counterpart" in out.stderr and "--backend mjx" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--run", 5], "run 5 is out of range"),
        (["--episodes", 0], "--episodes must be >= 1"),
        (["--video", "out.avi"], "--video out.avi: unsupported video format '.avi': use .mp4 or .gif"),
        pytest.param(["--video", "out.mp4"], "--video out.mp4: MP4 needs `pip install imageio-ffmpeg`",
                     marks=pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is not None,
                                              reason="imageio-ffmpeg is installed: MP4 can be written")),
    ],
)
def test_eval_bad_arguments_are_one_line_errors(run_dirs, args, fragment):
    """In-process through `run`, as the CLI calls it: ConfigError with a one-line message."""
    import argparse

    from mjx_dacer.cli import evaluate as evaluation_cli
    from mjx_dacer.config import ConfigError

    parser = argparse.ArgumentParser()
    evaluation_cli.add_arguments(parser)
    parsed = parser.parse_args([str(run_dirs["MultiGoal-v0"]), *map(str, args)])
    with pytest.raises(ConfigError, match=re.escape(fragment)) as e:
        evaluation_cli.run(parsed)
    one_line(e.value)


def test_eval_of_a_directory_without_a_policy(tmp_path):
    out = eval_cli(tmp_path)
    assert out.returncode == 2 and "holds no policy.msgpack" in out.stderr, out.stderr


def test_eval_multigoal_mjx_all_runs(run_dirs):
    out = eval_cli(run_dirs["MultiGoal-v0"], "--episodes", 3, "--all-runs")
    assert out.returncode == 0, out.stderr
    assert "gymnasium backend" not in out.stdout  # no Gymnasium version: mjx alone by default
    rows = [ln.split() for ln in out.stdout.splitlines() if re.match(r"^[01]\s+point[01]\s", ln)]
    assert [r[:4] for r in rows] == [["0", "point0", "10", "mjx"], ["1", "point1", "11", "mjx"]], out.stdout
    assert all(math.isfinite(float(r[5])) for r in rows)


def test_format_table_lines_up():
    from mjx_dacer.cli.evaluate import Result, format_table

    table = format_table([Result(0, "default", 0, "mjx", np.array([1.0, 3.0]), np.array([10, 20])),
                          Result(0, "default", 0, "gymnasium", np.array([2.0]), np.array([5]))])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["backend", "episodes", "return"]
    assert "2.00 +- 1.00" in lines[2] and lines[3].startswith("gymnasium")
    column = lines[0].index("episodes")  # every row's second cell starts under its header
    assert lines[2][column] == "2" and lines[3][column] == "1" and lines[2][column - 1] == " "


def test_gymnasium_backend_scales_actions_like_the_mjx_tasks(monkeypatch):
    """Pusher's actuators range over [-2, 2]: the [-1, 1] action must be mapped as `envs.base.scale_action` does."""
    import gymnasium

    from mjx_dacer.envs.base import scale_action
    from mjx_dacer.cli.evaluate import gymnasium_rollout

    sent = []

    class Recorder(gymnasium.Wrapper):
        def step(self, action):
            sent.append(np.array(action))
            return super().step(action)

    real_make = gymnasium.make
    monkeypatch.setattr(gymnasium, "make", lambda name, **kw: Recorder(real_make(name, **kw)))
    action = np.array([0.5, -1.5, 1.0, 0.0, -0.25, 2.0, -1.0], np.float32)  # out-of-range entries get clipped
    returns, lengths = gymnasium_rollout(lambda obs: action, "Pusher-v5", num_episodes=1, seed=0)
    assert lengths.tolist() == [100] and np.isfinite(returns).all()  # Gymnasium's TimeLimit for Pusher
    low, high = real_make("Pusher-v5").unwrapped.model.actuator_ctrlrange.T
    assert np.all(high - low > 2.0)  # not the identity map
    np.testing.assert_allclose(sent[0], np.asarray(scale_action(action, low, high)), rtol=1e-6)
    assert len(sent) == 100
