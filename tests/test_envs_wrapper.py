"""TrainingWrapper: time limit, termination vs truncation, auto-reset to fresh states."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mjx_dacer.envs as envs
from mjx_dacer.envs.wrappers import TrainingWrapper

N = 4
RIGHT = jnp.array([1.0, 0.0])  # MultiGoal: walks to the goal at (5, 0) in ~5 steps
STAY = jnp.zeros(2)  # MultiGoal: never reaches a goal


@pytest.fixture(scope="module")
def multigoal():
    wrapper = TrainingWrapper(envs.make("MultiGoal-v0"), episode_length=3)
    return wrapper, jax.jit(wrapper.reset), jax.jit(wrapper.step)


def test_reset_batch_and_info(multigoal):
    wrapper, reset, _ = multigoal
    for keys in (jax.random.split(jax.random.PRNGKey(0), N), jax.random.split(jax.random.key(0), N)):
        state = reset(keys)
        assert state.obs.shape == (N, 2) and state.reward.shape == state.done.shape == (N,)
        for key in ("rng", "steps", "terminated", "truncated", "final_obs"):
            assert state.info[key].shape[0] == N, key
        np.testing.assert_array_equal(state.info["steps"], 0)
        np.testing.assert_array_equal(state.info["final_obs"], state.obs)
        assert len(np.unique(np.asarray(state.obs[:, 0]))) == N  # per-env reset keys
    assert wrapper.episode_length == 3 and wrapper.observation_size == 2 and wrapper.action_size == 2


def test_truncation_is_not_termination(multigoal):
    _, reset, step = multigoal
    state = reset(jax.random.split(jax.random.PRNGKey(1), N))
    stay = jnp.tile(STAY, (N, 1))
    for t in range(2):
        state = step(state, stay)
        np.testing.assert_array_equal(state.done, 0.0)
        np.testing.assert_array_equal(state.info["final_obs"], state.obs)
        np.testing.assert_array_equal(state.info["steps"], t + 1)
    before = state.obs
    state = step(state, stay)  # step 3 = episode_length
    np.testing.assert_array_equal(state.info["truncated"], 1.0)
    np.testing.assert_array_equal(state.info["terminated"], 0.0)
    np.testing.assert_array_equal(state.done, 1.0)
    # The true final observation is kept; obs is a fresh reset.
    np.testing.assert_allclose(state.info["final_obs"], before)
    assert np.all(np.asarray(state.obs) != np.asarray(before))
    np.testing.assert_array_equal(state.info["steps"], 0)
    # The reward is the transition's (staying put costs the goal distance, not a reset's).
    np.testing.assert_allclose(state.reward, -np.min(np.linalg.norm(before[:, None] - np.array([[5, 0], [-5, 0], [0, 5], [0, -5]]), axis=-1), axis=1) ** 2, rtol=1e-5)


def test_termination_resets_only_finished_envs():
    wrapper = TrainingWrapper(envs.make("MultiGoal-v0"))  # episode_length 100
    reset, step = jax.jit(wrapper.reset), jax.jit(wrapper.step)
    state = reset(jax.random.split(jax.random.PRNGKey(2), 2))
    actions = jnp.stack([RIGHT, STAY])  # env 0 walks to (5, 0), env 1 stays
    finished = False
    for _ in range(7):
        prev = state
        state = step(state, actions)
        if state.done[0]:
            finished = True
            break
    assert finished
    assert state.info["terminated"][0] == 1.0 and state.info["truncated"][0] == 0.0
    assert np.linalg.norm(np.asarray(state.info["final_obs"][0]) - [5.0, 0.0]) < 1.0  # the goal was reached
    assert np.linalg.norm(state.obs[0]) < 0.5  # ... and env 0 starts again near the origin
    assert state.metrics["reward_goal"][0] == 10.0 and state.reward[0] > -40.0
    assert state.info["steps"][0] == 0
    # env 1 did not finish: untouched.
    assert state.done[1] == 0.0 and state.info["steps"][1] == prev.info["steps"][1] + 1
    np.testing.assert_array_equal(state.obs[1], state.info["final_obs"][1])
    np.testing.assert_array_equal(state.info["rng"][1], prev.info["rng"][1])


def test_under_vmap_over_runs_the_auto_reset_stays_a_branch_and_each_run_resets_its_own_envs():
    # The training program vmaps the wrapper over runs (seeds, grid points). Were the auto-reset's
    # predicate per run, vmap would turn its cond into a select: every env's reset on every step.
    wrapper = TrainingWrapper(envs.make("MultiGoal-v0"))  # episode_length 100
    runs = 3
    state = jax.vmap(wrapper.reset)(jax.random.split(jax.random.PRNGKey(6), runs * 2).reshape(runs, 2, 2))
    actions = jnp.stack([jnp.stack([RIGHT, STAY]), jnp.stack([STAY, STAY]), jnp.stack([STAY, RIGHT])])
    step = jax.vmap(wrapper.step)
    assert "cond[" in str(jax.make_jaxpr(step)(state, actions))
    step_alone = jax.jit(wrapper.step)
    alone = [jax.tree.map(lambda x: x[r], state) for r in range(runs)]
    done = np.zeros((runs, 2))
    for _ in range(7):
        state = jax.jit(step)(state, actions)
        alone = [step_alone(s, actions[r]) for r, s in enumerate(alone)]
        for r in range(runs):  # the same states as each run stepped apart, resets included
            jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[r], b), state, alone[r])
        done += np.asarray(state.done)
    np.testing.assert_array_equal(done > 0, [[True, False], [False, False], [False, True]])


def test_resets_are_fresh_each_episode(multigoal):
    _, reset, step = multigoal
    state = reset(jax.random.split(jax.random.PRNGKey(3), N))
    starts = [np.asarray(state.obs)]
    stay = jnp.tile(STAY, (N, 1))
    for _ in range(3):  # three episodes of three steps
        for _ in range(3):
            state = step(state, stay)
        starts.append(np.asarray(state.obs))
    starts = np.stack(starts)  # (episodes, N, 2)
    for env in range(N):
        assert len(np.unique(starts[:, env, 0])) == len(starts), "an env repeated its initial state"


def test_wrapper_scans_under_jit(multigoal):
    wrapper, reset, _ = multigoal

    @jax.jit
    def rollout(keys):
        def body(state, _):
            state = wrapper.step(state, jnp.zeros((N, 2)))
            return state, (state.done, state.info["truncated"])

        return jax.lax.scan(body, wrapper.reset(keys), None, length=9)[1]

    done, truncated = rollout(jax.random.split(jax.random.PRNGKey(4), N))
    np.testing.assert_array_equal(done[:, 0], [0, 0, 1] * 3)
    np.testing.assert_array_equal(truncated, done)


def test_wrapper_with_mujoco_task():
    """Auto-reset with an MJX pipeline state: Hopper terminates or truncates within 5 steps."""
    env = envs.make("Hopper-v5")
    wrapper = TrainingWrapper(env, episode_length=5)
    reset, step = jax.jit(wrapper.reset), jax.jit(wrapper.step)
    state = reset(jax.random.split(jax.random.PRNGKey(5), N))
    first = np.asarray(state.pipeline_state.qpos)
    actions = jax.random.uniform(jax.random.PRNGKey(6), (5, N, env.action_size), minval=-1, maxval=1)
    seen_done = np.zeros(N, bool)
    for t in range(5):
        prev = state
        state = step(state, actions[t])
        done = np.asarray(state.done) > 0
        seen_done |= done
        term, trunc = np.asarray(state.info["terminated"]), np.asarray(state.info["truncated"])
        np.testing.assert_array_equal(done, (term > 0) | (trunc > 0))
        assert not np.any((term > 0) & (trunc > 0))
        qpos = np.asarray(state.pipeline_state.qpos)
        # Reset envs: fresh qpos within Hopper's reset noise (0.005) of qpos0 ...
        assert np.all(np.abs(qpos[done] - np.asarray(env.init_qpos)) <= 0.005 + 1e-6)
        # ... whose observation is obs, while final_obs keeps the true last one.
        np.testing.assert_allclose(np.asarray(state.obs)[done], np.asarray(jax.vmap(env.observation)(state.pipeline_state))[done], atol=1e-6)
        assert np.all(np.any(np.asarray(state.info["final_obs"])[done] != np.asarray(state.obs)[done], axis=1))
        np.testing.assert_array_equal(np.asarray(state.info["final_obs"])[~done], np.asarray(state.obs)[~done])
        del prev
    assert seen_done.all()
    np.testing.assert_array_equal(np.asarray(state.info["truncated"]) + np.asarray(state.info["terminated"]) > 0, np.asarray(state.done) > 0)
    assert not np.allclose(np.asarray(state.pipeline_state.qpos)[np.asarray(state.done) > 0], first[np.asarray(state.done) > 0])


def test_a_program_traces_the_physics_once(monkeypatch):
    """The training envs' step and auto-reset and the evaluation episodes' reset and step share one trace each
    of MJX's step and forward (envs.base.traced_once): tracing the physics is most of a chunk program's build."""
    from mujoco import mjx

    from mjx_dacer.evaluate import evaluate

    traced = {"step": 0, "forward": 0}
    for name in traced:
        original = getattr(mjx, name)

        def counting(*args, _name=name, _original=original):
            traced[_name] += 1
            return _original(*args)

        monkeypatch.setattr(mjx, name, counting)
    env = type(envs.make("Hopper-v5"))()  # a new instance: nothing traced yet
    wrapper = TrainingWrapper(env)

    def program(key):
        state = wrapper.step(wrapper.reset(jax.random.split(key, N)), jnp.zeros((N, env.action_size)))
        episodes = evaluate(env, lambda obs, k: jnp.zeros((obs.shape[0], env.action_size)), key, 2, 3)
        return state.obs, episodes.returns

    jax.make_jaxpr(program)(jax.random.PRNGKey(0))
    assert traced == {"step": 1, "forward": 1}
