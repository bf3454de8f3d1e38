"""Entropy estimate speed: the batched on-device GMM-EM vs scikit-learn state by state.

One estimate of H_hat (DACER_SPEC §2, Eq. 12-15) fits a K = 3 full-covariance
mixture to the 200 behaviour actions of each of the 256 states of a replay
batch. The on-device column times `gmm_entropy` on the whole (states,
samples, dim) array as one jit-ed call (compile excluded, reported on its
own); the scikit-learn column times the reference code's method in the same
process: `GaussianMixture(3, covariance_type="full").fit` once per state on
the host. The data are behaviour-like actions: two modes per state plus
Gaussian noise, clipped to [-1, 1] so part of the mass sits on the bounds, as
the chain's output with the Eq. 16 noise does. Both columns also print their
H_hat, which should agree to about 0.1 nats (EM's local optima differ with the start).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from mjx_dacer.benchmarks import count
from mjx_dacer.benchmarks import common
from mjx_dacer.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dims", nargs="+", type=count, default=[6, 17], help="action dimensions (HalfCheetah 6, Humanoid 17)")
    p.add_argument("--states", type=count, default=256, help="states per estimate (the replay batch)")
    p.add_argument("--samples", type=count, default=200, help="behaviour actions per state")
    p.add_argument("--components", type=count, default=3, help="mixture components K")
    p.add_argument("--repeats", type=count, default=10, help="timed on-device calls (median reported)")
    p.add_argument("--sklearn-states", type=count, default=None,
                   help="fit only this many states with scikit-learn and scale its time to --states (default: all)")
    p.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn column (e.g. where it is not installed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample data and of scikit-learn's k-means")
    p.add_argument("--out", help="also write the Markdown table to this file")


def behaviour_like_actions(rng: np.random.Generator, states: int, samples: int, dim: int) -> np.ndarray:
    """(states, samples, dim) float32 in [-1, 1]: two modes per state, noise std 0.1-0.4, clipped."""
    modes = rng.uniform(-1.2, 1.2, size=(states, 2, dim))
    pick = rng.integers(0, 2, size=(states, samples))
    centre = np.take_along_axis(modes, pick[..., None].repeat(dim, axis=-1), axis=1)
    std = rng.uniform(0.1, 0.4, size=(states, 1, 1))
    return np.clip(centre + std * rng.standard_normal((states, samples, dim)), -1, 1).astype(np.float32)


def time_device(x: np.ndarray, components: int, repeats: int) -> tuple[float, float, float]:
    """(median seconds per estimate, compile seconds, H_hat) for the batched on-device fit."""
    import jax
    import jax.numpy as jnp

    from mjx_dacer.gmm import gmm_entropy

    estimate = jax.jit(lambda a: jnp.mean(gmm_entropy(a, num_components=components)))
    xd = jax.device_put(x)
    t0 = time.perf_counter()
    h_hat = float(estimate(xd).block_until_ready())
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        estimate(xd).block_until_ready()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), compile_s, h_hat


def time_sklearn(x: np.ndarray, components: int, seed: int) -> tuple[float, float]:
    """(seconds for all the given states, H_hat) fitting scikit-learn state by state, as the reference does."""
    from sklearn.mixture import GaussianMixture

    entropies = []
    t0 = time.perf_counter()
    for xs in x:
        gm = GaussianMixture(components, covariance_type="full", random_state=seed).fit(xs)
        d = xs.shape[-1]
        log_det = np.linalg.slogdet(gm.covariances_)[1]
        w = gm.weights_
        entropies.append(-np.sum(w * np.log(w)) + np.sum(w * 0.5 * (d * math.log(2 * math.pi * math.e) + log_det)))
    return time.perf_counter() - t0, float(np.mean(entropies))


def run(args: argparse.Namespace) -> int:
    import jax

    for name in ("dims", "states", "samples", "components", "repeats"):
        values = getattr(args, name)
        if min(values if isinstance(values, list) else [values]) < 1:
            raise ConfigError(f"--{name} must be >= 1")
    if args.samples < args.components:  # as config.validate: the EM fit needs a sample per component
        raise ConfigError(f"--samples ({args.samples}) is smaller than --components ({args.components}); the EM fit "
                          "needs a sample per component")
    if not args.no_sklearn:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise ConfigError("scikit-learn is not installed; `pip install scikit-learn` or pass --no-sklearn") from None

    lines = common.header("GMM entropy estimate: on-device batched EM vs scikit-learn state by state", sys.argv) + [
        f"One estimate = {args.states} states x {args.samples} samples, K = {args.components}, full covariances, "
        f"tol 1e-3, at most 100 EM iterations. On-device: median of {args.repeats} jit-ed calls "
        f"({jax.default_backend()}, float32). scikit-learn: one `GaussianMixture.fit` per state, float64, same process"
        + (f", {args.sklearn_states} states timed and scaled to {args.states}" if args.sklearn_states else "") + ".",
        "",
        "| dim | on-device ms / estimate | compile s | scikit-learn ms / estimate | scikit-learn ms / state "
        "| speed-up | H_hat on-device | H_hat scikit-learn |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    rng = np.random.default_rng(args.seed)
    for dim in args.dims:
        x = behaviour_like_actions(rng, args.states, args.samples, dim)
        device_s, compile_s, h_device = time_device(x, args.components, args.repeats)
        if args.no_sklearn:
            sk_cells = ["", "", "", ""]
        else:
            subset = x[: args.sklearn_states] if args.sklearn_states else x
            sk_s, h_sklearn = time_sklearn(subset.astype(np.float64), args.components, args.seed)
            sk_s *= args.states / len(subset)
            sk_cells = [f"{sk_s * 1e3:,.0f}", f"{sk_s / args.states * 1e3:.1f}", f"{sk_s / device_s:,.0f}x",
                        f"{h_sklearn:.3f}"]
        row = (f"| {dim} | {device_s * 1e3:.2f} | {compile_s:.1f} | {sk_cells[0]} | {sk_cells[1]} | {sk_cells[2]} "
               f"| {h_device:.3f} | {sk_cells[3]} |")
        lines.append(row)
        print(row, flush=True)
    common.write(args.out, lines)
    return 0
