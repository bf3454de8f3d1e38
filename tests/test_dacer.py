"""The DACER update (DACER_SPEC §2-4): loss formula, determinism under jit/vmap, learning, alpha schedule."""

import agent_checks
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_dacer import diffusion
from mjx_dacer.buffer import Transition
from mjx_dacer.config import Config
from mjx_dacer.dacer import DACER
from mjx_dacer.losses import CRITIC_EPS, distributional_critic_loss

S, A, N = 5, 2, 32


def tiny_agent(**changes) -> DACER:
    config = Config().replace(**{"hidden_sizes": [32, 32], "critic_hidden_sizes": [32, 32], "diffusion_steps": 5,
                                 "alpha_update_interval": 3, "entropy_samples": 24, **changes})
    return DACER(config, S, A)


def hparams(**changes):
    return Config().replace(**changes).hparams()


def random_batch(key, n=N) -> Transition:
    return agent_checks.random_batch(key, n, S, A)


# ---------------------------------------------------------------- critic loss
def numpy_critic_loss(mu, sigma, y, y_s, b, eps=0.1):
    """DACER_SPEC §3 written out in float64; stop-gradients do not change the value."""
    y_hat = mu + np.clip(y_s - mu, -3 * b, 3 * b)
    inner = mu * (y - mu) / (sigma**2 + eps) + sigma * ((mu - y_hat) ** 2 - sigma**2) / (sigma**3 + eps)
    return -(b**2 + eps) * inner.mean()


def test_critic_loss_matches_numpy_formula_and_its_gradients():
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 64
        mu = rng.normal(size=n) * 3
        sigma = rng.uniform(0.05, 4.0, size=n)
        y = mu + rng.normal(size=n) * 2
        y_s = y + rng.normal(size=n) * 3  # some samples fall outside +-3b, exercising the clip
        b = rng.uniform(0.2, 2.0)
        args = [jnp.asarray(v, jnp.float32) for v in (mu, sigma, y, y_s, b)]
        got = float(distributional_critic_loss(*args))
        assert got == pytest.approx(numpy_critic_loss(mu, sigma, y, y_s, b), rel=1e-4, abs=1e-4)
        # The stop-gradients decide what each term trains: d/dmu only via the mean
        # term, d/dsigma only via the std term, with sigma treated as constant elsewhere.
        g_mu, g_sigma = jax.grad(distributional_critic_loss, argnums=(0, 1))(*args)
        y_hat = mu + np.clip(y_s - mu, -3 * b, 3 * b)
        scale = -(b**2 + CRITIC_EPS) / n
        np.testing.assert_allclose(g_mu, scale * (y - mu) / (sigma**2 + CRITIC_EPS), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            g_sigma, scale * ((mu - y_hat) ** 2 - sigma**2) / (sigma**3 + CRITIC_EPS), rtol=1e-4, atol=1e-6
        )


# ---------------------------------------------------------------- update
def run_updates(agent, key, hp, batch, n_updates):
    state = agent.init(key)

    def body(state, k):
        state, metrics = agent.update(state, batch, k, hp)
        return state, metrics

    return jax.lax.scan(body, state, jax.random.split(jax.random.fold_in(key, 1), n_updates))


# One compiled single run and one compiled vmapped run serve both checks below.
_run = jax.jit(run_updates, static_argnums=(0, 4))
_run_vmapped = jax.jit(jax.vmap(run_updates, in_axes=(None, 0, 0, None, None)), static_argnums=(0, 4))


def test_update_vmapped_over_seeds_and_hparams_equals_single_runs():
    """Entry i of a batch over (key_i, hparams_i) equals the run of (key_i, hparams_i) alone."""
    agent = tiny_agent()
    batch = random_batch(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    grid = [hparams(lr_critic=1e-4), hparams(lr_critic=1e-4), hparams(lr_critic=1e-2, noise_scale=0.15)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *grid)
    v_state, v_metrics = _run_vmapped(agent, keys, stacked, batch, 4)
    for i in range(3):
        s_state, s_metrics = _run(agent, keys[i], grid[i], batch, 4)
        for name in s_metrics:
            np.testing.assert_allclose(v_metrics[name][i], s_metrics[name], rtol=2e-4, atol=1e-5, err_msg=name)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-4, atol=1e-5),
            (v_state.policy_params, v_state.critic_params),
            (s_state.policy_params, s_state.critic_params),
        )
    # Different seeds and different learning rates must differ (else the test could not fail).
    assert not np.allclose(v_metrics["critic_loss"][0], v_metrics["critic_loss"][1])
    assert not np.allclose(v_metrics["q_mean"][1], v_metrics["q_mean"][2])


