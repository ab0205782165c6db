"""Stage 2 model classes: gates, fusions, masks, shapes, determinism (tiny 32-d inputs)."""

from __future__ import annotations

import pytest
import torch

from crossan.models import FUSIONS, METHODS, ModelConfig, build_model, parse_modalities
from crossan.models.adapters import Adapter, CrossModalSideAdapters, IISANSideAdapters
from crossan.models.fusion import (
    MOMEF,
    ConcatFusion,
    DynamicGatedFusion,
    StaticGatedFusion,
)
from crossan.models.sasrec import SASRec

HIDDEN = 32  # the demo's tiny encoders
LAYERS = 7
SUBSETS = ("TI", "TIA", "TIV", "TIVA")


def tiny_config(method: str = "crossan", modalities: str = "TIVA", **kw: object) -> ModelConfig:
    return ModelConfig(
        method=method, modalities=modalities, encoder_dim=HIDDEN, adapter_dim=16, n_items=20, **kw
    )


def random_states(modalities: str, n: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, LAYERS, HIDDEN, generator=g) for m in parse_modalities(modalities)}


def randomize_gates(module: torch.nn.Module, seed: int = 1) -> None:
    """Move every gate/logit parameter off its symmetric init so tests see real mixing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "gate_logits" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


# --- adapters -----------------------------------------------------------------------------


def test_parse_modalities_canonical_order() -> None:
    assert parse_modalities("ait") == ("text", "image", "audio")
    assert parse_modalities(["video", "text"]) == ("text", "video")
    for bad in ("", "TX", "TT"):
        with pytest.raises(ValueError):
            parse_modalities(bad)


def test_adapter_is_near_identity_at_init() -> None:
    torch.manual_seed(0)
    adapter = Adapter(768, 512)
    x = torch.randn(16, 768)
    relative = (adapter(x) - x).norm() / x.norm()
    assert relative < 0.1, relative
    assert adapter.down.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert adapter.up.bias.abs().max().item() == 0.0


def test_crossan_gates_are_softmax_over_all_sources() -> None:
    towers = CrossModalSideAdapters(parse_modalities("TIVA"), HIDDEN, 16, LAYERS, 64, cross=True)
    assert towers.gate_logits.numel() == 4 * 7 * 5  # the paper's 140
    randomize_gates(towers)
    weights = towers.gate_weights()
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, LAYERS))
    values = towers.gate_values()
    assert list(values) == ["text", "image", "video", "audio"]
    assert towers.gate_sources == ("H", "T", "I", "V", "A")
    for v in values.values():
        assert v.shape == (LAYERS, 5)
        torch.testing.assert_close(v.sum(-1), torch.ones(LAYERS))


def test_crossan_gates_uniform_at_init() -> None:
    towers = CrossModalSideAdapters(parse_modalities("TI"), HIDDEN, 16, LAYERS, 64)
    torch.testing.assert_close(towers.gate_weights(), torch.full((2, LAYERS, 3), 1 / 3))


def _tower_output_change(towers: torch.nn.Module, modalities: str, perturbed: str, watched: int) -> float:
    states = random_states(modalities)
    base = towers(states)[:, watched]
    states[perturbed] = states[perturbed] + torch.randn_like(states[perturbed])
    return (towers(states)[:, watched] - base).abs().max().item()


def test_indsan_has_no_cross_modal_terms() -> None:
    torch.manual_seed(0)
    towers = CrossModalSideAdapters(parse_modalities("TIVA"), HIDDEN, 16, LAYERS, 64, cross=False)
    randomize_gates(towers)
    assert towers.gate_logits.shape == (4, LAYERS, 2)
    for other in ("image", "video", "audio"):
        assert _tower_output_change(towers, "TIVA", other, watched=0) == 0.0
    assert _tower_output_change(towers, "TIVA", "text", watched=0) > 1e-3


def test_crossan_has_cross_modal_terms() -> None:
    torch.manual_seed(0)
    towers = CrossModalSideAdapters(parse_modalities("TIVA"), HIDDEN, 16, LAYERS, 64, cross=True)
    for other in ("image", "video", "audio"):
        assert _tower_output_change(towers, "TIVA", other, watched=0) > 1e-3


def test_iisan_gates_half_at_init_and_count() -> None:
    towers = IISANSideAdapters(parse_modalities("TIVA"), HIDDEN, 16, LAYERS, 64)
    torch.testing.assert_close(towers.intra_gates(), torch.full((4, LAYERS), 0.5))
    torch.testing.assert_close(towers.inter_gates(), torch.full((LAYERS, 4), 0.5))
    assert towers.intra_gate_logits.numel() + towers.inter_gate_logits.numel() == 56
    values = towers.gate_values()
    assert list(values) == ["text", "image", "video", "audio", "inter"]
    assert values["text"].shape == (LAYERS, 2) and values["inter"].shape == (LAYERS, 5)
    for v in values.values():
        torch.testing.assert_close(v.sum(-1), torch.ones(LAYERS))


def test_iisan_intra_towers_are_independent_inter_reads_all() -> None:
    torch.manual_seed(0)
    towers = IISANSideAdapters(parse_modalities("TIV"), HIDDEN, 16, LAYERS, 64)
    assert _tower_output_change(towers, "TIV", "image", watched=0) == 0.0  # text intra tower
    assert _tower_output_change(towers, "TIV", "image", watched=3) > 1e-3  # inter tower


# --- fusions ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_momef_keeps_exactly_k_and_renormalises(k: int) -> None:
    torch.manual_seed(0)
    fusion = MOMEF(4, 64, topk=k)
    towers = torch.randn(8, 4, 64)
    w = fusion.weights(towers)
    assert ((w > 0).sum(-1) == k).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(8))
    # The kept ones are the top-k gate scores, weighted by a softmax over the kept scores.
    scores = fusion.gate(towers.flatten(1))
    top = scores.topk(k, dim=-1)
    torch.testing.assert_close(w.gather(1, top.indices), torch.softmax(top.values, -1))
    assert fusion(towers).shape == (8, 64)


def test_gated_fusions_drop_missing_modalities() -> None:
    torch.manual_seed(0)
    towers = torch.randn(3, 4, 64)
    available = torch.tensor(
        [[True, False, True, True], [True, True, True, True], [False, False, False, True]]
    )
    for fusion in (MOMEF(4, 64, topk=2), DynamicGatedFusion(4, 64), StaticGatedFusion(4, 64)):
        w = fusion.weights(towers, available)
        assert (w[~available] == 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(3))
    w = MOMEF(4, 64, topk=2).weights(towers, available)
    assert ((w > 0).sum(-1) == torch.tensor([2, 2, 1])).all()
    # Nothing available: treated as all available, never NaN.
    none = torch.zeros(1, 4, dtype=torch.bool)
    assert torch.isfinite(MOMEF(4, 64, topk=2)(towers[:1], none)).all()


def test_concat_ignores_a_missing_towers_values() -> None:
    torch.manual_seed(0)
    fusion = ConcatFusion(4, 64)
    towers = torch.randn(2, 4, 64)
    available = torch.tensor([[True, False, True, True]] * 2)
    other = towers.clone()
    other[:, 1] += 5.0
    torch.testing.assert_close(fusion(towers, available), fusion(other, available))


def test_static_gated_is_item_independent() -> None:
    fusion = StaticGatedFusion(3, 64)
    assert sum(p.numel() for p in fusion.parameters()) == 3
    w = fusion.weights(torch.randn(4, 3, 64))
    torch.testing.assert_close(w, torch.full((4, 3), 1 / 3))


# --- SASRec -------------------------------------------------------------------------------


def test_sasrec_is_causal() -> None:
    torch.manual_seed(0)
    encoder = SASRec(64, max_len=10).eval()
    x = torch.randn(2, 10, 64)
    valid = torch.ones(2, 10, dtype=torch.bool)
    base = encoder(x, valid)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 64)
    out = encoder(changed, valid)
    torch.testing.assert_close(out[:, :6], base[:, :6])
    assert not torch.allclose(out[:, 6:], base[:, 6:])


def test_sasrec_masks_padding() -> None:
    torch.manual_seed(0)
    encoder = SASRec(64, max_len=10).eval()
    x = torch.randn(1, 10, 64)
    valid = torch.tensor([[False] * 4 + [True] * 6])  # left padding
    base = encoder(x, valid)
    changed = x.clone()
    changed[:, :4] = torch.randn(1, 4, 64)
    torch.testing.assert_close(encoder(changed, valid)[:, 4:], base[:, 4:])
    # Without the padding mask the same change leaks into the real positions.
    everything = torch.ones_like(valid)
    assert not torch.allclose(encoder(changed, everything)[:, 4:], encoder(x, everything)[:, 4:])
    assert torch.isfinite(base).all()


def test_sasrec_rejects_too_long_sequences() -> None:
    with pytest.raises(ValueError):
        SASRec(64, max_len=10)(torch.randn(1, 11, 64), torch.ones(1, 11, dtype=torch.bool))


# --- whole models -------------------------------------------------------------------------


def _forward(model: torch.nn.Module, modalities: str, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.tensor([[0, 1, 2, 3], [0, 0, 4, 5]])
    valid = torch.tensor([[True, True, True, True], [False, False, True, True]])
    if model.config.method == "id-sasrec":
        return model(index, valid, torch.arange(1, n + 1))
    return model(index, valid, random_states(modalities, n=n))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("method", [m for m in METHODS if m != "id-sasrec"])
@pytest.mark.parametrize("modalities", SUBSETS)
def test_forward_shapes(method: str, fusion: str, modalities: str) -> None:
    config = tiny_config(method, modalities, fusion=fusion)
    if method == "iisan" and modalities != "TI":
        with pytest.raises(ValueError, match="iisan-e"):
            build_model(config)
        return
    torch.manual_seed(0)
    model = build_model(config)
    users, items = _forward(model, modalities)
    assert items.shape == (6, 64) and users.shape == (2, 4, 64)
    n_towers = len(modalities) + (1 if method.startswith("iisan") else 0)
    assert model.item_encoder.tower_outputs(random_states(modalities)).shape == (5, n_towers, 64)
    (users.sum() + items.sum()).backward()  # every path is differentiable
    assert all(p.grad is not None for n, p in model.named_parameters() if "gate_logits" in n)


def test_id_sasrec_forward_and_padding_row() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config("id-sasrec"))
    users, items = _forward(model, "")
    assert items.shape == (6, 64) and users.shape == (2, 4, 64)
    table = model.item_encoder.embedding.weight
    assert table.shape == (21, 64) and (table[0] == 0).all()
    assert model.gate_values() == {}


@pytest.mark.parametrize("method", ["crossan", "iisan-e", "id-sasrec"])
def test_same_seed_same_outputs(method: str) -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(tiny_config(method)).eval()
        outputs.append(_forward(model, "TIVA"))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_gate_values_for_figure_4() -> None:
    model = build_model(tiny_config("crossan", "TIVA"))
    values = model.gate_values()
    assert set(values) == {"text", "image", "video", "audio"}
    assert all(v.shape == (LAYERS, 5) and not v.requires_grad for v in values.values())
    assert set(build_model(tiny_config("iisan-e", "TIA")).gate_values()) == {
        "text",
        "image",
        "audio",
        "inter",
    }
    assert build_model(tiny_config("indsan", "TI")).gate_values()["text"].shape == (LAYERS, 2)


def test_missing_modality_gets_zero_weight_and_finite_embedding() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config("crossan", "TIVA", topk=2)).eval()
    states = random_states("TIVA", n=3)
    has = {m: torch.ones(3, dtype=torch.bool) for m in states}
    has["image"][1] = False
    states["image"][1] = 0.0  # what the cache holds for invalid media
    encoder = model.item_encoder
    available = encoder.availability(states, has)
    w = encoder.fusion.weights(encoder.tower_outputs(states), available)
    assert w[1, 1] == 0 and torch.isfinite(model.encode_items(states, has)).all()
    # IISAN-E: the inter tower stays available while any modality is.
    iisan = build_model(tiny_config("iisan-e", "TI")).item_encoder
    has2 = {"text": torch.tensor([True, False]), "image": torch.tensor([False, False])}
    assert iisan.availability(random_states("TI", n=2), has2).tolist() == [
        [True, False, True],
        [False, False, False],
    ]


def test_half_precision_states_are_accepted() -> None:
    model = build_model(tiny_config("indsan", "TI"))
    states = {m: s.half() for m, s in random_states("TI").items()}
    assert model.encode_items(states).dtype == torch.float32


def test_unknown_method_and_fusion_are_rejected() -> None:
    with pytest.raises(ValueError):
        build_model(tiny_config("lora"))
    with pytest.raises(ValueError):
        build_model(tiny_config("crossan", fusion="attention"))
    with pytest.raises(ValueError):
        build_model(tiny_config("crossan", "TI", topk=3))
    with pytest.raises(ValueError, match=r"\[N, 7, 32\]"):
        build_model(tiny_config("crossan", "TI")).encode_items(
            {m: torch.zeros(2, 5, HIDDEN) for m in ("text", "image")}
        )
