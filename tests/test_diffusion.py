"""The VP schedule and the reverse chain (DACER_SPEC §1) against closed forms and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjx_dacer import diffusion
from mjx_dacer.networks import NoisePredictor, sinusoidal_embedding
from mjx_dacer.precision import PRECISION


def numpy_schedule(T, b_min=0.1, b_max=10.0):
    t = np.arange(1, T + 1, dtype=np.float64)
    alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
    return 1 - alpha


def test_schedule_check_values_for_T20():
    s = diffusion.make_schedule(20)
    # Values quoted in DACER_SPEC §1.
    assert float(s.betas[0]) == pytest.approx(0.0172, abs=5e-5)
    assert float(s.betas[-1]) == pytest.approx(0.3859, abs=5e-5)
    assert float(s.alpha_bars[-1]) == pytest.approx(0.0064, abs=5e-5)


@pytest.mark.parametrize("T", [1, 10, 20, 30])
def test_schedule_matches_numpy(T):
    betas = numpy_schedule(T)
    np.testing.assert_allclose(diffusion.vp_beta_schedule(T), betas, rtol=1e-5)
    s = diffusion.make_schedule(T)
    ab = np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    np.testing.assert_allclose(s.alpha_bars, ab, rtol=1e-5)
    np.testing.assert_allclose(s.posterior_mean_coef1, betas * np.sqrt(ab_prev) / (1 - ab), rtol=1e-5)
    np.testing.assert_allclose(s.posterior_mean_coef2, (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab), rtol=1e-5)
    # At t = 0 the posterior collapses onto x0_hat: c1 = 1, c2 = 0, zero variance.
    assert float(s.posterior_mean_coef1[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(s.posterior_mean_coef2[0]) == pytest.approx(0.0, abs=1e-7)


def numpy_reverse_chain(noise_fn, T, obs, x_T, step_noise):
    """Direct transcription of DACER_SPEC §1 in float64, given the same Gaussian draws."""
    betas = numpy_schedule(T)
    alphas = 1 - betas
    ab = np.cumprod(alphas)
    x = x_T.astype(np.float64)
    for t in range(T - 1, -1, -1):
        ab_prev = ab[t - 1] if t > 0 else 1.0
        eps = noise_fn(obs, x, t)
        x0 = np.clip(np.sqrt(1 / ab[t]) * x - np.sqrt(1 / ab[t] - 1) * eps, -1, 1)
        mean = betas[t] * np.sqrt(ab_prev) / (1 - ab[t]) * x0 + (1 - ab_prev) * np.sqrt(alphas[t]) / (1 - ab[t]) * x
        var = betas[t] * (1 - ab_prev) / (1 - ab[t])
        x = mean + (np.sqrt(var) * step_noise[t] if t > 0 else 0.0)
    return x


def test_reverse_chain_matches_numpy_transcription():
    T, A = 20, 3
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(4, A)).astype(np.float32) * 0.5

    def noise_fn(o, x, t):  # a simple, t-dependent stand-in for eps_theta
        return 0.3 * x + o @ w * (1 + t / T)

    key = jax.random.PRNGKey(3)
    # The chain's arithmetic is under test: its stand-in network's product at full float32, not
    # at a GPU's default TensorFloat32 (a 1e-3 difference from numpy's on its own).
    with jax.default_matmul_precision(PRECISION):
        a0 = diffusion.reverse_chain(noise_fn, diffusion.make_schedule(T), jnp.asarray(obs), key, A)
    k_init, k_steps = jax.random.split(key)
    x_T = np.asarray(jax.random.normal(k_init, (64, A)))
    z = np.asarray(jax.random.normal(k_steps, (T, 64, A)))
    ref = numpy_reverse_chain(noise_fn, T, obs, x_T, z)
    np.testing.assert_allclose(a0, ref, atol=2e-4)


def test_chain_output_in_unit_box_even_for_wild_networks():
    T, A = 20, 6
    obs = jnp.ones((128, 5))
    noise_fn = lambda o, x, t: 50.0 * jnp.sin(7.0 * x) - 30.0  # noqa: E731
    a0 = diffusion.reverse_chain(noise_fn, diffusion.make_schedule(T), obs, jax.random.PRNGKey(0), A)
    assert bool(jnp.all(jnp.abs(a0) <= 1.0))
    noisy = diffusion.add_exploration_noise(a0, jax.random.PRNGKey(1), 0.15, jnp.float32(100.0))
    assert bool(jnp.all(jnp.abs(noisy) <= 1.0))
    assert bool(jnp.any(noisy != a0))


def test_gradients_flow_through_every_step():
    """A per-step weight w_t in eps = w_t * x_t: d a0 / d w_t must be finite and non-zero for all t."""
    T, A = 20, 2
    obs = jnp.zeros((256, 1))
    schedule = diffusion.make_schedule(T)

    def loss(w):
        a0 = diffusion.reverse_chain(lambda o, x, t: w[t] * x, schedule, obs, jax.random.PRNGKey(0), A)
        return jnp.sum(a0**2)

    g = jax.grad(loss)(jnp.full((T,), 0.1))
    assert bool(jnp.all(jnp.isfinite(g)))
    assert bool(jnp.all(jnp.abs(g) > 0)), g


def test_gradients_through_the_noise_network_are_finite_and_nonzero():
    T, S, A = 20, 7, 3
    net = NoisePredictor(A, (32, 32))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, S)), jnp.zeros((1, A)), jnp.zeros((1,), jnp.int32))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, S))
    schedule = diffusion.make_schedule(T)

    def loss(p):
        a0 = diffusion.reverse_chain(lambda o, x, t: net.apply(p, o, x, t), schedule, obs, jax.random.PRNGKey(2), A)
        return jnp.mean(a0)

    grads = jax.grad(loss)(params)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def test_time_embedding():
    # DACER_SPEC §5: frequencies 10000^(-i/8), i = 0..7, sin and cos, scaled by 1/sqrt(16).
    emb = sinusoidal_embedding(jnp.arange(20))
    assert emb.shape == (20, 16)
    freqs = 10000.0 ** (-np.arange(8) / 8)
    for t in (0, 5, 19):
        expected = np.concatenate([np.sin(t * freqs), np.cos(t * freqs)]) / 4.0
        np.testing.assert_allclose(emb[t], expected, atol=1e-6)


def test_dense_initialisation_matches_the_reference():
    # DACER_SPEC §5: N(0, 1/fan_in) truncated at +-2 std, not rescaled: std 0.8796 / sqrt(fan_in)
    # (the closed form for a standard normal truncated to [-2, 2]), biases zero.
    from scipy import stats

    params = NoisePredictor(action_size=4, hidden_sizes=(512, 512)).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 300)), jnp.zeros((1, 4)), jnp.zeros((1,), jnp.int32)
    )
    truncated_std = stats.truncnorm(-2, 2).std()
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        leaf = np.asarray(leaf)
        if path[-1].key == "bias":
            assert not leaf.any()
            continue
        fan_in = leaf.shape[0]
        bound = 2.0 / np.sqrt(fan_in)
        assert np.abs(leaf).max() <= bound * (1 + 1e-6), path
        if leaf.size >= 10_000:  # enough draws for the std to be within 3%
            np.testing.assert_allclose(leaf.std(), truncated_std / np.sqrt(fan_in), rtol=0.03, err_msg=str(path))


def test_unrolled_chain_gives_the_same_actions_and_gradients_without_the_loop():
    """chain_unroll changes only how the chain is compiled: a0 and d a0 / d params match the rolled loop,
    and a full unroll takes the chain's loop out of the program (so the option takes effect)."""
    T, S, A = 20, 7, 3
    net = NoisePredictor(A, (32, 32))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, S)), jnp.zeros((1, A)), jnp.zeros((1,), jnp.int32))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, S))
    schedule = diffusion.make_schedule(T)

    def chain(p, unroll):
        return diffusion.reverse_chain(lambda o, x, t: net.apply(p, o, x, t), schedule, obs, jax.random.PRNGKey(2),
                                       A, unroll)

    def loops(fn):  # the PRNG's own loops (threefry) are in every variant; the chain adds one when rolled
        return jax.jit(fn).lower(params).as_text().count("stablehlo.while")

    def actions_and_gradients(unroll):
        # Full float32 products: TensorFloat32 (a GPU's default) rounds each one to 1e-3, and two
        # differently fused programs need not round alike.
        with jax.default_matmul_precision(PRECISION):
            return jax.jit(lambda p: (chain(p, unroll), jax.grad(lambda q: jnp.sum(chain(q, unroll) ** 2))(p)))(
                params)

    rolled = actions_and_gradients(1)
    for unroll in (3, T, 50):  # a remainder, exactly T, more than T
        a0, grads = actions_and_gradients(unroll)
        np.testing.assert_allclose(a0, rolled[0], atol=1e-6)
        jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6), grads, rolled[1])
        gone = loops(lambda p: chain(p, 1)) - loops(lambda p: chain(p, unroll))
        assert gone == (1 if unroll >= T else 0), unroll


