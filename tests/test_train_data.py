"""Stage 2 data side: padded sequences, popularity, batches and item states, checked by value."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
import torch

from crossan.data.sequences import leave_one_out
from crossan.errors import DataError
from crossan.runs.vocabulary import modality_letters
from crossan.train.inputs import (
    default_storage_dtype,
    eval_batches,
    item_popularity_counts,
    load_item_states,
    load_sequences,
    make_batch,
    standardize_states,
    train_batches,
)
from crossan.train.loss import debiased_in_batch_loss, log_popularity_from_counts


def T(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def write_dataset(folder: Path, sequences: dict[int, list[int]], n_items: int) -> Path:
    """Stage 1's files for ``{user_index: full sequence}``, via Stage 1's own splitter.
    Users are written in reverse order: the reader must sort by ``user_index``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["dense_id,item_id,title"] + [f'{i},{100 + i},"t{i}"' for i in range(1, n_items + 1)]
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    frame = pl.DataFrame(
        {
            "user_index": list(sequences),
            "user": [1000 + u for u in sequences],
            "items": list(sequences.values()),
        },
        schema={"user_index": pl.UInt32, "user": pl.Int64, "items": pl.List(pl.Int64)},
    ).reverse()
    frame.write_parquet(folder / "sequences.parquet")
    for name, split in leave_one_out(frame).items():
        split.write_parquet(folder / f"{name}.parquet")
    return folder


# user 0: long enough to be cut by max_len; user 1: shorter (padding);
# user 2: one train item (no training pair) and repeated items.
HAND = {0: [1, 2, 3, 4, 5, 6], 1: [2, 4, 6, 1, 3], 2: [5, 5, 2]}


@pytest.fixture
def hand_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", HAND, n_items=6)


def test_hand_dataset_max_len_3(hand_dir: Path) -> None:
    data = load_sequences(hand_dir, max_len=3)
    assert data.n_items == 6 and data.max_len == 3
    assert data.item_ids == ["101", "102", "103", "104", "105", "106"]
    train = data.train
    assert torch.equal(train.user_index, T([0, 1, 2]))
    # train = seq[:-2]: [1,2,3,4], [2,4,6], [5]
    assert torch.equal(train.inputs, T([[1, 2, 3], [0, 2, 4], [0, 0, 0]]))
    assert torch.equal(train.targets, T([[2, 3, 4], [0, 4, 6], [0, 0, 0]]))
    assert torch.equal(train.sequences, T([[1, 2, 3, 4], [0, 2, 4, 6], [0, 0, 0, 5]]))
    assert torch.equal(train.trainable, torch.tensor([True, True, False]))

    valid = data.valid
    assert torch.equal(valid.history, T([[2, 3, 4], [2, 4, 6], [0, 0, 5]]))
    assert torch.equal(valid.target, T([5, 1, 5]))
    assert torch.equal(valid.full_history, T([[1, 2, 3, 4], [0, 2, 4, 6], [0, 0, 0, 5]]))

    test = data.test  # the history includes the validation item
    assert torch.equal(test.history, T([[3, 4, 5], [4, 6, 1], [0, 5, 5]]))
    assert torch.equal(test.target, T([6, 3, 2]))
    assert torch.equal(test.full_history, T([[1, 2, 3, 4, 5], [0, 2, 4, 6, 1], [0, 0, 0, 5, 5]]))
    for tensor in (train.inputs, train.targets, train.sequences, valid.history, test.full_history):
        assert tensor.dtype == torch.long and tensor.device.type == "cpu"


def test_hand_dataset_max_len_2_keeps_the_last_pairs(hand_dir: Path) -> None:
    data = load_sequences(hand_dir, max_len=2)
    assert torch.equal(data.train.inputs, T([[2, 3], [2, 4], [0, 0]]))
    assert torch.equal(data.train.targets, T([[3, 4], [4, 6], [0, 0]]))
    # the loss's masking sequence is never cut
    assert torch.equal(data.train.sequences, T([[1, 2, 3, 4], [0, 2, 4, 6], [0, 0, 0, 5]]))
    assert torch.equal(data.valid.history, T([[3, 4], [4, 6], [0, 5]]))
    assert data.valid.full_history.shape == (3, 4)


def test_popularity_counts_every_train_item(hand_dir: Path) -> None:
    data = load_sequences(hand_dir, max_len=2)
    # train items 1,2,3,4 + 2,4,6 + 5 (user 2's lone item and user 0's cut item 1 count too);
    # validation/test targets do not.
    expected = T([0, 1, 2, 1, 2, 1, 1])
    assert torch.equal(item_popularity_counts(data), expected)
    assert torch.equal(item_popularity_counts(data.train), expected)
    # raw counts (IISAN): finite for every item that occurs in training, -inf for none here
    assert torch.isfinite(log_popularity_from_counts(expected)).all()


