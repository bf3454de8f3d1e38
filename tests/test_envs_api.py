"""`make`, `names`, overrides, sizes and action scaling: nothing here compiles physics."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pathlib
import sys

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from conftest import MUJOCO_TASKS

import mjx_dacer.envs as envs
from mjx_dacer.envs import base, physics

# Gymnasium v5's sizes (obs, act), dt and max_episode_steps.
EXPECTED = {
    "Humanoid-v5": (348, 17, 0.015, 1000),
    "Ant-v5": (105, 8, 0.05, 1000),
    "HalfCheetah-v5": (17, 6, 0.05, 1000),
    "Walker2d-v5": (17, 6, 0.008, 1000),
    "Hopper-v5": (11, 3, 0.008, 1000),
    "InvertedDoublePendulum-v5": (9, 1, 0.05, 1000),
    "Pusher-v5": (23, 7, 0.05, 100),
    "Swimmer-v5": (8, 2, 0.04, 1000),
    "MultiGoal-v0": (2, 2, 1.0, 100),
}


def test_names_lists_every_task():
    assert envs.names() == tuple(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sizes_dt_and_episode_length(name):
    env = envs.make(name)
    obs_size, act_size, dt, episode_length = EXPECTED[name]
    assert env.observation_size == obs_size
    assert env.action_size == act_size
    assert env.dt == pytest.approx(dt)
    assert env.episode_length == episode_length
    state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    assert state.obs.shape == (obs_size,)
    assert state.reward.shape == state.done.shape == ()


@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_sizes_match_gymnasium(name, gym_env):
    env, g = envs.make(name), gym_env(name)
    assert env.observation_size == g.observation_space.shape[0]
    assert env.action_size == g.action_space.shape[0]
    assert env.dt == pytest.approx(g.dt)
    np.testing.assert_array_equal(env.ctrl_low, g.action_space.low)
    np.testing.assert_array_equal(env.ctrl_high, g.action_space.high)


def test_unknown_name_lists_names_and_suggests():
    with pytest.raises(ValueError, match=r"unknown environment 'hoper-v5'.*Did you mean 'Hopper-v5'\?") as err:
        envs.make("hoper-v5")
    for name in envs.names():
        assert name in str(err.value)
    with pytest.raises(ValueError, match="Valid: Humanoid-v5"):
        envs.make("CartPole-v1")


def test_unknown_override_is_named_with_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option 'forward_weight'.*Did you mean 'forward_reward_weight'") as err:
        envs.make("Hopper-v5", forward_weight=2.0)
    assert "terminate_when_unhealthy" in str(err.value) and "physics" in str(err.value)


def test_bad_physics_profile():
    with pytest.raises(ValueError, match="physics must be one of"):
        envs.make("Hopper-v5", physics="slow")
    with pytest.raises(ValueError, match="physics must be one of"):
        envs.make("MultiGoal-v0", physics="slow")


def test_overrides_reach_the_task_and_envs_are_cached():
    default = envs.make("Hopper-v5")
    assert envs.make("Hopper-v5") is default
    assert envs.make("Hopper-v5", physics=envs.DEFAULT_PROFILE) is default
    custom = envs.make("Hopper-v5", forward_reward_weight=2.0, terminate_when_unhealthy=False, physics="faithful")
    assert custom is not default
    assert custom.options.forward_reward_weight == 2.0 and custom.options.terminate_when_unhealthy is False
    assert custom.physics == "faithful"
    # Lists are accepted where tuples are expected (and still cached).
    assert envs.make("Hopper-v5", healthy_z_range=[0.5, 2.0]) is envs.make("Hopper-v5", healthy_z_range=(0.5, 2.0))
    # MultiGoal has no physics engine: a profile is accepted and ignored.
    assert envs.make("MultiGoal-v0", physics="faithful") is envs.make("MultiGoal-v0")


def test_options_lists_the_declared_defaults():
    opts = envs.options("Ant-v5")
    assert opts["include_cfrc_ext_in_observation"] is True
    assert opts["contact_cost_weight"] == 5e-4
    assert opts["physics"] == envs.DEFAULT_PROFILE
    multigoal = dataclasses.asdict(envs.make("MultiGoal-v0").options)
    assert envs.options("MultiGoal-v0") == {**multigoal, "physics": envs.DEFAULT_PROFILE}
    with pytest.raises(ValueError, match="unknown environment"):
        envs.options("Hoper-v5")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_options_match_gymnasiums_defaults(name):
    """Each declared option is a keyword of Gymnasium's constructor for the task, with its default."""
    opts = {k: v for k, v in envs.options(name).items() if k != "physics"}
    if name == "MultiGoal-v0":  # not a Gymnasium task
        assert set(opts) == {"action_cost_weight", "goal_reward", "goal_radius", "wall", "reset_noise_scale"}
        return
    import gymnasium

    module, cls = gymnasium.spec(name).entry_point.split(":")
    gym_cls = getattr(importlib.import_module(module), cls)
    gym_defaults = {k: p.default for k, p in inspect.signature(gym_cls.__init__).parameters.items()}
    for key, value in opts.items():
        assert key in gym_defaults, (name, key)
        assert value == gym_defaults[key], (name, key, value, gym_defaults[key])


CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
# Presets that train a task but are not that task's own (Table 3) preset.
NOT_TASK_PRESETS = {"quickstart"}


