"""In-batch debiased cross entropy: values against a naive loop and a hand-worked batch."""

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


def naive_loss(user_states, targets, target_embeddings, sequences, log_popularity) -> float:
    """Explicit loops over rows and columns, masked logits, -log softmax of the positive."""
    batch, length, _ = user_states.shape
    losses = []
    for b in range(batch):
        history = {int(i) for i in sequences[b] if int(i) != 0}
        for l in range(length):
            positive = int(targets[b, l])
            if positive == 0:
                continue
            logits, positive_logit = [], None
            for cb in range(batch):
                for cl in range(length):
                    item = int(targets[cb, cl])
                    value = float(user_states[b, l] @ target_embeddings[cb, cl]) - float(log_popularity[item])
                    if (cb, cl) == (b, l):
                        positive_logit = value
                    elif item == 0 or item in history or item == positive:
                        value = -math.inf
                    logits.append(value)
            top = max(logits)
            log_sum = top + math.log(sum(math.exp(v - top) for v in logits))
            losses.append(log_sum - positive_logit)
    return sum(losses) / len(losses)


def random_batch(seed: int, batch: int = 4, length: int = 5, dim: int = 8, n_items: int = 9):
    """Small item vocabulary so items repeat within and across users; some left padding."""
    g = torch.Generator().manual_seed(seed)
    sequences = torch.randint(1, n_items + 1, (batch, length + 1), generator=g)
    for b in range(batch):
        sequences[b, : b % 3] = 0  # left padding of 0, 1 or 2 positions
    targets = sequences[:, 1:].clone()
    states = torch.randn(batch, length, dim, generator=g, dtype=F64)
    embeddings = torch.randn(batch, length, dim, generator=g, dtype=F64)
    log_pop = torch.randn(n_items + 1, generator=g, dtype=F64)
    return states, targets, embeddings, sequences, log_pop


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_loop(seed):
    states, targets, embeddings, sequences, log_pop = random_batch(seed)
    # the setup must exercise cross-user duplicates and same-user repeats
    flat = targets[targets != 0]
    assert flat.unique().numel() < flat.numel()
    got = debiased_in_batch_loss(states, targets, embeddings, sequences, log_pop)
    assert got.dtype == F64 and got.dim() == 0
    assert got.item() == pytest.approx(naive_loss(states, targets, embeddings, sequences, log_pop), abs=1e-6)


def test_same_user_repeat_and_cross_user_duplicate_of_positive():
    # user 0 sees item 3 twice; user 1's target 3 duplicates it across users
    sequences = torch.tensor([[1, 3, 2, 3], [5, 3, 6, 7]])
    targets = sequences[:, 1:]
    states, _, embeddings, _, log_pop = random_batch(0, batch=2, length=3, n_items=7)
    got = debiased_in_batch_loss(states, targets, embeddings, sequences, log_pop)
    assert got.item() == pytest.approx(naive_loss(states, targets, embeddings, sequences, log_pop), abs=1e-6)


def test_positive_item_from_another_user_masked_even_if_sequences_omit_targets():
    # sequences hold only the inputs: user 1's column of item 4 (= r02's positive item)
    # is still the same item, not a negative
    states, _, embeddings, _, log_pop = random_batch(6, batch=2, length=3, n_items=8)
    targets = torch.tensor([[2, 3, 4], [5, 4, 6]])
    inputs_only = torch.tensor([[1, 2, 3], [7, 5, 4]])
    got = debiased_in_batch_loss(states, targets, embeddings, inputs_only, log_pop, reduction="none")
    moved = embeddings.clone()
    moved[1, 1] = 1e3  # would dominate r02's softmax if it were a negative
    after = debiased_in_batch_loss(states, targets, moved, inputs_only, log_pop, reduction="none")
    assert after[0, 2] == got[0, 2]
    assert got.sum().item() / 6 == pytest.approx(
        naive_loss(states, targets, embeddings, inputs_only, log_pop)
    )


