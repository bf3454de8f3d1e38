"""The MJX tasks against Gymnasium's own C-MuJoCo environments.

One step: Gymnasium and MJX are put in the same (qpos, qvel), drawn from
Gymnasium rollouts under random actions (so that contacts are active), and
given the same action (Gymnasium gets the actuator-space action that ours
scales [-1, 1] to). Observation, reward, every reward term Gymnasium reports
in ``info``, and termination must agree within `TOLERANCE`:

* faithful: MJX runs in float32, C MuJoCo in float64. Over frame_skip
  substeps (RK4 on most tasks) and a constraint solve that float32 cannot
  converge beyond ~1e-6 relative, observed errors stay below 1e-4 relative
  (Humanoid's cfrc_ext of a few hundred N: ~1e-2 absolute). Bound:
  |ours - ref| <= 2e-3 + 2e-3 |ref|.
* fast: the capped solver (4 iterations, 8 line-search steps) could stop short
  of convergence on contact-rich steps. Measured, it does not (warm-started
  Newton converges within 4 iterations here: the errors equal faithful's);
  the bound leaves room for it: |ours - ref| <= 5e-3 + 5e-3 |ref|.

Ant-v5 (pyramidal friction cone): MJX's JAX collision code orients the
tangent frame of capsule-plane contacts differently from C MuJoCo 4, and a
pyramidal cone is not rotation-invariant, so steps with a foot in contact
differ by O(1) in qvel. The one-step check therefore covers Ant's
contact-free samples; `test_ant_matches_with_elliptic_cone` (slow) shows the
rest of the model agrees once the cone is rotation-invariant, and the return
distributions below cover Ant as a whole.

Returns: mean and distribution (KS test) of random-policy returns over 64 episodes on each
side (independent resets, independent actions), capped at 100 steps here
(Hopper, Walker2d, Humanoid and InvertedDoublePendulum episodes end sooner
under a random policy; Pusher's are 100 steps anyway); full-length episodes
in the slow variant.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import scipy.stats
from conftest import ENV_BATCH, MUJOCO_TASKS

PROFILES = ("faithful", "fast")
# (rtol, atol) per profile; see the module docstring for why.
TOLERANCE = {"faithful": (2e-3, 2e-3), "fast": (5e-3, 5e-3)}
# Gymnasium info entries that are not reward terms (Humanoid's empty tendon arrays).
NOT_COMPARED = {"tendon_length", "tendon_velocity"}


# -- Gymnasium reference ------------------------------------------------------


def reference_states(g, env, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n (qpos, qvel) visited by Gymnasium under random actions, a few steps apart."""
    g.reset(seed=int(rng.integers(2**31)))
    qpos, qvel = [], []
    while len(qpos) < n:
        for _ in range(int(rng.integers(1, 15))):
            ctrl = np.asarray(env.scale_action(rng.uniform(-1, 1, env.action_size)), np.float64)
            _, _, terminated, _, _ = g.step(ctrl)
            if terminated:
                g.reset(seed=int(rng.integers(2**31)))
        qpos.append(g.data.qpos.copy())
        qvel.append(g.data.qvel.copy())
    return np.stack(qpos), np.stack(qvel)


def reference_step(g, qpos, qvel, ctrl):
    """Gymnasium's step from (qpos, qvel); contact-free: no contact in any substep."""
    mujoco.mj_resetData(g.model, g.data)  # as Gymnasium's reset: no stale cfrc_ext
    g.set_state(qpos, qvel)
    reset_obs = g._get_obs()
    probe = mujoco.MjData(g.model)
    probe.qpos[:], probe.qvel[:], probe.ctrl[:] = qpos, qvel, ctrl
    mujoco.mj_forward(g.model, probe)
    contact_free = probe.ncon == 0
    for _ in range(g.frame_skip):
        mujoco.mj_step(g.model, probe)
        contact_free &= probe.ncon == 0
    obs, reward, terminated, _, info = g.step(ctrl)
    return reset_obs, obs, reward, terminated, info, contact_free


def assert_close(ours, ref, physics: str, what: str):
    rtol, atol = TOLERANCE[physics]
    np.testing.assert_allclose(np.asarray(ours, np.float64), np.asarray(ref, np.float64), rtol=rtol, atol=atol, err_msg=what)


# -- one step -------------------------------------------------------------------


