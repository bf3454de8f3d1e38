"""The compiled training program (DACER_SPEC §5) on the cheap Multi-goal task."""

import functools
import agent_checks
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config
from mjx_dacer.cli.train import parse_grid
from mjx_dacer.rundir import RunSpec
from mjx_dacer.train import make_train

TINY = dict(
    env="MultiGoal-v0", num_envs=20, total_iterations=6, eval_interval=3, warmup_steps=40,
    buffer_capacity=1000, batch_size=16, eval_episodes=2, hidden_sizes=[16, 16],
    critic_hidden_sizes=[16, 16], diffusion_steps=3, entropy_samples=8, alpha_update_interval=2,
)


@pytest.fixture(scope="module")
def program():
    return make_train(Config().replace(**TINY))


@pytest.fixture(scope="module")
def chunk(program):
    return jax.jit(program.run_chunk, static_argnums=2)


def assert_rows_equal(a, b, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))


def test_chunked_run_equals_one_call(program, chunk):
    key, hp = jax.random.PRNGKey(0), program.config.hparams()
    _, whole = jax.jit(program.train)(key, hp)
    ts = jax.jit(program.init)(key, hp)
    rows = []
    for n in program.chunk_sizes:
        ts, row = chunk(ts, hp, n)
        rows.append(row)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *rows)
    assert_rows_equal(whole, stacked)
    # The warm-up (40 transitions / 20 envs = 2 iterations) is a chunk of its own, evaluated at
    # iteration 0; the 6 iterations after it are evaluated every 3 (DACER_SPEC §5).
    assert program.chunk_sizes == [2, 3, 3]
    np.testing.assert_array_equal(whole["iteration"], [0, 3, 6])
    np.testing.assert_array_equal(whole["env_steps"], [40, 100, 160])
    np.testing.assert_array_equal(whole["updates"], [0, 3, 3])


def test_one_program_runs_chunks_of_every_length(program):
    """The runner's chunk program takes the length as an argument: compiled once, it runs the warm-up's
    2 iterations and the chunks' 3, and its rows equal the whole run's (fixed-length chunks)."""
    key, hp = jax.random.PRNGKey(0), program.config.hparams()
    _, whole = jax.jit(program.train)(key, hp)
    any_length = jax.jit(functools.partial(program.run_chunk, max_iterations=max(program.chunk_sizes)))
    ts = jax.jit(program.init)(key, hp)
    rows = []
    for n in program.chunk_sizes:
        ts, row = any_length(ts, hp, jnp.int32(n))
        rows.append(row)
    assert_rows_equal(whole, jax.tree.map(lambda *x: jnp.stack(x), *rows))
    assert any_length._cache_size() == 1


