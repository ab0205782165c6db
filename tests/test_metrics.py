"""Full-ranking metrics: hand-worked ranks, HR/NDCG values, chunking and the per-user file."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from crossan.data.buckets import (
    BUCKET_RULE,
    assign_buckets,
    bucket_thresholds,
    item_training_counts,
    popularity_buckets,
)
from crossan.train.metrics import (
    evaluate_full_ranking,
    hit_ndcg,
    metrics_by_bucket,
    rank_of_targets,
    save_per_user,
    summarize,
)

F64 = torch.float64


def ranks(scores, targets, history, repeat_targets: str = "miss") -> list[int]:
    return rank_of_targets(
        torch.tensor(scores, dtype=F64), torch.tensor(targets), torch.tensor(history), repeat_targets
    ).tolist()


def test_hand_worked_ranks_with_ties_history_and_padding():
    scores = [
        [9, 5, 4, 3, 2, 1],  # item 0 scores highest but is padding: target 1 is first
        [0, 1, 5, 3, 5, 2],  # items 2 and 4 beat target 3
        [0, 2, 2, 2, 1, 2],  # target 1 ties items 2, 3 (item 5 is history): pessimistic rank 3
        [0, 8, 3, 9, 2, 7],  # target 3 is also in the history: a miss, last of the 5 items
    ]
    history = [[0, 0], [0, 0], [5, 0], [3, 1]]
    assert ranks(scores, [1, 3, 1, 3], history) == [1, 3, 3, 5]
    # the earlier rule keeps the repeated target a candidate: best score, item 1 masked
    assert ranks(scores, [1, 3, 1, 3], history, "ranked") == [1, 3, 3, 1]


def test_history_masking_moves_the_target_up():
    scores = [[0, 5, 4, 3, 2, 1]]
    assert ranks(scores, [4], [[0, 0, 0]]) == [4]
    assert ranks(scores, [4], [[1, 3, 0]]) == [2]
    assert ranks(scores, [4], [[1, 2, 3]]) == [1]


def test_repeat_target_is_a_miss():
    """IISAN masks the whole history, the target too: a target repeated from the history ranks
    last (n_items) however well it is scored, a miss at K = 10 and 20."""
    n_items = 30
    row = [0.0] + [100.0 - i for i in range(1, n_items + 1)]  # item i ranks i
    scores = [row, row, row]
    targets = [1, 2, 2]
    history = [[1, 5], [3, 0], [0, 2]]  # users 0 and 2 repeat their target
    got = ranks(scores, targets, history)
    assert got == [n_items, 2, n_items]  # user 1: only item 1 beats target 2
    metrics = hit_ndcg(torch.tensor(got))
    assert metrics["HR@10"].tolist() == metrics["HR@20"].tolist() == [0.0, 1.0, 0.0]
    assert metrics["NDCG@20"].tolist() == [0.0, 1 / math.log2(3), 0.0]
    # the earlier rule ranks a repeated target like any other (user 0: first; user 2: second)
    assert ranks(scores, targets, history, "ranked") == [1, 2, 2]
    # a target listed in its own history still ranks behind better items and ahead of worse ones
    assert ranks([[0, 1, 2, 3]], [2], [[2]], "ranked") == [2]
    assert ranks([[0, 1, 2, 3]], [2], [[2, 3]], "ranked") == [1]
    with pytest.raises(ValueError, match="repeat_targets"):
        ranks(scores, targets, history, "hit")


def test_ranks_11_and_21_and_boundaries():
    n_items = 30
    row = [1000.0] + [100.0 - i for i in range(1, n_items + 1)]  # item i ranks i
    targets = [1, 3, 10, 11, 20, 21, 30]
    got = ranks([row] * len(targets), targets, [[0]] * len(targets))
    assert got == targets
    metrics = hit_ndcg(torch.tensor(got))
    assert metrics["HR@10"].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert metrics["HR@20"].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert metrics["NDCG@10"].tolist() == pytest.approx([1, 0.5, 1 / math.log2(11), 0, 0, 0, 0], abs=1e-15)
    assert metrics["NDCG@20"].tolist() == pytest.approx(
        [1, 0.5, 1 / math.log2(11), 1 / math.log2(12), 1 / math.log2(21), 0, 0], abs=1e-15
    )


def test_constant_scores_get_the_pessimistic_rank():
    n_items = 30
    scores = torch.zeros(2, n_items + 1)
    got = rank_of_targets(scores, torch.tensor([5, 7]), torch.tensor([[1, 2], [0, 0]]))
    assert got.tolist() == [28, 30]  # every other candidate ties the target
    summary = summarize(hit_ndcg(got))
    assert summary == {"HR@10": 0.0, "NDCG@10": 0.0, "HR@20": 0.0, "NDCG@20": 0.0}


def test_hit_ndcg_exact_values_and_key_order():
    metrics = hit_ndcg(torch.tensor([1, 3, 7, 15, 31]), ks=(10, 20))
    assert list(metrics) == ["HR@10", "NDCG@10", "HR@20", "NDCG@20"]
    # approx: log2 of a power of two is exact only if the CPU's vectorised log2 makes it so
    assert metrics["NDCG@10"].tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.0, 0.0], abs=1e-15)
    assert metrics["NDCG@20"].tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.0], abs=1e-15)
    assert metrics["HR@20"].dtype == F64
    assert summarize(metrics)["NDCG@20"] == pytest.approx((1 + 0.5 + 1 / 3 + 0.25) / 5)
    assert list(hit_ndcg(torch.tensor([1]), ks=(5,))) == ["HR@5", "NDCG@5"]


def test_invalid_inputs_are_rejected():
    scores = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="1..3"):
        rank_of_targets(scores, torch.tensor([0]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="1..3"):
        rank_of_targets(scores, torch.tensor([4]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="NaN"):
        rank_of_targets(torch.tensor([[0.0, 1.0, float("nan"), 2.0]]), torch.tensor([1]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="no users"):
        summarize({"HR@10": np.array([])})


def brute_force_rank(scores: torch.Tensor, target: int, history: set[int], repeat_targets: str) -> int:
    """Pessimistic rank among the non-history items; a repeated target (``"miss"``) gets
    score -inf like the rest of its history, so every other item ties or beats it."""
    if repeat_targets == "miss" and target in history:
        return scores.numel() - 1
    return 1 + sum(
        1
        for item in range(1, scores.numel())
        if item != target and item not in history and scores[item] >= scores[target]
    )


def random_eval(seed: int, users: int = 37, n_items: int = 50, dim: int = 4):
    g = torch.Generator().manual_seed(seed)
    # small integers make exact ties common
    states = torch.randint(-2, 3, (users, dim), generator=g).to(F64)
    items = torch.randint(-2, 3, (n_items + 1, dim), generator=g).to(F64)
    targets = torch.randint(1, n_items + 1, (users,), generator=g)
    history = torch.randint(0, n_items + 1, (users, 6), generator=g)
    history[::4, 0] = targets[::4]  # some targets repeat an item of the history
    return states, items, targets, history


@pytest.mark.parametrize("repeat_targets", ["miss", "ranked"])
def test_evaluate_matches_brute_force_and_chunking_is_invisible(repeat_targets):
    states, items, targets, history = random_eval(0)
    scores = states @ items.T
    want = [
        brute_force_rank(scores[u], int(targets[u]), {int(h) for h in history[u] if h != 0}, repeat_targets)
        for u in range(len(targets))
    ]
    if repeat_targets == "miss":
        assert want.count(50) >= 10  # the repeated targets (every 4th user) rank last, n_items
    results = [
        evaluate_full_ranking(states, items, targets, history, chunk_users=c, repeat_targets=repeat_targets)
        for c in (1, 5, 37, 1024)
    ]
    for summary, per_user in results:
        assert per_user["rank"].tolist() == want
        assert summary == results[0][0]
        for name in ("HR@10", "NDCG@10", "HR@20", "NDCG@20"):
            np.testing.assert_array_equal(per_user[name], results[0][1][name])
            assert summary[name] == pytest.approx(per_user[name].mean(), abs=1e-15)
    assert 0 < results[0][0]["HR@20"] < 1  # the case is not degenerate


def test_evaluate_float32_and_bad_chunk():
    states, items, targets, history = random_eval(1)
    summary64, _ = evaluate_full_ranking(states, items, targets, history)
    summary32, _ = evaluate_full_ranking(states.float(), items.float(), targets, history, chunk_users=8)
    assert summary32 == summary64  # small integers are exact in float32 too
    with pytest.raises(ValueError, match="chunk_users"):
        evaluate_full_ranking(states, items, targets, history, chunk_users=0)


def test_save_per_user_round_trip(tmp_path):
    states, items, targets, history = random_eval(2, users=9)
    _, per_user = evaluate_full_ranking(states, items, targets, history, chunk_users=4)
    user_index = np.arange(100, 109)
    path = tmp_path / "eval" / "per_user.parquet"
    save_per_user(path, user_index, per_user)
    frame = pl.read_parquet(path)
    assert frame.columns == ["user", "rank", "HR@10", "NDCG@10", "HR@20", "NDCG@20"]
    assert frame.height == 9
    assert frame["user"].to_list() == user_index.tolist()
    np.testing.assert_array_equal(frame["NDCG@10"].to_numpy(), per_user["NDCG@10"])
    assert not (tmp_path / "eval" / "per_user.parquet.partial").exists()
    with pytest.raises(ValueError, match="shape"):
        save_per_user(tmp_path / "bad.parquet", user_index[:3], per_user)
    assert not (tmp_path / "bad.parquet").exists()


# ====================================================================== long-tail buckets

# items 1..9 with training counts 5,0,3,1,8,2,7,4,6 (index 0 = padding)
NINE = np.array([0, 5, 0, 3, 1, 8, 2, 7, 4, 6])


def test_bucket_thresholds_by_hand() -> None:
    # 36 interactions, a third is 12. From the top: 8 (8), 8 + 7 (15 >= 12): head >= 7 (items
    # 5, 7). From the bottom: 0, 1, 3, 6, 10, 15 (>= 12 at count 5): tail <= 5. Torso: count 6.
    assert bucket_thresholds(NINE) == (7, 5)
    bucket = assign_buckets(NINE, 7, 5)
    assert bucket.tolist() == [-1, 2, 2, 2, 2, 0, 2, 0, 2, 1]
    record = popularity_buckets(NINE, {"test": np.array([5, 2, 1, 7, 4])})
    assert record == {"by": BUCKET_RULE, "head_min_count": 7, "tail_max_count": 5,
                      "items": {"head": 2, "torso": 1, "tail": 6},
                      "interactions": {"head": 15, "torso": 6, "tail": 15}, "empty_buckets": [],
                      "test_targets": {"head": 2, "torso": 0, "tail": 3}}


# Sparse and heavily tied, as real data (most items seen 0-2 times): items 1..20 with counts
# 0 x4 (items 2, 7, 12, 18), 1 x9, 2 x4 (items 3, 11, 16, 19), 3 (item 9), 6 (item 14), 12 (item 5).
SPARSE = np.array([0, 1, 0, 2, 1, 12, 1, 0, 1, 3, 1, 2, 0, 1, 6, 1, 2, 1, 0, 2, 1])


def test_sparse_tied_counts_give_three_buckets_with_whole_tie_groups() -> None:
    # 38 interactions. Head from the top: 12 (36 < 38 when tripled), 12 + 6 = 18 (54 >= 38):
    # head >= 6. Tail from the bottom: 0, 9 (27 < 38), 9 + 8 = 17 (51 >= 38): tail <= 2.
    # Torso: count 3. The old terciles over items (k = 6) gave tail <= 1, head >= 2, no torso.
    assert bucket_thresholds(SPARSE) == (6, 2)
    bucket = assign_buckets(SPARSE, 6, 2)
    assert np.flatnonzero(bucket == 0).tolist() == [5, 14]
    assert np.flatnonzero(bucket == 1).tolist() == [9]
    assert np.flatnonzero(bucket == 2).tolist() == [i for i in range(1, 21) if i not in (5, 9, 14)]
    record = popularity_buckets(SPARSE, {"test": np.array([5, 9, 2, 3, 14])})
    assert record["items"] == {"head": 2, "torso": 1, "tail": 17}
    assert record["interactions"] == {"head": 18, "torso": 3, "tail": 17}
    assert record["empty_buckets"] == []
    assert record["test_targets"] == {"head": 2, "torso": 1, "tail": 2}


def test_old_degenerate_split_now_has_a_torso() -> None:
    # counts 1,1,1,1,5,9 (terciles over items: tail <= 1, head >= 5, no torso). 18 interactions:
    # head >= 9 (27 >= 18); the tail would need counts <= 5 (9 x 3 >= 18), cut to two distinct
    # values below the head: tail <= 1, torso = count 5.
    counts = np.array([0, 1, 1, 1, 1, 5, 9])
    assert bucket_thresholds(counts) == (9, 1)
    assert assign_buckets(counts, 9, 1).tolist() == [-1, 2, 2, 2, 2, 1, 0]


def test_head_is_raised_above_the_two_least_popular_counts() -> None:
    # counts 0,0, 1 x30, 2, 3: 35 interactions; the head would need the count-1 items (only
    # 3 + 2 = 5 above them), so it starts at the third distinct value, 2; tail <= 0.
    counts = np.array([0, 0, 0, *[1] * 30, 2, 3])
    assert bucket_thresholds(counts) == (2, 0)
    assert popularity_buckets(counts)["items"] == {"head": 2, "torso": 30, "tail": 2}


def test_fewer_than_three_distinct_counts_leave_buckets_empty_and_say_so() -> None:
    # two values: head = the higher, tail = the lower, no torso
    two = popularity_buckets(np.array([0, 0, 3, 0, 3]), {"test": np.array([1, 2])})
    assert (two["head_min_count"], two["tail_max_count"]) == (3, 0)
    assert two["items"] == {"head": 2, "torso": 0, "tail": 2}
    assert two["empty_buckets"] == ["torso"]
    assert two["test_targets"] == {"head": 1, "torso": 0, "tail": 1}
    # one value: every item is tail, the head threshold one above it
    assert bucket_thresholds(np.array([0, 2, 2, 2])) == (3, 2)
    one = popularity_buckets(np.array([0, 2, 2, 2]))
    assert one["items"] == {"head": 0, "torso": 0, "tail": 3}
    assert one["interactions"] == {"head": 0, "torso": 0, "tail": 6}
    assert one["empty_buckets"] == ["head", "torso"]
    # no training interaction at all
    assert bucket_thresholds(np.array([0, 0, 0])) == (1, 0)
    with pytest.raises(ValueError, match="no items"):
        bucket_thresholds(np.array([0]))


def test_item_training_counts() -> None:
    assert item_training_counts([[1, 2, 1], [], [3]], 4).tolist() == [0, 2, 1, 1, 0]
    with pytest.raises(ValueError):
        item_training_counts([[5]], 4)


def test_metrics_by_bucket_by_hand() -> None:
    targets = np.array([5, 2, 1, 7, 4])  # head, tail, torso, head, tail
    ranks = torch.tensor([1, 3, 12, 10, 11])
    per_user = {name: v.numpy() for name, v in hit_ndcg(ranks, (10,)).items()}
    out = metrics_by_bucket(per_user, targets, assign_buckets(NINE, 6, 2))
    assert out["head"] == {"users": 2, "HR@10": 1.0, "NDCG@10": pytest.approx((1 + 1 / math.log2(11)) / 2)}
    assert out["torso"] == {"users": 1, "HR@10": 0.0, "NDCG@10": 0.0}
    assert out["tail"] == {"users": 2, "HR@10": 0.5, "NDCG@10": pytest.approx(0.25)}  # rank 3: 1/log2(4)
    empty = metrics_by_bucket(per_user, np.array([5, 5, 7, 9, 5]), assign_buckets(NINE, 6, 2))
    assert empty["tail"] == {"users": 0, "HR@10": None, "NDCG@10": None}