@pytest.mark.parametrize("physics", PROFILES)
@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_one_step_matches_gymnasium(name, physics, compiled_env, gym_env):
    c, g = compiled_env(name, physics), gym_env(name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    qpos, qvel = reference_states(g, c.env, ENV_BATCH, rng)
    actions = rng.uniform(-1, 1, (ENV_BATCH, c.env.action_size)).astype(np.float32)
    start = c.state_from(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32))
    out = jax.device_get(c.step(start, jnp.asarray(actions)))
    start_obs = np.asarray(start.obs)

    compared = 0
    for i in range(ENV_BATCH):
        ctrl = np.asarray(c.env.scale_action(actions[i]), np.float64)
        reset_obs, obs, reward, terminated, info, contact_free = reference_step(g, qpos[i], qvel[i], ctrl)
        assert_close(start_obs[i], reset_obs, physics, f"{name} state_from obs, sample {i}")
        if name == "Ant-v5" and not contact_free:
            continue  # pyramidal-cone contact frames differ (module docstring)
        compared += 1
        where = f"{name} ({physics}), sample {i}"
        assert bool(out.done[i]) == bool(terminated), f"{where}: terminated"
        assert_close(out.obs[i], obs, physics, f"{where}: observation")
        assert_close(out.reward[i], reward, physics, f"{where}: reward")
        missing = set(info) - NOT_COMPARED - set(out.metrics)
        assert not missing, f"{where}: reward terms not in State.metrics: {missing}"
        for term in set(info) - NOT_COMPARED:
            assert_close(out.metrics[term][i], info[term], physics, f"{where}: metrics[{term!r}]")
    assert compared >= ENV_BATCH // 4, f"{name}: only {compared} samples compared"


def test_reward_terms_are_gymnasium_info_keys(compiled_env, gym_env):
    """Every task's metrics are exactly Gymnasium's info keys (minus the tendon arrays)."""
    import mjx_dacer.envs as envs

    for name in MUJOCO_TASKS:
        env, g = envs.make(name), gym_env(name)
        g.reset(seed=0)
        _, _, _, _, info = g.step(g.action_space.sample())
        metrics = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).metrics
        assert set(metrics) == set(info) - NOT_COMPARED, name


# -- reset distribution -------------------------------------------------------


@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_reset_distribution_matches_gymnasium(name, compiled_env, gym_env):
    c, g = compiled_env(name, "fast"), gym_env(name)
    qpos, qvel = jax.device_get(c.initial_state(jax.random.split(jax.random.PRNGKey(1), ENV_BATCH)))
    ref = []
    for seed in range(256):
        g.reset(seed=seed)
        ref.append(np.concatenate([g.data.qpos, g.data.qvel]))
    ref = np.stack(ref)
    ours = np.concatenate([qpos, qvel], axis=1)
    # Per coordinate: same mean (4 standard errors) and same spread (within 2x).
    se = np.sqrt(ref.var(0) / len(ref) + ours.var(0) / len(ours)) + 1e-6
    assert np.all(np.abs(ours.mean(0) - ref.mean(0)) <= 4 * se), name
    spread = ref.std(0) > 1e-6
    ratio = ours.std(0)[spread] / ref.std(0)[spread]
    assert np.all((ratio > 0.5) & (ratio < 2.0)), (name, ratio)
    np.testing.assert_array_equal(ours[:, ~spread], np.broadcast_to(ref[0, ~spread], ours[:, ~spread].shape))
    if name == "Pusher-v5":  # the object is redrawn until 0.17 from the goal
        assert np.all(np.linalg.norm(qpos[:, -4:-2] - qpos[:, -2:], axis=1) > 0.17)


# -- returns ------------------------------------------------------------------


