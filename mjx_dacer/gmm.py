"""Gaussian-mixture entropy estimate of the behaviour policy (Eq. 12-15), batched EM in JAX.

DACER cannot evaluate the density of its diffusion policy, so it estimates the
policy's entropy per state by fitting a K-component Gaussian mixture to samples
of the behaviour action (Eq. 12-14) and using the mixture's entropy bound
(Eq. 15). The reference fits scikit-learn's `GaussianMixture` on the CPU, one
state at a time; here the fit runs for a whole batch of states at once, on the
device, under `jit` and `vmap`, with no host callbacks.

EM follows scikit-learn's `GaussianMixture(covariance_type="full")` defaults:
hard k-means responsibilities as the start, `reg_covar` on every covariance
diagonal, stop when the mean per-sample log-likelihood changes by less than
`tol`, at most `max_iters` iterations. Only the k-means seeding differs (it is
deterministic here, no PRNG key; see `_kmeans_labels`).

Shapes: `...` = any leading batch axes (e.g. states), N = samples per batch
entry, d = sample dimension (action size), K = `num_components`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp, xlogy

from mjx_dacer.precision import float32_matmuls

# Lloyd iterations after the seeding: k-means only has to place EM's start in
# the right basin (EM refines it), and on well-separated data Lloyd settles in
# 2-3 iterations; a fixed count keeps the program shape static.
_LLOYD_ITERS = 20


@struct.dataclass
class GMM:
    """A fitted Gaussian mixture (Eq. 13): p(a) = sum_k w_k N(a; mu_k, Sigma_k).

    weights: (..., K), sums to 1 over K. means: (..., K, d).
    covariances: (..., K, d, d), `reg_covar` already on the diagonal.
    """

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array

    @property
    def num_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]


@functools.partial(jax.jit, static_argnames=("num_components", "max_iters"))
def fit_gmm(
    x: jax.Array,
    num_components: int = 3,
    max_iters: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> GMM:
    """Fit a full-covariance Gaussian mixture to each batch entry of `x` by EM (Eq. 13-14).

    Args:
      x: (..., N, d) samples; every leading index is an independent data set
        (e.g. the 200 behaviour actions of one state).
      num_components: K (static).
      max_iters: at most this many EM iterations (static).
      tol: stop once the mean per-sample log-likelihood changes by less than this.
      reg_covar: added to the diagonal of every covariance, keeps them positive definite.
    Returns:
      GMM with weights (..., K), means (..., K, d), covariances (..., K, d, d).
    """
    gmm, _, _ = _fit(x, num_components, max_iters, tol, reg_covar)
    return gmm


def mixture_entropy(gmm: GMM) -> jax.Array:
    """The paper's entropy estimate of a fitted mixture (Eq. 15), shape (...).

    H = -sum_k w_k log w_k + sum_k w_k 0.5 log((2 pi e)^d |Sigma_k|).
    This is the upper bound of the mixture entropy that the paper uses (exact
    for K = 1 or non-overlapping components), not the mixture entropy itself.
    """
    d = gmm.dim
    chol = _safe_cholesky(gmm.covariances)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    component_entropy = 0.5 * (d * math.log(2.0 * math.pi * math.e) + log_det)
    # xlogy: a component with zero weight adds 0 log 0 = 0, not NaN.
    return -jnp.sum(xlogy(gmm.weights, gmm.weights), axis=-1) + jnp.sum(
        gmm.weights * component_entropy, axis=-1
    )


@functools.partial(jax.jit, static_argnames=("num_components", "max_iters"))
def gmm_entropy(
    x: jax.Array,
    num_components: int = 3,
    max_iters: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> jax.Array:
    """Entropy estimate H_s of the distribution behind samples `x` (Eq. 12-15).

    Fits a K-component mixture by EM (`fit_gmm`) and returns its Eq. 15 entropy.
    For DACER: x = 200 behaviour actions (noise and clip included) per state,
    shape (states, 200, action_size) -> (states,); H_hat is the mean over states.

    Args: as `fit_gmm`. Returns: (...) entropies, same dtype as x.
    """
    return mixture_entropy(fit_gmm(x, num_components, max_iters, tol, reg_covar))


@float32_matmuls  # k-means distances and whitened residuals subtract nearly equal products (`precision`)
def _fit(x, num_components, max_iters, tol, reg_covar, init_labels=None):
    """EM on the flattened batch. Returns (GMM (...), iterations (...), converged (...)).

    The iteration count and convergence flags follow scikit-learn's `n_iter_`
    and `converged_`, for tests and diagnostics. `init_labels` (..., N) ints
    replace the k-means start, so tests can run EM from scikit-learn's own
    k-means labels.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., num_samples, dim), got {x.shape}")
    lead, (n, d) = x.shape[:-2], x.shape[-2:]
    k = num_components
    xb = x.reshape((-1, n, d))  # (B, N, d)
    # EM and k-means are translation-equivariant; centring each data set keeps
    # float32 distances and whitened samples free of cancellation when the
    # samples sit far from the origin relative to their spread.
    offset = jnp.mean(xb, axis=1, keepdims=True)  # (B, 1, d)
    xb = xb - offset
    tol = jnp.asarray(tol, x.dtype)
    reg_covar = jnp.asarray(reg_covar, x.dtype)

    labels = _kmeans_labels(xb, k) if init_labels is None else jnp.reshape(init_labels, xb.shape[:2])
    resp = jax.nn.one_hot(labels, k, dtype=x.dtype)  # (B, N, K)
    weights, means, covs = _m_step(xb, resp, reg_covar)
    chol = _safe_cholesky(covs)

    def cond(state):
        step, _, _, _, _, _, _, converged = state
        return (step < max_iters) & ~jnp.all(converged)

    def body(state):
        step, n_iter, weights, means, covs, chol, lower_bound, converged = state
        log_prob_norm, log_resp = _e_step(xb, weights, means, chol)
        new_weights, new_means, new_covs = _m_step(xb, jnp.exp(log_resp), reg_covar)
        new_chol = _safe_cholesky(new_covs)
        # scikit-learn's criterion: the mean log-likelihood under the parameters
        # *before* this M-step, compared with the previous iteration's.
        new_lower_bound = jnp.mean(log_prob_norm, axis=-1)
        # An entry that converged earlier keeps its parameters, so a batched fit
        # equals the per-entry fits; the iteration that detects convergence
        # still applies its M-step, as scikit-learn does.
        active = ~converged

        def keep(new, old):
            return jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)

        return (
            step + 1,
            n_iter + active.astype(n_iter.dtype),
            keep(new_weights, weights),
            keep(new_means, means),
            keep(new_covs, covs),
            keep(new_chol, chol),
            keep(new_lower_bound, lower_bound),
            converged | (jnp.abs(new_lower_bound - lower_bound) < tol),
        )

    batch = xb.shape[0]
    init = (
        jnp.zeros((), jnp.int32),
        jnp.zeros((batch,), jnp.int32),
        weights,
        means,
        covs,
        chol,
        jnp.full((batch,), -jnp.inf, x.dtype),  # first change is +inf: never converged at iteration 1
        jnp.zeros((batch,), bool),
    )
    _, n_iter, weights, means, covs, _, _, converged = jax.lax.while_loop(cond, body, init)
    gmm = GMM(
        weights=weights.reshape(lead + (k,)),
        means=(means + offset).reshape(lead + (k, d)),
        covariances=covs.reshape(lead + (k, d, d)),
    )
    return gmm, n_iter.reshape(lead), converged.reshape(lead)


