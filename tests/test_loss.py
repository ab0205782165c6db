"""In-batch debiased cross entropy: values against naive loops and a hand-worked batch."""

from __future__ import annotations

import math

import pytest
import torch

from crossan.errors import CrossanError
from crossan.train.loss import (
    NonFiniteLossError,
    check_finite,
    debiased_in_batch_loss,
    log_popularity_from_counts,
)

F64 = torch.float64


def naive_loss(user_states, window, window_embeddings, sequences, log_popularity, negatives="window") -> float:
    """Explicit loops over rows and columns, masked logits, -log softmax of the positive.

    Row (b, l) exists when window[b, l] and window[b, l + 1] are items; its positive is column
    (b, l + 1). Columns: every non-padding window item ("window", the first input item
    included) or only the positions that are some row's target ("targets")."""
    batch, length, _ = user_states.shape
    losses = []
    for b in range(batch):
        history = {int(i) for i in sequences[b] if int(i) != 0}
        for l in range(length):
            if int(window[b, l]) == 0 or int(window[b, l + 1]) == 0:
                continue
            positive = int(window[b, l + 1])
            logits, positive_logit = [], None
            for cb in range(batch):
                for cj in range(length + 1):
                    item = int(window[cb, cj])
                    if item == 0:
                        continue
                    if negatives == "targets" and (cj == 0 or int(window[cb, cj - 1]) == 0):
                        continue
                    value = float(user_states[b, l] @ window_embeddings[cb, cj]) - float(log_popularity[item])
                    if (cb, cj) == (b, l + 1):
                        positive_logit = value
                    elif item in history or item == positive:
                        value = -math.inf
                    logits.append(value)
            top = max(logits)
            log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
            losses.append(log_sum - positive_logit)
    return sum(losses) / len(losses)


def iisan_style_loss(user_states, window, window_embeddings, counts) -> float:
    """The loss as IISAN's ``Code_Cached/model/model.py`` computes it, written out: one
    [B*L, B*(L+1)] logit matrix over every window item, minus log(count / sum count);
    padding columns and each user's window items (except the row's own positive) set to
    -1e4; cross entropy of the rows whose input is an item."""
    batch, length, dim = user_states.shape
    width = length + 1
    counts = counts.to(F64)
    p = counts / counts[1:].sum()
    p[0] = 1.0
    ids = window.reshape(-1)
    logits = user_states.reshape(-1, dim) @ window_embeddings.reshape(-1, dim).T - torch.log(p[ids])
    logits[:, ids == 0] = -1e4
    logits = logits.view(batch, length, -1).clone()
    for i in range(batch):
        reject = (ids.unsqueeze(0) == window[i].unsqueeze(1)).any(dim=0)  # column in user i's window
        for j in range(length):
            row_mask = reject.clone()
            row_mask[i * width + j + 1] = False
            logits[i, j][row_mask] = -1e4
    labels = torch.tensor([i * width + j + 1 for i in range(batch) for j in range(length)])
    rows = (window[:, :-1] != 0).reshape(-1)
    return torch.nn.functional.cross_entropy(logits.view(batch * length, -1)[rows], labels[rows]).item()


def random_batch(seed: int, batch: int = 4, length: int = 5, dim: int = 8, n_items: int = 9):
    """Small item vocabulary so items repeat within and across users; some left padding.
    Returns ``(states [B, L, d], window [B, L + 1], window_embeddings [B, L + 1, d], log_pop)``."""
    g = torch.Generator().manual_seed(seed)
    window = torch.randint(1, n_items + 1, (batch, length + 1), generator=g)
    for b in range(batch):
        window[b, : b % 3] = 0  # left padding of 0, 1 or 2 positions
    states = torch.randn(batch, length, dim, generator=g, dtype=F64)
    embeddings = torch.randn(batch, length + 1, dim, generator=g, dtype=F64)
    log_pop = torch.randn(n_items + 1, generator=g, dtype=F64)
    return states, window, embeddings, log_pop