def gymnasium_returns(g, env, episodes: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    returns = np.zeros(episodes)
    for ep in range(episodes):
        g.reset(seed=int(rng.integers(2**31)))
        for _ in range(cap):
            ctrl = np.asarray(env.scale_action(rng.uniform(-1, 1, env.action_size)), np.float64)
            _, reward, terminated, _, _ = g.step(ctrl)
            returns[ep] += reward
            if terminated:
                break
    return returns


def mjx_returns(c, batches: int, cap: int, key: jax.Array) -> np.ndarray:
    """Random-policy returns of batches * ENV_BATCH episodes, stepped in lockstep."""
    returns = []
    for _ in range(batches):
        key, k_reset, k_act = jax.random.split(key, 3)
        state = c.state_from(*c.initial_state(jax.random.split(k_reset, ENV_BATCH)))
        total, alive = np.zeros(ENV_BATCH), np.ones(ENV_BATCH, bool)
        for t in range(cap):
            action = jax.random.uniform(jax.random.fold_in(k_act, t), (ENV_BATCH, c.env.action_size), minval=-1, maxval=1)
            state = c.step(state, action)
            reward, done = jax.device_get((state.reward, state.done))
            total += np.where(alive, reward, 0.0)
            alive &= done == 0
            if not alive.any():
                break
        returns.append(total)
    return np.concatenate(returns)


def check_returns(name, physics, compiled_env, gym_env, batches: int, cap: int):
    c, g = compiled_env(name, physics), gym_env(name)
    ours = mjx_returns(c, batches, cap, jax.random.PRNGKey(7))
    ref = gymnasium_returns(g, c.env, len(ours), cap, np.random.default_rng(7))
    se = np.sqrt(ours.var() / len(ours) + ref.var() / len(ref))
    message = f"{name} ({physics}, {cap} steps): MJX {ours.mean():.2f} +- {ours.std():.2f}, Gymnasium {ref.mean():.2f} +- {ref.std():.2f}"
    # Same mean within 4 standard errors of the difference (+1% of its scale
    # for near-deterministic tasks), and the same distribution by a two-sample
    # Kolmogorov-Smirnov test at the 0.1% level. Random-policy returns of the
    # tasks that terminate are heavy-tailed (a rare episode lasts 5x the
    # median), so their sample std swings by 2x between seeds on either side;
    # the KS statistic compares the whole shape and is not ruled by one episode.
    assert abs(ours.mean() - ref.mean()) <= 4 * se + 0.01 * abs(ref.mean()) + 1e-3, message
    if ref.std() > 1e-3 * (1 + abs(ref.mean())):
        p_value = scipy.stats.ks_2samp(ours, ref).pvalue
        assert p_value > 1e-3, f"{message}; KS p-value {p_value:.2g}"
    else:  # (near-)deterministic returns: the spreads must both be tiny
        assert ours.std() <= 2.0 * ref.std() + 1e-3, message


@pytest.mark.parametrize("physics", PROFILES)
@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_random_policy_returns_match_gymnasium(name, physics, compiled_env, gym_env):
    check_returns(name, physics, compiled_env, gym_env, batches=2, cap=100)


@pytest.mark.slow
@pytest.mark.parametrize("physics", PROFILES)
@pytest.mark.parametrize("name", MUJOCO_TASKS)
def test_random_policy_returns_match_gymnasium_full_episodes(name, physics, compiled_env, gym_env):
    c = compiled_env(name, physics)
    check_returns(name, physics, compiled_env, gym_env, batches=2, cap=c.env.episode_length)


@pytest.mark.slow
def test_ant_matches_with_elliptic_cone(gym_env):
    """With a rotation-invariant friction cone on both sides, Ant agrees like the rest."""
    from mjx_dacer.envs import ant, physics

    elliptic = physics.Change("opt.cone", mujoco.mjtCone.mjCONE_ELLIPTIC, "test: rotation-invariant friction")

    class EllipticAnt(ant.Ant):
        physics_profiles = {"faithful": (elliptic,), "fast": (elliptic,)}

    env = EllipticAnt(physics="faithful")
    g = gym_env("Ant-v5")
    rng = np.random.default_rng(3)
    cone = g.model.opt.cone
    try:
        g.model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        qpos, qvel = reference_states(g, env, ENV_BATCH, rng)
        actions = rng.uniform(-1, 1, (ENV_BATCH, env.action_size)).astype(np.float32)
        step = jax.jit(jax.vmap(lambda q, v, a: env.step(env.state_from(q, v), a)))
        out = jax.device_get(step(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32), jnp.asarray(actions)))
        in_contact = 0
        for i in range(ENV_BATCH):
            ctrl = np.asarray(env.scale_action(actions[i]), np.float64)
            _, obs, reward, terminated, info, contact_free = reference_step(g, qpos[i], qvel[i], ctrl)
            in_contact += not contact_free
            assert_close(out.obs[i], obs, "faithful", f"elliptic Ant sample {i}: observation")
            assert_close(out.reward[i], reward, "faithful", f"elliptic Ant sample {i}: reward")
            assert bool(out.done[i]) == bool(terminated)
        assert in_contact >= ENV_BATCH // 4
    finally:
        g.model.opt.cone = cone