def _kmeans_labels(x: jax.Array, k: int) -> jax.Array:
    """Deterministic k-means hard assignment, (B, N, d) -> (B, N) int labels.

    Seeding is greedy k-means++ without the randomness: every sample is a
    candidate and each next centre is the one that lowers the k-means cost
    sum_i min_c |x_i - c|^2 the most (the first is the medoid). scikit-learn's
    k-means++ does the same greedy choice among 2 + log K random candidates.
    Farthest-point seeding was rejected: it spends seeds on the few samples far
    out in the tails while a clipped mass of samples at the bound stays merged
    with its neighbours; quantiles along the principal axis miss modes that
    overlap in that projection. With fewer distinct points than K all
    candidates tie, later seeds duplicate earlier ones, their clusters stay
    empty (keeping their centre) and EM gives them ~0 weight.
    """
    sq_norm = jnp.sum(x**2, axis=-1)
    # (B, N, N) pairwise squared distances: one matmul, cheaper than (B, N, N, d) differences.
    pair = sq_norm[:, :, None] + sq_norm[:, None, :] - 2.0 * jnp.einsum("bnd,bmd->bnm", x, x)
    pair = jnp.maximum(pair, 0.0)
    take = lambda idx: jnp.take_along_axis(x, idx[:, None, None], axis=1)  # (B, 1, d)
    column = lambda idx: jnp.take_along_axis(pair, idx[:, None, None], axis=2)[..., 0]  # (B, N)

    first = jnp.argmin(jnp.sum(pair, axis=1), axis=1)
    centres, min_dist = [take(first)], column(first)
    for _ in range(k - 1):  # K is small and static; each step is vectorised over the batch
        cost = jnp.sum(jnp.minimum(min_dist[:, :, None], pair), axis=1)  # (B, N candidates)
        best = jnp.argmin(cost, axis=1)
        centres.append(take(best))
        min_dist = jnp.minimum(min_dist, column(best))
    centres = jnp.concatenate(centres, axis=1)  # (B, K, d)

    # |x - c|^2 up to the per-sample |x|^2, which the argmin over centres ignores.
    nearest = lambda c: jnp.argmin(jnp.sum(c**2, axis=-1)[:, None, :] - 2.0 * jnp.einsum("bnd,bkd->bnk", x, c), axis=-1)

    def lloyd(_, centres):
        onehot = jax.nn.one_hot(nearest(centres), k, dtype=x.dtype)
        counts = jnp.sum(onehot, axis=1)[..., None]  # (B, K, 1)
        sums = jnp.einsum("bnk,bnd->bkd", onehot, x)
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centres)

    centres = jax.lax.fori_loop(0, _LLOYD_ITERS, lloyd, centres)
    return nearest(centres)