def test_bad_inputs_are_reported(tmp_path: Path, hand_dir: Path) -> None:
    (hand_dir / "train.parquet").rename(tmp_path / "moved.parquet")
    with pytest.raises(DataError, match="train.parquet does not exist"):
        load_sequences(hand_dir)
    bad = write_dataset(tmp_path / "bad", {0: [1, 2, 3, 9]}, n_items=4)
    with pytest.raises(DataError, match=r"dense ids 1\.\.4"):
        load_sequences(bad)
    with pytest.raises(ValueError):
        load_sequences(hand_dir, max_len=0)


# ---------------------------------------------------------------- batches


def random_sequences(n_users: int, n_items: int, seed: int) -> dict[int, list[int]]:
    rng = np.random.default_rng(seed)
    return {
        u: rng.integers(1, n_items + 1, size=int(rng.integers(3, 14))).tolist()
        for u in range(n_users)
    }


@pytest.fixture
def random_data(tmp_path: Path):
    return load_sequences(write_dataset(tmp_path / "r", random_sequences(57, 25, 0), 25), 10)


def epoch_users(data, seed: int, batch_size: int = 8) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return [u for b in train_batches(data, batch_size, generator) for u in b.user_index.tolist()]


def test_shuffle_is_deterministic_and_covers_trainable_users(random_data) -> None:
    first, again, other = epoch_users(random_data, 1), epoch_users(random_data, 1), epoch_users(random_data, 2)
    assert first == again
    assert first != other
    trainable = random_data.train.user_index[random_data.train.trainable].tolist()
    assert sorted(first) == sorted(other) == sorted(trainable)
    assert len(trainable) < 57  # users with one train item exist and are skipped
    # successive epochs from one generator differ
    generator = torch.Generator().manual_seed(1)
    epoch1 = [b.user_index for b in train_batches(random_data, 8, generator)]
    epoch2 = [b.user_index for b in train_batches(random_data, 8, generator)]
    assert not all(torch.equal(a, b) for a, b in zip(epoch1, epoch2))