def test_noise_network_conditioned_on_the_state_once_is_the_whole_network_regrouped():
    """conditioned(condition(s), a_t, t) is __call__(s, a_t, t) with the state's product with the first
    layer taken out (the chain computes it once for its T steps); the parameters keep the compact
    module's layout, so earlier checkpoints and policy files load."""
    S, A = 23, 5
    net = NoisePredictor(A, (64, 48))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, S)), jnp.zeros((1, A)), jnp.zeros((1,), jnp.int32))
    assert jax.tree.map(jnp.shape, params) == {"params": {
        "Dense_0": {"kernel": (32, 16), "bias": (16,)},  # the time embedding's outer layer, built first
        "Dense_1": {"kernel": (16, 32), "bias": (32,)},
        "MLP_0": {"Dense_0": {"kernel": (S + A + 16, 64), "bias": (64,)},
                  "Dense_1": {"kernel": (64, 48), "bias": (48,)},
                  "Dense_2": {"kernel": (48, A), "bias": (A,)}},
    }}
    # Nonzero biases (init's are zero), so that adding b_0 once, neither never nor per part, is checked.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = tree.unflatten([x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    obs = jax.random.normal(jax.random.PRNGKey(2), (40, S))
    noisy = jax.random.normal(jax.random.PRNGKey(3), (40, A))
    with jax.default_matmul_precision("highest"):  # a GPU's TensorFloat32 would round the two groupings apart
        share = net.apply(params, obs, method=NoisePredictor.condition)
        assert share.shape == (40, 64)
        for t in (0, 7, jnp.arange(40) % 20):  # the chain's scalar step, and a step per row
            whole = net.apply(params, obs, noisy, t)
            regrouped = net.apply(params, share, noisy, t, method=NoisePredictor.conditioned)
            np.testing.assert_allclose(regrouped, whole, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(whole))) > 0.1  # not a trivially small output


