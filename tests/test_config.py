"""Typed config: presets, overrides, validation."""

import re

import pytest

from mjx_dacer.config import Config, ConfigError, load_config, parse_overrides, preset_names

TASK_PRESETS = ["ant", "halfcheetah", "hopper", "humanoid", "inverteddoublependulum", "pusher", "swimmer", "walker2d"]


def test_presets_carry_the_papers_table3_values():
    assert set(TASK_PRESETS) <= set(preset_names())
    for name in TASK_PRESETS:
        cfg = load_config(name)
        big = name in ("humanoid", "halfcheetah")
        assert cfg.noise_scale == (0.15 if big else 0.1), name
        assert cfg.warmup_steps == (200_000 if big else 30_000), name
        assert cfg.hidden_sizes == ((512,) * 3 if name == "humanoid" else (256,) * 3), name
        assert cfg.critic_hidden_sizes == (256,) * 3, name  # Table 3 widens only the noise network
        assert (cfg.num_envs, cfg.total_iterations, cfg.eval_interval, cfg.batch_size) == (20, 1_500_000, 15_000, 256)
        assert (cfg.lr_actor, cfg.lr_critic, cfg.lr_alpha, cfg.diffusion_steps) == (1e-4, 1e-4, 3e-2, 20)


def test_overrides_are_typed():
    cfg = load_config("hopper", parse_overrides(["lr_actor=3e-4", "hidden_sizes=64,64", "num_envs=4"]))
    assert cfg.lr_actor == 3e-4 and cfg.hidden_sizes == (64, 64) and cfg.num_envs == 4
    assert load_config(None).fuse_chains is False
    assert load_config(None, parse_overrides(["fuse_chains=true"])).fuse_chains is True
    assert load_config(None, {"fuse_chains": "False"}).fuse_chains is False  # as a string from a file


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"lr_actor": -1.0}, "lr_actor"),
        ({"num_envs": 0}, "num_envs"),
        ({"diffusion_steps": 0}, "diffusion_steps"),
        ({"batch_size": 2000, "buffer_capacity": 1000, "warmup_steps": 10}, "batch_size"),
        ({"warmup_steps": 5000, "buffer_capacity": 1000}, "warmup_steps"),
        ({"num_envs": "many"}, "num_envs"),
        ({"gamma": 1.5}, "gamma"),
        ({"lr_actr": 1e-3}, "did you mean 'lr_actor'"),
        ({"fuse_chains": 1}, "'fuse_chains' must be true or false, got 1"),
        ({"fuse_chains": "yes please"}, "'fuse_chains' must be true or false"),
        ({"entropy_samples": 2}, r"entropy_samples \(2\) is smaller than gmm_components \(3\)"),
    ],
)
def test_bad_values_name_the_field(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, overrides)


def test_unknown_preset_suggests_a_close_name():
    with pytest.raises(ConfigError, match="did you mean 'hopper'"):
        load_config("hoper")


def test_hparams_are_the_shape_free_fields():
    hp = Config().replace(noise_scale=0.15).hparams()
    assert float(hp.noise_scale) == pytest.approx(0.15) and float(hp.gamma) == pytest.approx(0.99)


def test_each_task_finds_its_preset():
    from mjx_dacer import envs

    preset_for_env = envs.preset  # the one map from a task name to its preset, for every caller
    assert {env: preset_for_env(env) for env in envs.names()} == {
        "Humanoid-v5": "humanoid", "Ant-v5": "ant", "HalfCheetah-v5": "halfcheetah", "Walker2d-v5": "walker2d",
        "Hopper-v5": "hopper", "InvertedDoublePendulum-v5": "inverteddoublependulum", "Pusher-v5": "pusher",
        "Swimmer-v5": "swimmer", "MultiGoal-v0": "multigoal",
    }
    assert preset_for_env("Foo-v5") is None and preset_for_env("Hopper-v4") is None


def test_schema_derives_hparams_and_the_readme_lists_every_key():
    import dataclasses
    import pathlib
    import re

    from mjx_dacer.config import HPARAM_FIELDS, STATIC_FIELDS, HParams, describe

    fields = [f.name for f in dataclasses.fields(Config)]
    assert [f.name for f in dataclasses.fields(HParams)] == list(HPARAM_FIELDS)
    assert sorted(HPARAM_FIELDS + STATIC_FIELDS) == sorted(fields)
    # Every traced key is a float hyperparameter that changes no shape; the sweepable set of the paper's grid.
    assert set(HPARAM_FIELDS) == {"noise_scale", "noise_decay", "target_entropy_factor", "lr_actor", "lr_critic",
                                  "lr_alpha", "reward_scale", "gamma", "tau"}
    assert len(describe().splitlines()) == len(fields)
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("| key | default | meaning |"):]
    table = table[: table.index("\n\n")]
    listed = {k for line in table.splitlines()[2:] for k in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert listed == set(fields)


def test_range_checks_come_from_the_schema():
    for key, value, fragment in [
        ("noise_scale", float("nan"), "must be a finite number >= 0"),
        ("tau", 0.0, "must lie in (0, 1]"),
        ("physics", "slow", "must be one of fast, faithful"),
        ("activation", "sigmoid", "must be one of mish"),
        ("critic_hidden_sizes", [], "must be a non-empty list of positive widths"),
        ("seed", -1, "must be >= 0"),
        ("target_entropy_factor", float("inf"), "must be a finite number"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"config key '{key}' {fragment}")):
            Config().replace(**{key: value})