def test_repeated_updates_fit_the_critic():
    """With gamma = 0 the target is the fixed 0.2 r, so the TD error must shrink."""
    agent = tiny_agent(alpha_update_interval=10_000)
    hp = hparams(gamma=0.0, lr_critic=3e-3, lr_actor=1e-4)
    batch = random_batch(jax.random.PRNGKey(2))
    _, metrics = jax.jit(lambda k: run_updates(agent, k, hp, batch, 300))(jax.random.PRNGKey(0))
    td = np.asarray(metrics["td_error"])
    assert np.all(np.isfinite(td))
    assert td[-10:].mean() < 0.2 * td[:10].mean(), (td[:10].mean(), td[-10:].mean())



def moved(new, old) -> bool:
    """Every leaf of the parameters `new` differs from `old`'s."""
    return all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)))


@pytest.mark.parametrize("fuse", [False, True])
def test_actor_and_polyak_targets_move_every_policy_delay_updates(fuse):
    """Update 0 trains the actor on Eq. 10 (its loss: -mean min_j Q_j(s, a), a the chain's behaviour action
    from this update's actor key) and moves the targets by tau toward the new critics; update 1 (policy_delay
    2) leaves both as they were, bit for bit, while the critics keep learning."""
    agent = tiny_agent(fuse_chains=fuse)
    hp = hparams(tau=0.3)
    batch = random_batch(jax.random.PRNGKey(4))
    update = jax.jit(lambda s, k: agent.update(s, batch, k, hp))
    state0 = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    state1, m0 = update(state0, key)
    k_actor = jax.random.split(key, 4)[2]
    a = agent.noisy_action(state0.policy_params, batch.obs, k_actor, state0.log_alpha, agent.noise_scale(state0.step, hp))
    q = agent.critic_net.apply(state0.critic_params, batch.obs, a)[0]
    assert float(m0["actor_loss"]) == pytest.approx(-float(jnp.mean(jnp.min(q, axis=0))), rel=1e-5)
    assert moved(state1.policy_params, state0.policy_params)
    jax.tree.map(lambda t, c, t0: np.testing.assert_allclose(t, 0.3 * c + 0.7 * t0, rtol=1e-6, atol=1e-7),
                 state1.target_critic_params, state1.critic_params, state0.target_critic_params)
    state2, m1 = update(state1, jax.random.PRNGKey(6))
    jax.tree.map(np.testing.assert_array_equal, (state2.policy_params, state2.policy_opt_state,
                 state2.target_critic_params), (state1.policy_params, state1.policy_opt_state,
                 state1.target_critic_params))
    assert float(m1["actor_loss"]) == float(m0["actor_loss"])
    assert moved(state2.critic_params, state1.critic_params)


def test_chain_actions_gives_each_stacked_part_the_actions_of_its_own_chain():
    """Two parts (s with key k1, s' with k2) in one chain: each equals `diffusion.reverse_chain` on the whole
    network (not the first layer's split) with its own key; swapping the keys swaps the draws."""
    agent = tiny_agent()
    params = agent.init(jax.random.PRNGKey(0)).policy_params
    obs, next_obs = (jax.random.normal(jax.random.PRNGKey(i), (n, S)) for i, n in ((1, 32), (2, 16)))
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    both = agent.chain_actions(params, (obs, next_obs), (k1, k2))
    assert [a.shape for a in both] == [(32, A), (16, A)]
    whole = lambda o, x, t: agent.policy_net.apply(params, o, x, t)  # noqa: E731
    with jax.default_matmul_precision("highest"):
        for a, o, k in zip(both, (obs, next_obs), (k1, k2)):
            np.testing.assert_allclose(a, diffusion.reverse_chain(whole, agent.schedule, o, k, A), atol=1e-5)
    swapped = agent.chain_actions(params, (obs, next_obs), (k2, k1))
    assert not np.allclose(swapped[0], both[0])


def test_fuse_chains_runs_one_chain_of_2n_states_and_leaves_the_updates_alone():
    """fuse_chains: where the actor trains, its chain over s and the targets' chain over s' are one chain of 2N
    rows; four updates (the actor trains in two, and alpha moves) give the same numbers as two chains of N."""
    batch = random_batch(jax.random.PRNGKey(1))
    results, programs = [], []
    for fuse in (False, True):
        agent = tiny_agent(fuse_chains=fuse)
        results.append(_run(agent, jax.random.PRNGKey(2), hparams(), batch, 4))
        programs.append(jax.jit(agent.update).lower(agent.init(jax.random.PRNGKey(0)), batch, jax.random.PRNGKey(2),
                                                    hparams()).as_text())
    stacked_rows = f"tensor<{2 * N}x{A}xf32>"  # the chain's state x_t for s and s' together
    assert stacked_rows not in programs[0] and stacked_rows in programs[1]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), results[0], results[1])