def test_the_chain_multiplies_the_states_into_the_first_layer_once():
    """Inside the reverse chain's loop no matrix product takes the S-wide observation (alone or in a
    concatenation): acting and every gradient through the chain pay for it once per chain, not per step."""
    from mjx_dacer.config import Config
    from mjx_dacer.dacer import DACER

    S, A = 50, 5  # wider than any other operand of the chain (widths 32, time features 16, actions 5)
    agent = DACER(Config().replace(hidden_sizes=[32, 32], diffusion_steps=4), S, A)
    params = agent.init(jax.random.PRNGKey(0)).policy_params
    obs = jnp.ones((8, S))

    def products(jaxpr, in_loop=False):
        """(in a scan's body?, operand widths) of every matrix product, at any depth of nested jaxprs."""
        for e in jaxpr.eqns:
            if e.primitive.name == "dot_general":
                yield in_loop, max(v.aval.shape[-1] for v in e.invars)
            for sub in e.params.values():
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's jaxpr, or a Jaxpr
                if hasattr(sub, "eqns"):
                    yield from products(sub, in_loop or e.primitive.name == "scan")

    def check(fn):
        found = list(products(jax.make_jaxpr(fn)(params).jaxpr))
        assert any(in_loop for in_loop, _ in found), "no chain loop found"
        assert not any(in_loop and width >= S for in_loop, width in found)
        assert any(not in_loop and width >= S for in_loop, width in found)  # the one product, outside the loop

    check(lambda p: agent.deterministic_action(p, obs, jax.random.PRNGKey(1)))
    check(jax.grad(lambda p: jnp.sum(agent.deterministic_action(p, obs, jax.random.PRNGKey(1)))))