@pytest.mark.parametrize("negatives", ["window", "targets"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_loop(seed, negatives):
    states, window, embeddings, log_pop = random_batch(seed)
    # the setup must exercise cross-user duplicates and same-user repeats
    flat = window[window != 0]
    assert flat.unique().numel() < flat.numel()
    got = debiased_in_batch_loss(states, window, embeddings, window, log_pop, negatives=negatives)
    assert got.dtype == F64 and got.dim() == 0
    want = naive_loss(states, window, embeddings, window, log_pop, negatives)
    assert got.item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_equals_iisans_loss_with_raw_count_popularity(seed):
    """Window negatives (first input item included) + raw-count popularity = IISAN's loss."""
    g = torch.Generator().manual_seed(100 + seed)
    states, window, embeddings, _ = random_batch(seed)
    counts = torch.randint(1, 6, (10,), generator=g)
    counts[0] = 0
    log_pop = log_popularity_from_counts(counts, F64)
    got = debiased_in_batch_loss(states, window, embeddings, window, log_pop)
    assert got.item() == pytest.approx(iisan_style_loss(states, window, embeddings, counts), abs=1e-14)
    # the naive loop with log(count / sum) computed by hand agrees too
    by_hand = torch.tensor([0.0] + [math.log(int(c) / int(counts[1:].sum())) for c in counts[1:]], dtype=F64)
    assert got.item() == pytest.approx(naive_loss(states, window, embeddings, window, by_hand), abs=1e-12)
    # the earlier rule (targets only) is a different number on the same tensors
    targets_only = debiased_in_batch_loss(states, window, embeddings, window, log_pop, negatives="targets")
    assert abs(targets_only.item() - got.item()) > 1e-6


def test_first_window_item_is_a_negative_for_other_users_only():
    """User 0's first item (an input, never a target) is a candidate for user 1's rows."""
    states, window, embeddings, log_pop = random_batch(7, batch=2, length=3, n_items=50)
    window = torch.tensor([[11, 12, 13, 14], [21, 22, 23, 24]])  # no shared items
    base = debiased_in_batch_loss(states, window, embeddings, window, log_pop, reduction="none")
    moved = embeddings.clone()
    moved[0, 0] = moved[0, 0] + 5.0  # user 0's first item
    after = debiased_in_batch_loss(states, window, moved, window, log_pop, reduction="none")
    torch.testing.assert_close(after[0], base[0], atol=0, rtol=0)  # its own user: masked
    assert (after[1] != base[1]).all()  # every row of user 1 sees it
    targets = debiased_in_batch_loss(states, window, moved, window, log_pop, negatives="targets", reduction="none")
    torch.testing.assert_close(
        targets, debiased_in_batch_loss(states, window, embeddings, window, log_pop, negatives="targets",
                                        reduction="none"), atol=0, rtol=0)


def test_same_user_repeat_and_cross_user_duplicate_of_positive():
    # user 0 sees item 3 twice; user 1's target 3 duplicates it across users
    window = torch.tensor([[1, 3, 2, 3], [5, 3, 6, 7]])
    states, _, embeddings, log_pop = random_batch(0, batch=2, length=3, n_items=7)
    for negatives in ("window", "targets"):
        got = debiased_in_batch_loss(states, window, embeddings, window, log_pop, negatives=negatives)
        want = naive_loss(states, window, embeddings, window, log_pop, negatives)
        assert got.item() == pytest.approx(want, abs=1e-12)


def test_positive_item_from_another_user_masked_even_if_sequences_omit_targets():
    # sequences hold only some inputs: user 1's column of item 4 (= r02's positive item)
    # is still the same item, not a negative
    states, _, embeddings, log_pop = random_batch(6, batch=2, length=3, n_items=8)
    window = torch.tensor([[1, 2, 3, 4], [7, 5, 4, 6]])
    inputs_only = torch.tensor([[1, 2, 3], [7, 5, 0]])
    got = debiased_in_batch_loss(states, window, embeddings, inputs_only, log_pop, reduction="none")
    moved = embeddings.clone()
    moved[1, 2] = 1e3  # would dominate r02's softmax if it were a negative
    after = debiased_in_batch_loss(states, window, moved, inputs_only, log_pop, reduction="none")
    assert after[0, 2] == got[0, 2]
    assert got.sum().item() / 6 == pytest.approx(naive_loss(states, window, embeddings, inputs_only, log_pop))


def hand_batch():
    """Two users, L = 3, d = 1; user 1's window has one padded position.

    user 0: window [1, 2, 3, 4] (rows r00, r01, r02 -> targets 2, 3, 4)
    user 1: window [0, 6, 5, 2] (rows r11, r12 -> targets 5, 2; no row at l = 0)
    Window embeddings: user 0 items 1, 2, 3, 4 -> 0.5, 1, 0, 2; user 1 pad, 6, 5, 2 -> 7, -2, -1, 1.
    Columns c00..c03 = items 1, 2, 3, 4; c11..c13 = items 6, 5, 2 (c10 padding).
    Window rule, surviving columns per row:
      r0l {c0(l+1)+, c11, c12}   r11 {c12+, c00, c02, c03}   r12 {c13+, c00, c02, c03}
    (c13 is item 2: in user 0's sequence; c01 is item 2: in user 1's.) The targets rule also
    drops each window's first item: c00 (item 1) and c11 (item 6).
    """
    window = torch.tensor([[1, 2, 3, 4], [0, 6, 5, 2]])
    states = torch.tensor([[1.0, 1.0, 0.5], [100.0, 1.0, 2.0]], dtype=F64).unsqueeze(-1)
    embeddings = torch.tensor([[0.5, 1.0, 0.0, 2.0], [7.0, -2.0, -1.0, 1.0]], dtype=F64).unsqueeze(-1)
    return states, window, embeddings


def lse(*values: float) -> float:
    return math.log(sum(math.exp(v) for v in values))


HAND_WINDOW = [
    -1 + lse(1, -2, -1),  # r00: h 1; positive c01 = 1; negatives c11 = -2, c12 = -1
    -0 + lse(0, -2, -1),  # r01: positive c02 = 0
    -1 + lse(1, -1, -0.5),  # r02: h 0.5; positive c03 = 1; negatives -1, -0.5
    1 + lse(-1, 0.5, 0, 2),  # r11: h 1; positive c12 = -1; negatives c00 0.5, c02 0, c03 2
    -2 + lse(2, 1, 0, 4),  # r12: h 2; positive c13 = 2; negatives c00 1, c02 0, c03 4
]
HAND_TARGETS = [
    -1 + lse(1, -1),
    -0 + lse(0, -1),
    -1 + lse(1, -0.5),
    1 + lse(-1, 0, 2),
    -2 + lse(2, 0, 4),
]


@pytest.mark.parametrize(("negatives", "expected"), [("window", HAND_WINDOW), ("targets", HAND_TARGETS)])
def test_hand_worked_two_users(negatives, expected):
    states, window, embeddings = hand_batch()
    no_pop = torch.zeros(7, dtype=F64)
    got = debiased_in_batch_loss(states, window, embeddings, window, no_pop, negatives=negatives)
    assert got.item() == pytest.approx(sum(expected) / 5, abs=1e-12)

    per_position = debiased_in_batch_loss(states, window, embeddings, window, no_pop, negatives=negatives,
                                          reduction="none")
    want = torch.tensor([expected[:3], [0.0, *expected[3:]]], dtype=F64)
    torch.testing.assert_close(per_position, want, atol=1e-12, rtol=0)


def test_hand_worked_popularity_offset():
    # log p(4) = 1 lowers every logit of item 4 (c03) by 1
    states, window, embeddings = hand_batch()
    pop = torch.zeros(7, dtype=F64)
    pop[4] = 1.0
    expected = [
        HAND_WINDOW[0],
        HAND_WINDOW[1],
        -0 + lse(0, -1, -0.5),  # r02: positive 1 - 1 = 0
        1 + lse(-1, 0.5, 0, 1),  # r11: c03 2 - 1
        -2 + lse(2, 1, 0, 3),  # r12: c03 4 - 1
    ]
    got = debiased_in_batch_loss(states, window, embeddings, window, pop)
    assert got.item() == pytest.approx(sum(expected) / 5, abs=1e-12)


def test_masked_columns_never_contribute():
    states, window, embeddings = hand_batch()
    no_pop = torch.zeros(7, dtype=F64)
    base = debiased_in_batch_loss(states, window, embeddings, window, no_pop, reduction="none")
    changed = embeddings.clone()
    changed[1, 3] = 50.0  # c13, item 2 of user 1: in user 0's sequence
    changed[0, 2] = -30.0  # c02, item 3 of user 0: same-user column for r00 and r02
    changed[1, 0] = float("nan")  # the padding column
    after = debiased_in_batch_loss(states, window, changed, window, no_pop, reduction="none")
    # r00 and r02 see neither c02 nor c13 nor the padding column
    torch.testing.assert_close(after[0, [0, 2]], base[0, [0, 2]], atol=0, rtol=0)
    assert after[0, 1] != base[0, 1] and after[1, 2] != base[1, 2]  # their own positives changed

    # and no gradient flows into a masked column from those rows
    leaf = embeddings.clone().requires_grad_(True)
    debiased_in_batch_loss(states, window, leaf, window, no_pop, reduction="none")[0, [0, 2]].sum().backward()
    assert (
        leaf.grad[0, 2].abs().sum() == 0 and leaf.grad[1, 3].abs().sum() == 0 and leaf.grad[1, 0].sum() == 0
    )
    assert leaf.grad[1, 1].abs().sum() > 0 and leaf.grad[1, 2].abs().sum() > 0  # c11, c12 are negatives


def test_nan_padding_embedding_is_harmless():
    states, window, embeddings = hand_batch()
    embeddings = embeddings.clone()
    embeddings[1, 0] = float("nan")
    states = states.clone().requires_grad_(True)
    loss = debiased_in_batch_loss(states, window, embeddings, window, torch.zeros(7, dtype=F64))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(states.grad).all()


def test_gradients_flow_to_states_and_embeddings():
    states, window, embeddings, log_pop = random_batch(1)
    states.requires_grad_(True)
    embeddings.requires_grad_(True)
    loss = debiased_in_batch_loss(states, window, embeddings, window, log_pop)
    loss.backward()
    rows = (window[:, :-1] != 0) & (window[:, 1:] != 0)
    assert states.grad[rows].abs().sum(dim=-1).gt(0).all()
    assert states.grad[~rows].abs().sum() == 0  # padded rows are not in the average
    assert embeddings.grad[window != 0].abs().sum(dim=-1).gt(0).all()  # every window item, first included
    assert embeddings.grad[window == 0].abs().sum() == 0


def test_gradcheck_small():
    states, window, embeddings, log_pop = random_batch(2, batch=2, length=3, dim=3, n_items=5)
    states.requires_grad_(True)
    embeddings.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, e: debiased_in_batch_loss(s, window, e, window, log_pop), (states, embeddings)
    )


def test_uniform_popularity_is_no_correction():
    states, window, embeddings, _ = random_batch(3)
    none = debiased_in_batch_loss(states, window, embeddings, window, torch.zeros(10, dtype=F64))
    uniform = debiased_in_batch_loss(states, window, embeddings, window, torch.full((10,), -2.3, dtype=F64))
    for smoothing in ("none", "add-one"):
        counts = log_popularity_from_counts(torch.full((10,), 7), dtype=F64, smoothing=smoothing)
        from_counts = debiased_in_batch_loss(states, window, embeddings, window, counts)
        assert from_counts.item() == pytest.approx(none.item(), abs=1e-12)
    assert uniform.item() == pytest.approx(none.item(), abs=1e-12)


def test_popularity_correction_is_a_logit_offset():
    # subtracting log p(j) equals an extra embedding dimension: h -> [h, 1], e_j -> [e_j, -log p(j)]
    states, window, embeddings, log_pop = random_batch(4)
    corrected = debiased_in_batch_loss(states, window, embeddings, window, log_pop)
    states_aug = torch.cat([states, torch.ones_like(states[..., :1])], dim=-1)
    embeddings_aug = torch.cat([embeddings, -log_pop[window].unsqueeze(-1)], dim=-1)
    plain = debiased_in_batch_loss(states_aug, window, embeddings_aug, window, torch.zeros(10, dtype=F64))
    assert corrected.item() == pytest.approx(plain.item(), abs=1e-12)
    assert corrected.item() != pytest.approx(
        debiased_in_batch_loss(states, window, embeddings, window, torch.zeros(10, dtype=F64)).item(),
        abs=1e-6,
    )


def test_float32_close_to_float64():
    states, window, embeddings, log_pop = random_batch(5)
    f64 = debiased_in_batch_loss(states, window, embeddings, window, log_pop)
    f32 = debiased_in_batch_loss(states.float(), window, embeddings.float(), window, log_pop)
    assert f32.dtype == torch.float32
    assert f32.item() == pytest.approx(f64.item(), abs=1e-5)


def test_bad_inputs_are_errors():
    states, window, embeddings, log_pop = random_batch(0)
    with pytest.raises(ValueError, match="no non-padding"):
        debiased_in_batch_loss(states, torch.zeros_like(window), embeddings, window, log_pop)
    with pytest.raises(ValueError, match=r"\[B, L \+ 1\]"):
        debiased_in_batch_loss(states, window[:, 1:], embeddings, window, log_pop)
    with pytest.raises(ValueError, match="negatives"):
        debiased_in_batch_loss(states, window, embeddings, window, log_pop, negatives="all")
    # raw counts give log 0 = -inf to an unseen item: it must never be a candidate
    unseen = log_pop.clone()
    unseen[int(window[0, -1])] = -math.inf
    with pytest.raises(ValueError, match="not finite"):
        debiased_in_batch_loss(states, window, embeddings, window, unseen)


def test_log_popularity_from_counts():
    counts = torch.tensor([123, 0, 1, 3, 5])
    raw = log_popularity_from_counts(counts, dtype=F64)  # IISAN: log(count / sum), no smoothing
    assert raw[0].item() == 0.0  # padding: p = 1, never used
    assert raw[1].item() == -math.inf  # never seen in training
    assert raw[2:].tolist() == pytest.approx([math.log(1 / 9), math.log(3 / 9), math.log(5 / 9)], abs=1e-15)
    assert raw[1:].exp().sum().item() == pytest.approx(1.0)

    smoothed = log_popularity_from_counts(counts, dtype=F64, smoothing="add-one")  # ours before
    total = 1 + 2 + 4 + 6
    want = torch.log(torch.tensor([total, 1, 2, 4, 6], dtype=F64) / total)
    torch.testing.assert_close(smoothed, want)
    assert torch.isfinite(smoothed).all()
    assert log_popularity_from_counts(counts).dtype == torch.float32
    with pytest.raises(ValueError):
        log_popularity_from_counts(torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="all zero"):
        log_popularity_from_counts(torch.tensor([5, 0, 0]))
    with pytest.raises(ValueError, match="smoothing"):
        log_popularity_from_counts(counts, smoothing="laplace")


def test_check_finite():
    check_finite(torch.tensor(0.5), epoch=1, step=2)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="epoch 3 step 17: lower the learning rate"):
            check_finite(torch.tensor(bad), epoch=3, step=17)
    with pytest.raises(CrossanError):
        check_finite(float("nan"), 0, 0)
    assert issubclass(NonFiniteLossError, FloatingPointError)
