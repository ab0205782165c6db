"""Stage 2 model classes: gates, fusions, masks, shapes, determinism (tiny 32-d inputs)."""

from __future__ import annotations

import math

import pytest
import torch

from crossan.models import ModelConfig, build_model, parse_modalities
from crossan.models.adapters import Adapter, CrossModalSideAdapters, IISANSideAdapters
from crossan.models.fusion import (
    MOMEF,
    ConcatFusion,
    DynamicGatedFusion,
    StaticGatedFusion,
)
from crossan.models.sasrec import SASRec
from crossan.runs.vocabulary import CACHED_STATE_METHODS, FUSIONS

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
    assert towers.gate_sources() == {m: ("H", "T", "I", "V", "A") for m in ("text", "image", "video", "audio")}
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
    towers = IISANSideAdapters(parse_modalities("TIVA"), HIDDEN, 16, LAYERS, 64, inter_gate="softmax")
    torch.testing.assert_close(towers.intra_gates(), torch.full((4, LAYERS), 0.5))
    w, w_prev = towers.inter_gate.weights()
    torch.testing.assert_close(w, torch.full((LAYERS, 4), 0.25))
    torch.testing.assert_close(w_prev, torch.ones(LAYERS))
    assert towers.intra_gate_logits.numel() + towers.inter_gate.gate_logits.numel() == 56
    values = towers.gate_values()
    assert list(values) == ["text", "image", "video", "audio", "inter"]
    assert values["text"].shape == (LAYERS, 2) and values["inter"].shape == (LAYERS, 5)
    for m in ("text", "image", "video", "audio"):
        torch.testing.assert_close(values[m].sum(-1), torch.ones(LAYERS))
    # the modality weights sum to 1, the previous inter output keeps weight 1
    torch.testing.assert_close(values["inter"].sum(-1), torch.full((LAYERS,), 2.0))

    iisan = IISANSideAdapters(parse_modalities("TI"), HIDDEN, 16, LAYERS, 64, inter_gate="iisan")
    assert iisan.inter_gate.gate_logits.shape == (LAYERS,)  # one gate per layer: 14 + 7 = 21
    w, w_prev = iisan.inter_gate.weights()
    torch.testing.assert_close(w, torch.full((LAYERS, 2), 0.5))
    with pytest.raises(ValueError, match="text and image"):
        IISANSideAdapters(parse_modalities("TIV"), HIDDEN, 16, LAYERS, 64, inter_gate="iisan")

    convex = IISANSideAdapters(parse_modalities("TIV"), HIDDEN, 16, LAYERS, 64, inter_gate="convex")
    randomize_gates(convex)
    torch.testing.assert_close(convex.gate_values()["inter"].sum(-1), torch.ones(LAYERS))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _adapter(adapter: Adapter, x: torch.Tensor) -> torch.Tensor:
    """``x + up(relu(down(x)))`` written out from the weights."""
    hidden = torch.clamp(adapter.down.weight @ x + adapter.down.bias, min=0.0)
    return x + adapter.up.weight @ hidden + adapter.up.bias