@pytest.mark.parametrize(
    ("warmup_steps", "num_envs", "total", "interval", "sizes"),
    [(40, 20, 6, 3, [2, 3, 3]), (41, 20, 7, 3, [3, 3, 3, 1]), (0, 20, 6, 3, [0, 3, 3]), (10, 20, 3, 5, [1, 3])],
)
def test_run_length_counts_iterations_after_the_warmup(warmup_steps, num_envs, total, interval, sizes):
    cfg = Config().replace(**{**TINY, "warmup_steps": warmup_steps, "num_envs": num_envs,
                              "total_iterations": total, "eval_interval": interval})
    program = make_train(cfg)
    assert cfg.warmup_iterations == -(-warmup_steps // num_envs)
    assert program.chunk_sizes == sizes and sum(sizes) == cfg.warmup_iterations + total
    assert [program.iterations_after(c) for c in range(len(sizes) + 1)][-1] == total


def test_warmup_uses_no_policy_actions_and_does_no_updates(program, chunk):
    """The first 2 iterations fill the buffer to 40 = warmup_steps with uniform actions."""
    key, hp = jax.random.PRNGKey(1), program.config.hparams()
    ts = jax.jit(program.init)(key, hp)
    # Same keys, different policy: warm-up data must not depend on the policy at all.
    other = ts.replace(agent=program.agent.init(jax.random.PRNGKey(99)))
    run2 = jax.jit(lambda s: jax.lax.scan(lambda c, _: program.iteration(c, hp), s, None, length=2))
    a, m = run2(ts)
    b, _ = run2(other)
    jax.tree.map(np.testing.assert_array_equal, a.buffer, b.buffer)
    np.testing.assert_array_equal(m["updated"], [0.0, 0.0])
    np.testing.assert_array_equal(m["policy_actions"], [0.0, 0.0])
    assert int(a.agent.step) == 0
    jax.tree.map(np.testing.assert_array_equal, a.agent.policy_params, ts.agent.policy_params)
    # The third iteration acts with the policy and updates.
    c, m3 = jax.jit(lambda s: program.iteration(s, hp))(a)
    assert float(m3["updated"]) == 1.0 and int(c.agent.step) == 1
    # Whole chunks report it too: chunk 1 = 2 warm-up iterations + 1 with an update.
    _, row = chunk(ts, hp, 3)
    assert float(row["updates"]) == 1.0 and float(row["policy_iterations"]) == 1.0


def test_truncation_bootstraps_and_termination_does_not(program):
    agent, hp = program.agent, program.config.hparams()
    state = agent.init(jax.random.PRNGKey(0))
    n = program.config.batch_size
    base = Transition(
        obs=jnp.ones((n, 2)), action=jnp.zeros((n, 2)), reward=jnp.full((n,), 5.0),
        next_obs=jnp.ones((n, 2)), terminated=jnp.zeros(n), truncated=jnp.zeros(n),
    )
    update = jax.jit(agent.update)
    key = jax.random.PRNGKey(3)
    _, m_running = update(state, base, key, hp)
    _, m_truncated = update(state, base.replace(truncated=jnp.ones(n)), key, hp)
    _, m_terminated = update(state, base.replace(terminated=jnp.ones(n)), key, hp)
    # Termination: y = reward_scale * r exactly. Truncation: the same bootstrap as a running step.
    assert float(m_terminated["target_mean"]) == pytest.approx(0.2 * 5.0, abs=1e-6)
    assert float(m_truncated["target_mean"]) == pytest.approx(float(m_running["target_mean"]), abs=1e-6)
    assert float(m_truncated["target_mean"]) != pytest.approx(1.0, abs=1e-3)


@pytest.fixture(scope="module")
def vmapped_chunk(program):
    return jax.jit(program.run_chunk_batch, static_argnums=2)


def test_seed_in_vmapped_batch_equals_seed_alone_and_grid_points_equal_single_runs(program, chunk, vmapped_chunk):
    cfg = program.config
    spec = RunSpec(grid=parse_grid(["lr_critic=1e-4,1e-3"]), seeds=(0, 1))
    keys, hps = spec.inputs(cfg)
    ts = jax.jit(program.init_batch)(keys, hps)
    ts, rows = vmapped_chunk(ts, hps, 3)
    _, rows2 = vmapped_chunk(ts, hps, 3)
    for b, (g, seed) in enumerate(spec.entries):
        single_cfg = cfg.replace(**spec.grid[g])
        key, hp = jax.random.PRNGKey(cfg.seed + seed), single_cfg.hparams()
        s = jax.jit(program.init)(key, hp)
        s, r1 = chunk(s, hp, 3)
        _, r2 = chunk(s, hp, 3)
        assert_rows_equal(jax.tree.map(lambda x: x[b], rows), r1, rtol=1e-4, atol=1e-5)
        assert_rows_equal(jax.tree.map(lambda x: x[b], rows2), r2, rtol=1e-4, atol=1e-5)
    # Seeds differ from each other, and so do grid points with the same seed.
    assert not np.allclose(rows2["critic_loss"][0], rows2["critic_loss"][1])
    assert not np.allclose(rows2["q_mean"][0], rows2["q_mean"][2])


def test_sweep_rejects_shape_changing_keys():
    from mjx_dacer.config import ConfigError

    with pytest.raises(ConfigError, match="hidden_sizes"):
        parse_grid(["hidden_sizes=64,128"])


def test_short_run_on_multigoal_learns():
    """500 updates take the evaluation return from about -5000 (the untrained chain's action
    runs into a wall, far from every goal) to about -500 (a goal reached in a few steps);
    measured on seeds 0-2: untrained -5239/-5090/-4759, after 1500 iterations -503/-361/-532.
    A margin of 2000 leaves room for seed-to-seed noise and still fails on a policy that
    does not learn."""
    cfg = Config().replace(**agent_checks.MULTIGOAL_LEARNING, diffusion_steps=10, entropy_samples=32,
                           alpha_update_interval=250)
    untrained, rows = agent_checks.learn_multigoal(cfg)
    final = float(rows["eval_return"][-1])
    assert np.all(np.isfinite(rows["critic_loss"]))
    assert final > untrained + 2000, (untrained, rows["eval_return"])


@pytest.mark.parametrize("algo", ["dacer", "sac", "dsac-t", "td3", "ddpg"])
def test_each_agent_reads_every_hparam_but_those_it_declares_unused(algo):
    """A grid over a key the agent never reads trains the same run at every point: `agents.unused_hparams`
    says which, and `RunSpec` refuses them. Checked here from what the agent does: two updates and a
    behaviour action, with each traced setting changed in turn, differ from the unchanged ones exactly
    for the keys it reads (two updates: TD3's delayed actor, and Adam's first step depends on the
    gradient's sign only; mid-run: noise_decay scales with the progress)."""
    from mjx_dacer.agents import defaults, make_agent, unused_hparams
    from mjx_dacer.config import HPARAM_FIELDS

    S, A = 3, 2
    cfg = Config().replace(**{**defaults(algo), "algo": algo, "hidden_sizes": [8, 8], "critic_hidden_sizes": [8, 8],
                              "diffusion_steps": 2, "entropy_samples": 6, "alpha_update_interval": 1,
                              "total_iterations": 10})
    agent = make_agent(cfg, S, A)
    state = agent.init(jax.random.PRNGKey(0))
    state = state.replace(step=jnp.int32(4))  # mid-run (of 10 updates)
    batch = agent_checks.random_batch(jax.random.PRNGKey(1), 16, S, A)

    @jax.jit
    def outcome(hp):
        key = jax.random.PRNGKey(2)
        s, _ = agent.update(state, batch, key, hp)
        s, _ = agent.update(s, batch, key, hp)
        return s, agent.behaviour_action(s, batch.obs, key, hp)

    base = cfg.hparams()
    reference = jax.tree.leaves(outcome(base))
    changed = {"target_entropy_factor": -3.0, "noise_decay": 0.5, "gamma": 0.5, "tau": 0.5}
    read = set()
    for key in HPARAM_FIELDS:
        value = changed.get(key, 2.0 * float(getattr(base, key)) + 0.1)
        leaves = jax.tree.leaves(outcome(base.replace(**{key: jnp.float32(value)})))
        if any(not np.array_equal(a, b) for a, b in zip(leaves, reference)):
            read.add(key)
    assert set(HPARAM_FIELDS) - read == unused_hparams(algo)