def test_batch_sizes_and_drop_last(random_data) -> None:
    n = int(random_data.train.trainable.sum())
    sizes = [b.inputs.shape[0] for b in train_batches(random_data, 8, torch.Generator().manual_seed(0))]
    assert sum(sizes) == n and all(s == 8 for s in sizes[:-1])
    dropped = [b.inputs.shape[0] for b in
               train_batches(random_data, 8, torch.Generator().manual_seed(0), drop_last=True)]
    assert dropped == [8] * (n // 8)


def test_dedup_mapping_reconstructs_ids(random_data) -> None:
    for batch in train_batches(random_data, 8, torch.Generator().manual_seed(3)):
        table = batch.padded_unique_items
        assert torch.equal(table[batch.inputs_local], batch.inputs)
        assert torch.equal(table[batch.targets_local], batch.targets)
        assert torch.equal(batch.inputs_local == 0, batch.inputs == 0)
        assert torch.equal(batch.targets_local == 0, batch.targets == 0)
        ids = torch.cat([batch.inputs.flatten(), batch.targets.flatten()])
        assert batch.unique_items.tolist() == sorted(set(ids.tolist()) - {0})
        # the rows are the split's rows
        rows = [random_data.train.user_index.tolist().index(u) for u in batch.user_index.tolist()]
        assert torch.equal(batch.inputs, random_data.train.inputs[rows])
        assert torch.equal(batch.sequences, random_data.train.sequences[rows])
        assert torch.equal(batch.valid, batch.inputs != 0)
        # the loss's window: each user's last L + 1 training items, left-padded
        for window, sequence in zip(batch.window.tolist(), batch.sequences.tolist()):
            items = [i for i in sequence if i != 0][-(random_data.max_len + 1):]
            assert window == [0] * (random_data.max_len + 1 - len(items)) + items


def test_dedup_hand_batch_and_lookup(hand_dir: Path) -> None:
    data = load_sequences(hand_dir, max_len=3)
    batch = make_batch(data.train, T([1, 0]))
    assert torch.equal(batch.unique_items, T([1, 2, 3, 4, 6]))
    assert torch.equal(batch.inputs_local, T([[0, 2, 4], [1, 2, 3]]))
    assert torch.equal(batch.targets_local, T([[0, 4, 5], [2, 3, 4]]))
    no_padding = make_batch(data.train, T([0]))  # local 0 is padding even when unused
    assert torch.equal(no_padding.unique_items, T([1, 2, 3, 4]))
    assert torch.equal(no_padding.inputs_local, T([[1, 2, 3]]))

    embeddings = batch.unique_items.to(torch.float64).unsqueeze(1) * torch.tensor([1.0, -2.0], dtype=torch.float64)
    inputs, targets = batch.lookup(embeddings)  # embedding of id i is (i, -2i); padding 0
    assert torch.equal(inputs[..., 0], batch.inputs.to(torch.float64))
    assert torch.equal(targets[..., 1], -2 * batch.targets.to(torch.float64))
    with pytest.raises(ValueError):
        batch.lookup(embeddings[:-1])

    # the window = inputs then the last target: each user's last L + 1 training items
    assert torch.equal(batch.window, T([[0, 2, 4, 6], [1, 2, 3, 4]]))
    assert torch.equal(batch.window[:, 1:][batch.targets != 0], batch.targets[batch.targets != 0])
    window_embeddings = torch.cat([inputs, targets[:, -1:]], dim=1)
    assert torch.equal(window_embeddings[..., 0], batch.window.to(torch.float64))
    loss = debiased_in_batch_loss(
        torch.randn(2, 3, 2, dtype=torch.float64), batch.window, window_embeddings, batch.sequences,
        log_popularity_from_counts(item_popularity_counts(data), torch.float64),
    )
    assert torch.isfinite(loss)


def test_eval_batches_slice_in_order(hand_dir: Path) -> None:
    data = load_sequences(hand_dir, max_len=3)
    parts = list(eval_batches(data.test, 2))
    assert [len(p) for p in parts] == [2, 1]
    assert torch.equal(torch.cat([p.full_history for p in parts]), data.test.full_history)
    assert torch.equal(torch.cat([p.target for p in parts]), data.test.target)


# ---------------------------------------------------------------- item states


def write_features(
    path: Path, features: np.ndarray, valid: np.ndarray, item_ids: list[str], **attrs
) -> Path:
    """A finished whole-dataset feature file in :mod:`crossan.encoders.store`'s layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file.create_dataset("features", data=features.astype(np.float16))
        file.create_dataset("valid", data=valid)
        file.create_dataset("item_id", data=np.array(["", *item_ids], dtype=object),
                            dtype=h5py.string_dtype("utf-8"))
        defaults = {"config_hash": "x", "first_row": 1, "total_items": len(item_ids),
                    "layers": list(range(features.shape[1]))}
        for key, value in (defaults | attrs).items():
            file.attrs[key] = value
    return path


def random_features(n: int, layers: int, hidden: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n + 1, layers, hidden)).astype(np.float16)
    valid = rng.random(n + 1) > 0.2
    valid[0] = False
    features[~valid] = 0
    return features, valid


IDS = [str(100 + i) for i in range(1, 7)]


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "features"
    for seed, name in enumerate(("text", "image", "video", "audio")):
        write_features(folder / f"{name}.h5", *random_features(6, 3, 4, seed), IDS)
    return folder


def test_load_item_states_values_and_dtype(features_dir: Path) -> None:
    states = load_item_states(features_dir, "it", "cpu", item_ids=IDS)
    assert states.modalities == "TI" and states.names == ("text", "image")
    assert set(states.states) == set(states.available) == {"text", "image"}
    assert (states.n_items, states.n_layers, states.hidden) == (6, 3, 4)
    assert states.storage_dtype == torch.float32 and states.device.type == "cpu"
    features, valid = random_features(6, 3, 4, 1)
    assert torch.equal(states.states["image"], torch.from_numpy(features.astype(np.float32)))
    assert torch.equal(states.available["image"], torch.from_numpy(valid))

    ids = T([0, 3, 3, 6])
    gathered, available = states.gather(ids)
    assert gathered["image"].shape == (4, 3, 4) and gathered["image"].dtype == torch.float32
    assert torch.equal(gathered["image"], torch.from_numpy(features[[0, 3, 3, 6]].astype(np.float32)))
    assert torch.equal(gathered["image"][0], torch.zeros(3, 4))
    assert torch.equal(available["image"], torch.from_numpy(valid[[0, 3, 3, 6]]))
    assert not available["text"][0]


def test_standardize_states_by_hand() -> None:
    # rows: padding, three valid items, one item with unusable media; L = 1, D = 2
    features = np.array([[[0, 0]], [[1, 5]], [[2, 5]], [[3, 5]], [[0, 0]]], dtype=np.float16)
    valid = np.array([False, True, True, True, False])
    out = standardize_states(features, valid)
    z = np.sqrt(1.5)  # population std of (1, 2, 3) is sqrt(2/3); (x - 2) / sqrt(2/3)
    expected = np.array([[[0, 0]], [[-z, 0]], [[0, 0]], [[z, 0]], [[0, 0]]], dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)  # the constant column becomes 0


def test_load_item_states_standardized(features_dir: Path) -> None:
    states = load_item_states(features_dir, "I", "cpu", item_ids=IDS, standardize=True)
    image = states.states["image"].double()
    valid = states.available["image"]
    assert torch.equal(image[~valid], torch.zeros_like(image[~valid]))
    torch.testing.assert_close(image[valid].mean(0), torch.zeros(3, 4, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(image[valid].std(0, unbiased=False), torch.ones(3, 4, dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_float16_storage_gathers_identical_float32(features_dir: Path) -> None:
    assert default_storage_dtype("cuda") == torch.float16
    assert default_storage_dtype("cpu") == torch.float32
    half = load_item_states(features_dir, "TIVA", "cpu", storage_dtype=torch.float16)
    full = load_item_states(features_dir, "TIVA", "cpu")
    assert half.storage_dtype == torch.float16
    ids = T([5, 0, 1, 2])
    (a, _), (b, _) = half.gather(ids), full.gather(ids)
    for name in ("text", "image", "video", "audio"):
        assert a[name].dtype == b[name].dtype == torch.float32
        assert torch.equal(a[name], b[name])  # float16 -> float32 is exact
    assert half.gather(ids, dtype=torch.float16)[0]["text"].dtype == torch.float16


def test_files_are_read_once_never_per_batch(features_dir: Path, hand_dir: Path, monkeypatch) -> None:
    opened: list[str] = []
    real = h5py.File

    def counting(name, *args, **kwargs):
        opened.append(Path(name).name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", counting)
    states = load_item_states(features_dir, "TIVA", "cpu")
    # per file: one open to check it is finished and whole, one to read it
    assert sorted(opened) == sorted(2 * ["text.h5", "image.h5", "video.h5", "audio.h5"])
    opened.clear()
    data = load_sequences(hand_dir, max_len=3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        for batch in train_batches(data, 1, generator):
            gathered, _ = states.gather(batch.unique_items)
            assert gathered["audio"].shape == (batch.unique_items.numel(), 3, 4)
    assert opened == []


def test_mismatched_files_are_named(tmp_path: Path, features_dir: Path) -> None:
    folder = tmp_path / "mismatch"
    write_features(folder / "text.h5", *random_features(6, 3, 4, 0), IDS)

    write_features(folder / "image.h5", *random_features(5, 3, 4, 1), IDS[:5])
    with pytest.raises(DataError, match=r"number of items: .*text\.h5 has 6, .*image\.h5 has 5"):
        load_item_states(folder, "TI", "cpu")

    write_features(folder / "image.h5", *random_features(6, 3, 4, 1), [*IDS[:2], IDS[3], IDS[2], *IDS[4:]])
    with pytest.raises(DataError, match=r"item order: dense id 3 is item '103' in .*text\.h5 but '104' in .*image\.h5"):
        load_item_states(folder, "TI", "cpu")

    write_features(folder / "image.h5", *random_features(6, 2, 4, 1), IDS)
    with pytest.raises(DataError, match="n_layers: text.h5 has 3, image.h5 has 2"):
        load_item_states(folder, "TI", "cpu")

    write_features(folder / "image.h5", *random_features(6, 3, 8, 1), IDS)
    with pytest.raises(DataError, match="hidden: text.h5 has 4, image.h5 has 8"):
        load_item_states(folder, "TI", "cpu")

    with pytest.raises(DataError, match=r"video\.h5 .*do not exist"):
        load_item_states(folder, "TV", "cpu")

    with pytest.raises(DataError, match="does not match the dataset's items.csv"):
        load_item_states(features_dir, "T", "cpu", item_ids=[*IDS[:5], "999"])

    write_features(folder / "audio.h5", *random_features(6, 3, 4, 1), IDS, total_items=12)
    with pytest.raises(DataError, match="is a shard"):
        load_item_states(folder, "A", "cpu")


def test_a_truncated_feature_file_is_named_with_what_to_do(features_dir: Path) -> None:
    path = features_dir / "image.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        load_item_states(features_dir, "TI", "cpu", item_ids=IDS)
    message = str(error.value)
    assert message.startswith(f"feature file {path} is unreadable (cut short or damaged: ")
    assert "truncated file" in message
    assert message.endswith("); delete it and rerun snakemake, which extracts it again")


def test_modality_letters() -> None:
    assert modality_letters("ait") == "TIA"
    for bad in ("", "TX", "TT"):
        with pytest.raises(ValueError):
            modality_letters(bad)