def _head(tower: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    dense, out = tower.head.dense, tower.head.out
    return out.weight @ (dense.weight @ x + dense.bias) + out.bias


def naive_iisan(towers: IISANSideAdapters, states: dict[str, torch.Tensor], rule: str, layer0: str) -> torch.Tensor:
    """Item by item, layer by layer, scalar gates as Python floats: the IISAN code's loop.

    ``rule``: "iisan" (``mm + g h_I + (1 - g) h_T``), "softmax" (``mm + sum_m w_m h_m``) or
    "convex" (``sum_m g_m/M h_m + (1 - mean g) mm``)."""
    modalities = towers.modalities
    n_items = states[modalities[0]].shape[0]
    intra_p = towers.intra_gate_logits.detach().tolist()
    inter_p = towers.inter_gate.gate_logits.detach().tolist()
    out = []
    for n in range(n_items):
        h = {m: states[m][n].double() for m in modalities}
        if layer0 == "zeros":
            prev = {m: torch.zeros(HIDDEN, dtype=torch.float64) for m in modalities}
            mm = torch.zeros(HIDDEN, dtype=torch.float64)
        else:
            prev = {m: h[m][0] for m in modalities}
            mm = sum(h[m][0] for m in modalities) / len(modalities)
        for k in range(LAYERS):
            for t, m in enumerate(modalities):
                g = _sigmoid(intra_p[t][k] / 0.1)
                prev[m] = _adapter(towers.intra[m].adapters[k], g * h[m][k] + (1 - g) * prev[m])
            if rule == "iisan":
                g = _sigmoid(inter_p[k] / 0.1)
                x = mm + g * h["image"][k] + (1 - g) * h["text"][k]
            elif rule == "softmax":
                exps = [math.exp(p / 0.1) for p in inter_p[k]]
                x = mm + sum(e / sum(exps) * h[m][k] for e, m in zip(exps, modalities))
            else:
                gs = [_sigmoid(p / 0.1) for p in inter_p[k]]
                x = sum(g / len(gs) * h[m][k] for g, m in zip(gs, modalities)) + (1 - sum(gs) / len(gs)) * mm
            mm = _adapter(towers.inter.adapters[k], x)
        out.append(torch.stack([*(_head(towers.intra[m], prev[m]) for m in modalities), _head(towers.inter, mm)]))
    return torch.stack(out)


@pytest.mark.parametrize(
    ("modalities", "rule", "layer0"),
    [("TI", "iisan", "zeros"), ("TIVA", "softmax", "zeros"), ("TIA", "convex", "frozen"), ("TI", "softmax", "frozen")],
)
def test_iisan_towers_match_a_naive_loop(modalities: str, rule: str, layer0: str) -> None:
    torch.manual_seed(0)
    towers = IISANSideAdapters(
        parse_modalities(modalities), HIDDEN, 16, LAYERS, 8, inter_gate=rule, layer0_previous=layer0
    ).double()
    randomize_gates(towers, seed=3)
    with torch.no_grad():  # adapters far from identity, so every term matters
        for name, p in towers.named_parameters():
            if "adapters" in name:
                p.normal_(0.0, 0.3)
    states = {m: s.double() for m, s in random_states(modalities, n=3).items()}
    torch.testing.assert_close(towers(states), naive_iisan(towers, states, rule, layer0), rtol=1e-12, atol=1e-12)


def test_iisan_e_softmax_equals_iisan_for_two_modalities() -> None:
    """IISAN-E's softmax over (T, I) is IISAN's sigmoid gate with one redundant logit."""
    torch.manual_seed(0)
    iisan = IISANSideAdapters(parse_modalities("TI"), HIDDEN, 16, LAYERS, 8, inter_gate="iisan").double()
    randomize_gates(iisan)
    iisan_e = IISANSideAdapters(parse_modalities("TI"), HIDDEN, 16, LAYERS, 8, inter_gate="softmax").double()
    state = {k: v for k, v in iisan.state_dict().items() if k != "inter_gate.gate_logits"}
    p = iisan.inter_gate.gate_logits.detach()
    state["inter_gate.gate_logits"] = torch.stack([torch.zeros_like(p), p], dim=-1)  # softmax([0, p]) = sigmoid(p)
    iisan_e.load_state_dict(state)
    states = {m: s.double() for m, s in random_states("TI").items()}
    torch.testing.assert_close(iisan_e(states), iisan(states), rtol=1e-12, atol=1e-12)


def naive_crossan(towers: CrossModalSideAdapters, states: dict[str, torch.Tensor], layer0: str) -> torch.Tensor:
    """Paper eq. 5 item by item: softmax over (own frozen state, every tower's previous output)."""
    modalities = towers.modalities
    logits = towers.gate_logits.detach().tolist()
    out = []
    for n in range(states[modalities[0]].shape[0]):
        h = {m: states[m][n].double() for m in modalities}
        prev = {m: torch.zeros(HIDDEN, dtype=torch.float64) if layer0 == "zeros" else h[m][0] for m in modalities}
        for k in range(LAYERS):
            new = {}
            for t, m in enumerate(modalities):
                exps = [math.exp(v / 0.1) for v in logits[t][k]]
                w = [e / sum(exps) for e in exps]
                sources = [prev[s] for s in modalities] if towers.cross else [prev[m]]
                x = w[0] * h[m][k] + sum(ws * src for ws, src in zip(w[1:], sources))
                new[m] = _adapter(towers.towers[m].adapters[k], x)
            prev = new
        out.append(torch.stack([_head(towers.towers[m], prev[m]) for m in modalities]))
    return torch.stack(out)


@pytest.mark.parametrize("layer0", ["zeros", "frozen"])
@pytest.mark.parametrize("cross", [True, False])
def test_crossan_and_indsan_match_a_naive_loop(layer0: str, cross: bool) -> None:
    torch.manual_seed(0)
    towers = CrossModalSideAdapters(
        parse_modalities("TIV"), HIDDEN, 16, LAYERS, 8, cross=cross, layer0_previous=layer0
    ).double()
    randomize_gates(towers, seed=2)
    states = {m: s.double() for m, s in random_states("TIV", n=3).items()}
    torch.testing.assert_close(towers(states), naive_crossan(towers, states, layer0), rtol=1e-12, atol=1e-12)


def test_layer0_zeros_ignores_the_previous_sources_at_layer_0() -> None:
    """With zeros before layer 0, only ``w_H * h[0]`` reaches the first adapter; with the
    frozen layer-0 state the other towers' layer-0 states leak in through the cross terms."""
    torch.manual_seed(0)
    zeros = CrossModalSideAdapters(parse_modalities("TI"), HIDDEN, 16, 1, 8, layer0_previous="zeros")
    frozen = CrossModalSideAdapters(parse_modalities("TI"), HIDDEN, 16, 1, 8, layer0_previous="frozen")
    frozen.load_state_dict(zeros.state_dict())
    states = {m: torch.randn(4, 1, HIDDEN) for m in ("text", "image")}
    changed = {"text": states["text"], "image": states["image"] * 3}
    torch.testing.assert_close(zeros(changed)[:, 0], zeros(states)[:, 0])  # text tower: no image term
    assert not torch.allclose(frozen(changed)[:, 0], frozen(states)[:, 0])
    with pytest.raises(ValueError, match="layer0_previous"):
        CrossModalSideAdapters(parse_modalities("TI"), HIDDEN, 16, 1, 8, layer0_previous="ones")


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


def _layer_norm(x: torch.Tensor, ln: torch.nn.LayerNorm, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * ln.weight + ln.bias


def naive_microlens_encoder(encoder: SASRec, x: torch.Tensor, valid: torch.Tensor, activation, eps: float):
    """MicroLens' ``TransformerEncoder`` (``Code/VideoRec/SASRec/model/modules.py``) written out
    from ``encoder``'s weights: LN(x + pos) with eps 1e-6, then per block post-LN attention
    (additive -1e9 mask on future and padding keys) and a post-LN FFN, block LN eps ``eps``."""
    batch, length, dim = x.shape
    heads = encoder.blocks[0].attn.n_heads
    d_k = dim // heads
    h = _layer_norm(x + encoder.positions.weight[:length], encoder.ln_in, 1e-6)
    allowed = torch.tril(valid[:, None, :].expand(batch, length, length))  # [B, query, key]
    mask = torch.where(allowed, 0.0, -1e9).to(x.dtype)[:, None]  # [B, 1, L, L]
    for block in encoder.blocks:
        w_q, w_k, w_v = block.attn.qkv.weight.split(dim, dim=0)
        q, k, v = ((h @ w.T).view(batch, length, heads, d_k).transpose(1, 2) for w in (w_q, w_k, w_v))
        attention = torch.softmax(q @ k.transpose(-2, -1) / d_k**0.5 + mask, dim=-1)
        heads_out = (attention @ v).transpose(1, 2).reshape(batch, length, dim)
        h = _layer_norm(h + heads_out @ block.attn.proj.weight.T, block.ln_attn, eps)
        ffn = activation(h @ block.ffn.fc.weight.T + block.ffn.fc.bias) @ block.ffn.out.weight.T + block.ffn.out.bias
        h = _layer_norm(h + ffn, block.ln_ffn, eps)
    return h


@pytest.mark.parametrize(("layout", "activation", "eps"), [
    ("microlens", torch.relu, 1e-6),
    ("gelu", torch.nn.functional.gelu, 1e-5),
])
def test_sasrec_matches_the_microlens_encoder(layout: str, activation, eps: float) -> None:
    torch.manual_seed(0)
    encoder = SASRec(16, max_len=6, layout=layout).double().eval()
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    valid = torch.tensor([[True] * 6, [False] * 2 + [True] * 4, [False] * 5 + [True]])  # left padding
    got = encoder(x, valid)
    want = naive_microlens_encoder(encoder, x, valid, activation, eps)
    torch.testing.assert_close(got[valid], want[valid], rtol=1e-10, atol=1e-10)  # padding rows are ignored
    assert encoder.blocks[0].ln_ffn.eps == eps and encoder.ln_in.eps == 1e-6


def test_sasrec_relu_and_gelu_layouts_differ_on_the_same_weights() -> None:
    torch.manual_seed(0)
    relu = SASRec(16, max_len=4).eval()
    gelu = SASRec(16, max_len=4, layout="gelu").eval()
    gelu.load_state_dict(relu.state_dict())  # same parameters: the layouts differ only in the function
    x, valid = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)
    assert not torch.allclose(relu(x, valid), gelu(x, valid), atol=1e-3)
    with pytest.raises(ValueError, match="layout"):
        SASRec(16, layout="pre-ln")


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
@pytest.mark.parametrize("method", [m for m in CACHED_STATE_METHODS if m != "id-sasrec"])
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


def test_iisan_image_head_out_is_xavier_normal_with_zero_bias_and_nothing_else_changes() -> None:
    torch.manual_seed(0)
    for modalities in (("text", "image"), ("text", "image", "video", "audio")):
        towers = IISANSideAdapters(modalities, dim=768, hidden=8, n_layers=2, item_dim=64)
        out = towers.intra["image"].head.out  # IISAN's cv_pre_fc: Xavier-normal, bias 0 (Code_Cached/run.py)
        assert torch.count_nonzero(out.bias) == 0
        assert abs(out.weight.std().item() - math.sqrt(2 / (768 + 64))) < 0.02 * 0.049029  # 0.049029
        # every other head layer keeps nn.Linear's default: |w| <= 1/sqrt(fan_in), non-zero bias
        others = [towers.intra[m].head.out for m in modalities if m != "image"] + [towers.inter.head.out] + [
            towers.intra[m].head.dense for m in modalities] + [towers.inter.head.dense]
        for linear in others:
            assert linear.weight.abs().max() <= 1 / math.sqrt(768) and torch.count_nonzero(linear.bias) > 0
    crossan = CrossModalSideAdapters(("text", "image"), dim=768, hidden=8, n_layers=2, item_dim=64)
    assert torch.count_nonzero(crossan.towers["image"].head.out.bias) > 0  # CROSSAN: PyTorch's default
