"""KSG-1 mutual information (paper Table 1): agreement with the analytic MI of correlated
Gaussians, near zero for independent ones, scale invariance, determinism, subsampling, and
input validation."""

from __future__ import annotations

import numpy as np
import pytest

from crossan.results import mutual_info
from crossan.results.mutual_info import (
    gaussian_mutual_information,
    ksg_mutual_information,
)


def correlated_pairs(rhos: list[float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X, Y: [n, len(rhos)], standard normal, corr(x_i, y_i) = rhos[i], pairs independent."""
    rng = np.random.default_rng(seed)
    rho = np.asarray(rhos)
    x = rng.standard_normal((n, rho.size))
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, rho.size))
    return x, y


def test_gaussian_mutual_information_formula():
    assert gaussian_mutual_information([0.0]) == 0.0
    assert gaussian_mutual_information([0.6]) == pytest.approx(-0.5 * np.log(0.64))
    assert gaussian_mutual_information([0.8, 0.8]) == pytest.approx(-np.log(0.36))


def test_one_dimensional_gaussians():
    # KSG's own sampling spread at rho = 0.6 is ~9% of the value at N = 2,000 and ~5% at 10,000.
    x, y = correlated_pairs([0.6], 10_000, seed=0)
    estimate = ksg_mutual_information(x[:, 0], y[:, 0])
    assert estimate == pytest.approx(gaussian_mutual_information([0.6]), rel=0.10)  # 0.223 nats


def test_two_dimensional_gaussian_pairs():
    x, y = correlated_pairs([0.8, 0.8], 3_000, seed=0)
    estimate = ksg_mutual_information(x, y)
    assert estimate == pytest.approx(gaussian_mutual_information([0.8, 0.8]), rel=0.10)  # 1.022


def test_rotated_x_keeps_the_mutual_information():
    # MI is invariant under invertible maps of X; after a random rotation every coordinate of
    # X is correlated with both coordinates of Y, so this is not a per-coordinate test.
    x, y = correlated_pairs([0.8, 0.6], 3_000, seed=1)
    rotation, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((2, 2)))
    x_rotated = x @ rotation.T
    assert np.all(np.abs(np.corrcoef(x_rotated.T, y.T)[:2, 2:]) > 0.1)
    truth = gaussian_mutual_information([0.8, 0.6])  # 0.734 nats
    assert ksg_mutual_information(x_rotated, y) == pytest.approx(truth, rel=0.10)


def test_independent_gaussians_near_zero():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2_000, 5)), rng.standard_normal((2_000, 5))
    assert abs(ksg_mutual_information(x, y)) < 0.05


def test_scaling_a_column_does_not_change_the_estimate():
    x, y = correlated_pairs([0.8, 0.6], 1_000, seed=4)
    scaled = x.copy()
    scaled[:, 0] *= 1_000.0
    reference = ksg_mutual_information(x, y)
    assert ksg_mutual_information(scaled, y) == pytest.approx(reference, rel=1e-12)
    # Without standardization the max-norm is decided by the large column alone.
    assert ksg_mutual_information(scaled, y, standardize=False) != pytest.approx(reference, rel=0.1)


def test_deterministic():
    x, y = correlated_pairs([0.8, 0.6], 1_000, seed=5)
    first = ksg_mutual_information(x, y, max_samples=500, seed=7)
    assert ksg_mutual_information(x.copy(), y.copy(), max_samples=500, seed=7) == first
    assert ksg_mutual_information(x, y, max_samples=500, seed=8) != first


def test_duplicate_points_do_not_break_the_estimate():
    # Every row twice: without the tie-breaking noise eps_i would be 0 for every point.
    x, y = correlated_pairs([0.8, 0.8], 1_000, seed=6)
    assert np.isfinite(ksg_mutual_information(np.repeat(x, 2, axis=0), np.repeat(y, 2, axis=0)))


def test_max_samples_subsamples(monkeypatch: pytest.MonkeyPatch):
    # Counting the points the k-d trees are built on, not timing: timing depends on the CPU.
    sizes: list[int] = []
    build = mutual_info._tree
    monkeypatch.setattr(mutual_info, "_tree", lambda a: sizes.append(len(a)) or build(a))
    x, y = correlated_pairs([0.8, 0.8], 20_000, seed=7)
    estimate = ksg_mutual_information(x, y, max_samples=2_000)
    assert sizes and set(sizes) == {2_000}
    assert estimate == pytest.approx(gaussian_mutual_information([0.8, 0.8]), rel=0.10)


@pytest.mark.parametrize(
    ("x", "y", "k", "message"),
    [
        (np.zeros((10, 2)), np.zeros((9, 2)), 3, "same number of rows"),
        (np.zeros((4, 2)), np.zeros((4, 2)), 3, r"more than k \+ 1"),
        (np.zeros((10, 2)), np.zeros((10, 2)), 0, "k must be >= 1"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2)), 3, "1-d or 2-d"),
    ],
)
def test_invalid_input(x, y, k, message):
    with pytest.raises(ValueError, match=message):
        ksg_mutual_information(x, y, k)


def test_max_samples_below_k_plus_two_is_rejected():
    with pytest.raises(ValueError, match="max_samples = 4"):
        ksg_mutual_information(np.zeros((10, 2)), np.zeros((10, 2)), 3, max_samples=4)


def test_non_finite_rows_are_counted():
    x, y = np.zeros((10, 2)), np.zeros((10, 3))
    x[1, 0], y[1, 2], y[4, 0] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match="2 of 10 rows hold NaN or inf"):
        ksg_mutual_information(x, y)