def hand_batch():
    """Two users, L = 3, d = 1; user 1 has one padded position.

    user 0: sequence [1, 2, 3, 4], targets [2, 3, 4]
    user 1: sequence [0, 6, 5, 2], targets [0, 5, 2]
    Columns c0..c5 = items 2, 3, 4, pad, 5, 2. Surviving columns per row:
    r00 {c0+, c4}  r01 {c1+, c4}  r02 {c2+, c4}  r11 {c4+, c1, c2}  r12 {c5+, c1, c2}
    (c5 is item 2: in user 0's sequence; c0 is item 2: in user 1's sequence.)
    """
    sequences = torch.tensor([[1, 2, 3, 4], [0, 6, 5, 2]])
    targets = torch.tensor([[2, 3, 4], [0, 5, 2]])
    states = torch.tensor([[1.0, 1.0, 0.5], [100.0, 1.0, 2.0]], dtype=F64).unsqueeze(-1)
    embeddings = torch.tensor([[1.0, 0.0, 2.0], [7.0, -1.0, 1.0]], dtype=F64).unsqueeze(-1)
    return states, targets, embeddings, sequences


def log1pexp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_hand_worked_two_users():
    states, targets, embeddings, sequences = hand_batch()
    no_pop = torch.zeros(7, dtype=F64)
    expected = [
        log1pexp(-1 - 1),  # r00: positive 1*1, negative 1*(-1)
        log1pexp(-1 - 0),  # r01: positive 1*0, negative -1
        log1pexp(-0.5 - 1),  # r02: positive 0.5*2, negative -0.5
        1 + math.log(math.exp(-1) + math.exp(0) + math.exp(2)),  # r11: positive -1; c1 0, c2 2
        -2 + math.log(math.exp(2) + math.exp(0) + math.exp(4)),  # r12: positive 2; c1 0, c2 4
    ]
    got = debiased_in_batch_loss(states, targets, embeddings, sequences, no_pop)
    assert got.item() == pytest.approx(sum(expected) / 5, abs=1e-12)

    per_position = debiased_in_batch_loss(states, targets, embeddings, sequences, no_pop, reduction="none")
    want = torch.tensor([expected[:3], [0.0, *expected[3:]]], dtype=F64)
    torch.testing.assert_close(per_position, want, atol=1e-12, rtol=0)

    # log p(4) = 1 lowers every logit of item 4 (c2) by 1
    pop = no_pop.clone()
    pop[4] = 1.0
    expected_pop = [
        expected[0],
        expected[1],
        log1pexp(-0.5 - 0),  # r02: positive 1 - 1 = 0, negative -0.5
        1 + math.log(math.exp(-1) + math.exp(0) + math.exp(1)),
        -2 + math.log(math.exp(2) + math.exp(0) + math.exp(3)),
    ]
    got_pop = debiased_in_batch_loss(states, targets, embeddings, sequences, pop)
    assert got_pop.item() == pytest.approx(sum(expected_pop) / 5, abs=1e-12)


def test_masked_columns_never_contribute():
    states, targets, embeddings, sequences = hand_batch()
    no_pop = torch.zeros(7, dtype=F64)
    base = debiased_in_batch_loss(states, targets, embeddings, sequences, no_pop, reduction="none")
    changed = embeddings.clone()
    changed[1, 2] = 50.0  # c5, item 2 of user 1: in user 0's sequence
    changed[0, 1] = -30.0  # c1, item 3 of user 0: same-user column for r00 and r02
    changed[1, 0] = float("nan")  # the padding column
    after = debiased_in_batch_loss(states, targets, changed, sequences, no_pop, reduction="none")
    # r00 and r02 see neither c1 nor c5 nor the padding column
    torch.testing.assert_close(after[0, [0, 2]], base[0, [0, 2]], atol=0, rtol=0)
    assert after[0, 1] != base[0, 1] and after[1, 2] != base[1, 2]  # their own positives changed

    # and no gradient flows into a masked column from those rows
    leaf = embeddings.clone().requires_grad_(True)
    debiased_in_batch_loss(states, targets, leaf, sequences, no_pop, reduction="none")[
        0, [0, 2]
    ].sum().backward()
    assert (
        leaf.grad[0, 1].abs().sum() == 0 and leaf.grad[1, 2].abs().sum() == 0 and leaf.grad[1, 0].sum() == 0
    )
    assert leaf.grad[1, 1].abs().sum() > 0  # c4 is their negative


def test_nan_padding_embedding_is_harmless():
    states, targets, embeddings, sequences = hand_batch()
    embeddings = embeddings.clone()
    embeddings[1, 0] = float("nan")
    states = states.clone().requires_grad_(True)
    loss = debiased_in_batch_loss(states, targets, embeddings, sequences, torch.zeros(7, dtype=F64))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(states.grad).all()


