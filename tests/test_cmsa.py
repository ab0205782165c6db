"""CMSA loss (crossan.models.cmsa): naive-loop values, symmetry, masking, learnable tau."""

from __future__ import annotations

import math

import pytest
import torch

from crossan.models.cmsa import StructuralAlignmentLoss, pairwise_alignment


def naive_structural(x: list[list[float]], y: list[list[float]], tau: float) -> float:
    """The issue's formula with Python floats, one row at a time."""

    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(a * a for a in v))
        return [a / norm for a in v]

    def dot(u: list[float], v: list[float]) -> float:
        return sum(a * b for a, b in zip(u, v))

    x = [unit(r) for r in x]
    y = [unit(r) for r in y]
    n = len(x)
    total = 0.0
    for i in range(n):
        teacher = [tau * (dot(x[i], x[j]) + dot(y[i], y[j])) / 2 for j in range(n)]
        z = sum(math.exp(t) for t in teacher)
        target = [math.exp(t) / z for t in teacher]
        row = [dot(x[i], y[j]) / tau for j in range(n)]  # X -> Y
        col = [dot(y[i], x[j]) / tau for j in range(n)]  # Y -> X (row i of Z^T)
        ce = 0.0
        for logits in (row, col):
            log_z = math.log(sum(math.exp(v) for v in logits))
            ce += -sum(t * (v - log_z) for t, v in zip(target, logits))
        total += ce / 2
    return total / n


X = [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.0, 3.0, 1.0]]
Y = [[0.8, 0.2, 1.0], [1.0, -2.0, 0.5], [-0.5, 1.0, 1.5]]


def test_structural_equals_naive_loop_on_hand_case() -> None:
    loss_fn = StructuralAlignmentLoss()
    got = loss_fn(torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64))
    assert got.item() == pytest.approx(naive_structural(X, Y, 3.0), rel=1e-6, abs=1e-6)
    with torch.no_grad():
        loss_fn.log_tau.fill_(math.log(0.5))
    got = loss_fn(torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64))
    assert got.item() == pytest.approx(naive_structural(X, Y, 0.5), rel=1e-6, abs=1e-6)


def test_tau_starts_at_three_and_is_learnable() -> None:
    loss_fn = StructuralAlignmentLoss()
    assert loss_fn.tau.item() == pytest.approx(3.0)
    assert [n for n, p in loss_fn.named_parameters() if p.requires_grad] == ["log_tau"]
    loss = loss_fn(torch.tensor(X), torch.tensor(Y))
    loss.backward()
    assert loss_fn.log_tau.grad is not None and loss_fn.log_tau.grad.abs().item() > 0
    before = loss_fn.tau.item()
    torch.optim.SGD(loss_fn.parameters(), lr=0.1).step()
    assert loss_fn.tau.item() != before and loss_fn.tau.item() > 0


def test_symmetric_in_x_and_y() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for kind in ("cmsa", "infonce"):
        loss_fn = StructuralAlignmentLoss(kind=kind)
        assert torch.allclose(loss_fn(x, y), loss_fn(y, x), atol=1e-6)


def test_scale_invariant_because_normalised() -> None:
    x, y = torch.tensor(X), torch.tensor(Y)
    loss_fn = StructuralAlignmentLoss()
    assert torch.allclose(loss_fn(x, y), loss_fn(7.0 * x, 0.1 * y), atol=1e-6)


def test_masked_rows_do_not_change_loss_and_get_zero_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    mask = torch.tensor([True, False, True, True, False])
    loss_fn = StructuralAlignmentLoss()
    reference = loss_fn(x[mask], y[mask])
    # Masked rows hold zeros (invalid media) or garbage: neither matters.
    for filler in (0.0, 1e6):
        xs, ys = x.clone(), y.clone()
        xs[~mask], ys[~mask] = filler, filler
        xs.requires_grad_(True)
        ys.requires_grad_(True)
        loss = loss_fn(xs, ys, mask)
        assert torch.equal(loss, reference)
        loss.backward()
        assert torch.equal(xs.grad[~mask], torch.zeros(2, 4))
        assert torch.equal(ys.grad[~mask], torch.zeros(2, 4))
        assert xs.grad[mask].abs().sum() > 0


@pytest.mark.parametrize("n_valid", [0, 1])
@pytest.mark.parametrize("kind", ["cmsa", "infonce"])
def test_fewer_than_two_valid_rows_give_exact_zero_with_zero_grads(n_valid: int, kind: str) -> None:
    x = torch.zeros(3, 4, requires_grad=True)  # all-zero states, as invalid media
    y = torch.zeros(3, 4, requires_grad=True)
    mask = torch.tensor([True, False, False]) if n_valid else torch.zeros(3, dtype=torch.bool)
    loss_fn = StructuralAlignmentLoss(kind=kind)
    loss = loss_fn(x, y, mask)
    assert loss.item() == 0.0
    loss.backward()
    for grad in (x.grad, y.grad, loss_fn.log_tau.grad):
        assert grad is not None and torch.isfinite(grad).all() and not grad.any()


def test_infonce_matches_cross_entropy_by_hand() -> None:
    x, y = torch.tensor(X, dtype=torch.float64), torch.tensor(Y, dtype=torch.float64)
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    logits = xn @ yn.T / 3.0
    expected = -(logits.diag() - logits.logsumexp(1)).mean() / 2 - (logits.diag() - logits.logsumexp(0)).mean() / 2
    got = StructuralAlignmentLoss(kind="infonce")(x, y)
    assert torch.allclose(got, expected)


def test_rejects_unknown_kind_and_bad_mask() -> None:
    with pytest.raises(ValueError):
        StructuralAlignmentLoss(kind="clip")
    with pytest.raises(ValueError):
        StructuralAlignmentLoss()(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3))


def test_pairwise_alignment_averages_over_pairs_with_joint_masks() -> None:
    g = torch.Generator().manual_seed(2)
    out = {m: torch.randn(4, 3, generator=g) for m in ("text", "image", "video")}
    masks = {
        "text": torch.tensor([True, True, True, True]),
        "image": torch.tensor([True, True, False, True]),
        "video": torch.tensor([True, False, False, False]),  # pairs with video have < 2 rows
    }
    loss_fn = StructuralAlignmentLoss()
    got = pairwise_alignment(out, masks, loss_fn)
    expected = loss_fn(out["text"], out["image"], masks["image"])
    assert torch.allclose(got, expected)
    masks["video"] = torch.tensor([True, True, True, False])
    got = pairwise_alignment(out, masks, loss_fn)
    expected = (
        loss_fn(out["text"], out["image"], masks["image"])
        + loss_fn(out["text"], out["video"], masks["video"])
        + loss_fn(out["image"], out["video"], masks["image"] & masks["video"])
    ) / 3
    assert torch.allclose(got, expected)


def test_pairwise_alignment_with_no_usable_pair_is_zero_with_zero_grads() -> None:
    out = {m: torch.randn(2, 3, requires_grad=True) for m in ("text", "image")}
    masks = {"text": torch.tensor([True, False]), "image": torch.tensor([True, True])}
    loss_fn = StructuralAlignmentLoss()
    loss = pairwise_alignment(out, masks, loss_fn)
    assert loss.item() == 0.0
    loss.backward()
    assert not out["text"].grad.any() and not loss_fn.log_tau.grad.any()