def _preset_env(stem: str) -> str:
    import yaml

    return (yaml.safe_load((CONFIGS / f"{stem}.yaml").read_text()) or {}).get("env")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_task_has_its_preset_in_configs(name):
    preset = envs.preset(name)
    assert preset is not None, name
    assert (CONFIGS / f"{preset}.yaml").is_file(), (name, preset)
    assert _preset_env(preset) == name


def test_every_task_preset_in_configs_is_registered():
    for path in sorted(CONFIGS.glob("*.yaml")):
        env = _preset_env(path.stem)
        if path.stem in NOT_TASK_PRESETS:
            assert env in envs.names(), path.name  # still a valid task
            continue
        assert env in envs.names(), (path.name, env)
        assert envs.preset(env) == path.stem, (path.name, env)
    assert envs.preset("Hopper-v5") == "hopper" and envs.preset("MultiGoal-v0") == "multigoal"
    assert envs.preset("Hopper-v4") is None and envs.preset("Foo-v5") is None


@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_physics_profiles_are_named_in_docstrings(name):
    """Each change a profile makes to Gymnasium's model is named in the task's docstring."""
    cls = type(envs.make(name))
    doc = " ".join(sys.modules[cls.__module__].__doc__.split())
    assert set(cls.physics_profiles) == set(envs.PROFILES)
    for profile, changes in cls.physics_profiles.items():
        for change in changes:
            assert f"{change.field} = {physics.show_value(change.value)}" in doc, (name, profile, change)


@pytest.mark.parametrize("name", MUJOCO_TASKS)
@pytest.mark.parametrize("profile", envs.PROFILES)
def test_profiles_change_only_what_they_name(name, profile):
    """The compiled model equals Gymnasium's XML except for the profile's named fields."""
    env = envs.make(name, physics=profile)
    reference = base.load_model(env.xml_file)
    changed = {c.field for c in env.physics_changes}
    for field in ("timestep", "integrator", "solver", "iterations", "ls_iterations", "cone", "tolerance", "noslip_iterations"):
        if f"opt.{field}" not in changed:
            assert getattr(env.mj_model.opt, field) == getattr(reference.opt, field), (name, field)
    assert env.mj_model.opt.solver != mujoco.mjtSolver.mjSOL_PGS  # MJX has no PGS
    for attr in ("geom_contype", "geom_conaffinity", "geom_friction", "body_mass", "actuator_gear", "dof_damping"):
        np.testing.assert_array_equal(getattr(env.mj_model, attr), getattr(reference, attr), err_msg=f"{name}.{attr}")


def test_physics_change_rejects_unknown_fields():
    model = base.load_model("hopper.xml")
    with pytest.raises(AttributeError, match="opt.iteratoins"):
        physics.apply(model, [physics.Change("opt.iteratoins", 3, "typo")])


def test_action_scaling_maps_unit_box_to_ctrlrange():
    low, high = np.array([-0.4, -2.0, 0.0], np.float32), np.array([0.4, 2.0, 1.0], np.float32)
    a = jnp.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, -0.5, 2.0]])
    ctrl = np.asarray(base.scale_action(a, low, high))
    np.testing.assert_allclose(ctrl[0], low)
    np.testing.assert_allclose(ctrl[1], high)
    np.testing.assert_allclose(ctrl[2], (low + high) / 2)
    np.testing.assert_allclose(ctrl[3], [0.2, -1.0, 1.0], atol=1e-6)  # out of range is clipped


@pytest.mark.parametrize("name", ["Humanoid-v5", "Pusher-v5", "Hopper-v5"])
def test_env_action_scaling_uses_the_models_ctrlrange(name):
    env = envs.make(name)
    np.testing.assert_allclose(env.scale_action(jnp.ones(env.action_size)), env.mj_model.actuator_ctrlrange[:, 1])
    np.testing.assert_allclose(env.scale_action(-jnp.ones(env.action_size)), env.mj_model.actuator_ctrlrange[:, 0])


def test_gymnasium_xml_is_loaded_from_the_installed_package():
    import gymnasium

    path = base.gymnasium_asset("walker2d_v5.xml")
    assert path.is_relative_to(pathlib.Path(gymnasium.__file__).parent)
    with pytest.raises(FileNotFoundError, match="ships no"):
        base.gymnasium_asset("no_such_model.xml")


def test_compiler_options_reach_through_wrappers_and_only_on_cpu(monkeypatch):
    pusher, hopper = envs.make("Pusher-v5"), envs.make("Hopper-v5")
    monkeypatch.setattr(type(pusher), "cpu_compiler_options", {"xla_cpu_enable_fast_math": False})
    assert envs.compiler_options(pusher) == {"xla_cpu_enable_fast_math": False}
    assert envs.compiler_options(envs.TrainingWrapper(pusher)) == {"xla_cpu_enable_fast_math": False}
    assert envs.compiler_options(hopper) == {} and envs.compiler_options(envs.make("MultiGoal-v0")) == {}
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # XLA:CPU flags are rejected elsewhere
    assert envs.compiler_options(pusher) == {}


def test_compiler_options_leave_out_what_this_xla_cpu_does_not_know(monkeypatch):
    """XLA's flags come and go between jaxlib releases; a compile naming an unknown one fails."""
    pusher = envs.make("Pusher-v5")
    monkeypatch.setattr(type(pusher), "cpu_compiler_options",
                        {"xla_cpu_enable_fast_math": False, "xla_cpu_no_such_option": True})
    assert envs.compiler_options(pusher) == {"xla_cpu_enable_fast_math": False}
    assert envs.jit(pusher, lambda x: x + 1)(jnp.zeros(())) == 1  # compiles: the unknown option is not passed on