def test_gradients_flow_to_states_and_embeddings():
    states, targets, embeddings, sequences, log_pop = random_batch(1)
    states.requires_grad_(True)
    embeddings.requires_grad_(True)
    loss = debiased_in_batch_loss(states, targets, embeddings, sequences, log_pop)
    loss.backward()
    valid = targets != 0
    assert states.grad[valid].abs().sum(dim=-1).gt(0).all()
    assert states.grad[~valid].abs().sum() == 0  # padded rows are not in the average
    assert embeddings.grad[valid].abs().sum() > 0


def test_gradcheck_small():
    states, targets, embeddings, sequences, log_pop = random_batch(2, batch=2, length=3, dim=3, n_items=5)
    states.requires_grad_(True)
    embeddings.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, e: debiased_in_batch_loss(s, targets, e, sequences, log_pop), (states, embeddings)
    )


def test_uniform_popularity_is_no_correction():
    states, targets, embeddings, sequences, _ = random_batch(3)
    none = debiased_in_batch_loss(states, targets, embeddings, sequences, torch.zeros(10, dtype=F64))
    uniform = debiased_in_batch_loss(
        states, targets, embeddings, sequences, torch.full((10,), -2.3, dtype=F64)
    )
    counts = log_popularity_from_counts(torch.full((10,), 7), dtype=F64)
    from_counts = debiased_in_batch_loss(states, targets, embeddings, sequences, counts)
    assert uniform.item() == pytest.approx(none.item(), abs=1e-12)
    assert from_counts.item() == pytest.approx(none.item(), abs=1e-12)


def test_popularity_correction_is_a_logit_offset():
    # subtracting log p(j) equals an extra embedding dimension: h -> [h, 1], e_j -> [e_j, -log p(j)]
    states, targets, embeddings, sequences, log_pop = random_batch(4)
    corrected = debiased_in_batch_loss(states, targets, embeddings, sequences, log_pop)
    states_aug = torch.cat([states, torch.ones_like(states[..., :1])], dim=-1)
    embeddings_aug = torch.cat([embeddings, -log_pop[targets].unsqueeze(-1)], dim=-1)
    plain = debiased_in_batch_loss(states_aug, targets, embeddings_aug, sequences, torch.zeros(10, dtype=F64))
    assert corrected.item() == pytest.approx(plain.item(), abs=1e-12)
    assert corrected.item() != pytest.approx(
        debiased_in_batch_loss(states, targets, embeddings, sequences, torch.zeros(10, dtype=F64)).item(),
        abs=1e-6,
    )


def test_float32_close_to_float64():
    states, targets, embeddings, sequences, log_pop = random_batch(5)
    f64 = debiased_in_batch_loss(states, targets, embeddings, sequences, log_pop)
    f32 = debiased_in_batch_loss(states.float(), targets, embeddings.float(), sequences, log_pop)
    assert f32.dtype == torch.float32
    assert f32.item() == pytest.approx(f64.item(), abs=1e-5)


def test_all_padding_batch_is_an_error():
    states, targets, embeddings, sequences, log_pop = random_batch(0)
    with pytest.raises(ValueError, match="no non-padding"):
        debiased_in_batch_loss(states, torch.zeros_like(targets), embeddings, sequences, log_pop)


def test_log_popularity_from_counts():
    counts = torch.tensor([123, 0, 1, 3, 5])
    got = log_popularity_from_counts(counts, dtype=F64)
    total = 1 + 2 + 4 + 6
    want = torch.log(torch.tensor([1, 1, 2, 4, 6], dtype=F64) / total)
    torch.testing.assert_close(got, want)
    assert torch.isfinite(got).all()
    assert got[1:].exp().sum().item() == pytest.approx(1.0)
    assert log_popularity_from_counts(counts).dtype == torch.float32
    with pytest.raises(ValueError):
        log_popularity_from_counts(torch.tensor([0, -1, 2]))


def test_check_finite():
    check_finite(torch.tensor(0.5), epoch=1, step=2)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(FloatingPointError, match="epoch 3 step 17: lower the learning rate"):
            check_finite(torch.tensor(bad), epoch=3, step=17)
    with pytest.raises(CrossanError):
        check_finite(float("nan"), 0, 0)
    assert issubclass(NonFiniteLossError, FloatingPointError)