@pytest.mark.parametrize("factor, direction", [(-10.0, +1), (10.0, -1)])
def test_alpha_branch_runs_on_multiples_of_the_interval(factor, direction):
    """H_target = -factor * dim(A): far above any estimate for factor -10, far below for +10."""
    agent = tiny_agent(alpha_update_interval=3)
    hp = hparams(target_entropy_factor=factor)
    state0 = agent.init(jax.random.PRNGKey(0))
    batch = random_batch(jax.random.PRNGKey(3))
    update = jax.jit(agent.update)
    state, log_alphas, entropies = state0, [float(state0.log_alpha)], []
    for i in range(8):
        state, m = update(state, batch, jax.random.PRNGKey(100 + i), hp)
        log_alphas.append(float(state.log_alpha))
        entropies.append(float(m["entropy"]))
    changed = [i for i in range(8) if log_alphas[i + 1] != log_alphas[i]]
    assert changed == [0, 3, 6]
    for i in changed:
        assert np.sign(log_alphas[i + 1] - log_alphas[i]) == direction
    # The estimate itself is refreshed on the same updates only.
    assert entropies[0] == entropies[1] == entropies[2]
    assert entropies[3] != entropies[2] and entropies[6] != entropies[5]
    assert np.isfinite(entropies).all()


def test_behaviour_noise_scales_with_alpha_and_lambda():
    agent = tiny_agent()
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((4096, S))
    key = jax.random.PRNGKey(1)
    a0 = agent.deterministic_action(state.policy_params, obs, jax.random.split(key)[0])
    a = agent.noisy_action(state.policy_params, obs, key, jnp.log(3.0), 0.01)
    # lambda * alpha = 0.03; an untrained chain often lands on the +-1 bound,
    # where the clip halves the noise, so look at interior a0 only.
    interior = jnp.abs(a0) < 0.8
    assert int(interior.sum()) > 1000
    assert float(jnp.std((a - a0)[interior])) == pytest.approx(0.03, rel=0.05)
    assert bool(jnp.all(jnp.abs(a) <= 1))


def test_noise_decay_lowers_lambda_linearly_over_the_run_and_behaviour_follows_it():
    """lambda_t = noise_scale * (1 - noise_decay * t / total updates), held after the last update; the
    behaviour action uses it: at the end of a run with noise_decay 1 it is the chain's a0 itself."""
    agent = tiny_agent(total_iterations=50, updates_per_iteration=2)  # 100 updates
    hp = hparams(noise_scale=0.27, noise_decay=1 - 0.1 / 0.27)
    at = [float(agent.noise_scale(jnp.int32(t), hp)) for t in (0, 50, 100, 400)]
    assert at == pytest.approx([0.27, 0.185, 0.1, 0.1], rel=1e-6)
    assert float(agent.noise_scale(jnp.int32(70), hparams(noise_scale=0.2))) == pytest.approx(0.2)  # default: none
    state = agent.init(jax.random.PRNGKey(0))
    obs, key = jnp.zeros((64, S)), jax.random.PRNGKey(1)
    a0 = agent.deterministic_action(state.policy_params, obs, jax.random.split(key)[0])
    ended = state.replace(step=jnp.int32(100))
    silent = agent.behaviour_action(ended, obs, key, hparams(noise_scale=0.5, noise_decay=1.0))
    np.testing.assert_allclose(silent, jnp.clip(a0, -1, 1), atol=1e-6)
    noisy = agent.behaviour_action(state, obs, key, hparams(noise_scale=0.5, noise_decay=1.0))
    assert float(jnp.max(jnp.abs(noisy - jnp.clip(a0, -1, 1)))) > 0.1
    assert float(agent.policy_export(ended, hp)["noise_scale"]) == pytest.approx(0.1)  # what policy.msgpack keeps


def test_agent_reads_the_static_fields_of_its_config():
    cfg = Config().replace(hidden_sizes=[64, 64], diffusion_steps=10, noise_scale=0.15)
    agent = DACER(cfg, 11, 3)
    assert agent.policy_net.hidden_sizes == (64, 64) and agent.config.diffusion_steps == 10
    assert agent.schedule.num_steps == 10
    state = agent.init(jax.random.PRNGKey(0))
    assert float(state.log_alpha) == pytest.approx(np.log(3.0))
    assert float(agent.target_entropy(cfg.hparams())) == pytest.approx(-0.9 * 3)


def test_chain_unroll_reaches_the_update_and_leaves_its_numbers_alone():
    """Config.chain_unroll compiles the chain without its loop; one update (critics through the target
    actions' chain, the actor through its own) gives the same numbers as with the loop."""
    key = jax.random.PRNGKey(0)
    batch = random_batch(jax.random.PRNGKey(1))
    results, loops = [], []
    for unroll in (1, 5):
        agent = tiny_agent(chain_unroll=unroll)
        update = jax.jit(lambda s, b, k: agent.update(s, b, k, hparams()))
        state = agent.init(key)
        results.append(update(state, batch, jax.random.PRNGKey(2)))
        loops.append(update.lower(state, batch, jax.random.PRNGKey(2)).as_text().count("stablehlo.while"))
    assert loops[1] < loops[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), results[0], results[1])