def _m_step(x, resp, reg_covar):
    """Weights (B, K), means (B, K, d), covariances (B, K, d, d) from responsibilities (B, N, K)."""
    n, d = x.shape[-2:]
    # scikit-learn's floor on the component mass: an empty component gets
    # weight ~0, mean 0 and covariance reg_covar * I instead of 0/0.
    nk = jnp.sum(resp, axis=1) + 10 * jnp.finfo(x.dtype).eps  # (B, K)
    means = jnp.einsum("bnk,bnd->bkd", resp, x) / nk[..., None]
    # Centred before the product: raw second moments minus mean^2 cancel in
    # float32 at the scale of reg_covar for the near-point-mass components that
    # clipped actions produce. sqrt(resp) on both sides makes it one symmetric
    # product z^T z, which XLA fuses better than resp * diff against diff.
    z = jnp.sqrt(jnp.swapaxes(resp, 1, 2))[..., None] * (x[:, None, :, :] - means[:, :, None, :])  # (B, K, N, d)
    covs = jnp.einsum("bknd,bkne->bkde", z, z) / nk[..., None, None]
    covs = covs + reg_covar * jnp.eye(d, dtype=x.dtype)
    return nk / jnp.sum(nk, axis=-1, keepdims=True), means, covs


def _e_step(x, weights, means, chol):
    """Per-sample log-likelihood (B, N) and log responsibilities (B, N, K) (Eq. 14's E-step)."""
    d = x.shape[-1]
    # Whiten with L^-1 (a d x d triangular solve per component) and then a
    # matmul over the samples: cheaper than a triangular solve with N right-hand sides.
    eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), chol.shape)
    prec_chol = solve_triangular(chol, eye, lower=True)  # L^-1, (B, K, d, d)
    y = jnp.einsum("bked,bnd->bnke", prec_chol, x) - jnp.einsum("bked,bkd->bke", prec_chol, means)[:, None]
    log_det_prec = -jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (B, K)
    log_gauss = -0.5 * (d * math.log(2.0 * math.pi) + jnp.sum(y**2, axis=-1)) + log_det_prec[:, None, :]
    # weights >= 10 eps / N > 0, so the log is finite.
    weighted = log_gauss + jnp.log(weights)[:, None, :]  # (B, N, K)
    log_prob_norm = logsumexp(weighted, axis=-1)
    return log_prob_norm, weighted - log_prob_norm[..., None]


def _safe_cholesky(covs: jax.Array) -> jax.Array:
    """Lower Cholesky factors of (..., d, d) covariances that are never NaN.

    In float32 the rounding in a covariance whose data span fewer than d
    dimensions (clipped actions, K > distinct points) is of the order of
    reg_covar, so the factorisation can fail where scikit-learn's float64 one
    does not. Failed factors are retried with a jitter of a few float32 ulps of
    the largest variance, and as a last resort replaced by the diagonal.
    """
    d = covs.shape[-1]
    eye = jnp.eye(d, dtype=covs.dtype)
    ok = lambda c: jnp.all(jnp.isfinite(c), axis=(-2, -1), keepdims=True)

    def repair(chol):
        scale = jnp.max(jnp.diagonal(covs, axis1=-2, axis2=-1), axis=-1)[..., None, None]
        jitter = 10.0 * d * jnp.finfo(covs.dtype).eps * scale
        chol = jnp.where(ok(chol), chol, jnp.linalg.cholesky(covs + jitter * eye))
        diag = jnp.sqrt(jnp.maximum(jnp.diagonal(covs, axis1=-2, axis2=-1), jnp.finfo(covs.dtype).tiny))
        return jnp.where(ok(chol), chol, diag[..., None, :] * eye)

    chol = jnp.linalg.cholesky(covs)
    # The retry is rare: skip its cost unless some factor failed (under a
    # user's vmap the cond becomes a select and both branches run).
    return jax.lax.cond(jnp.all(ok(chol)), lambda c: c, repair, chol)
