"""End-to-end baselines (encoders in the loop): the paper's parameter counts, which weights an
optimiser step moves, LoRA's exact identity at step 0, the Houlsby adapter's arithmetic, and
masked covers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from crossan.cli import build_parser, handler_of
from crossan.models.e2e.houlsby import AdaptedProjection, add_houlsby_adapters
from crossan.models.e2e.item_encoder import (
    EndToEndConfig,
    ItemBatch,
    Standardize,
    build_e2e_model,
)
from crossan.models.params import paper_configuration_count
from crossan.models.trainable import count_trainable

PAPER_TP = {"fft": 194_897_216, "adapter": 38_017_088, "lora": 37_992_512}  # Table 4
SIDE, TOKENS, ITEM_DIM = 32, 8, 64


def tiny_backbones(seed: int = 0) -> tuple[BertModel, ViTModel]:
    """A 2-layer BERT and ViT (hidden 16): the same classes as the paper's checkpoints."""
    torch.manual_seed(seed)
    shape = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
    bert = BertModel(BertConfig(vocab_size=50, max_position_embeddings=TOKENS, **shape))
    vit = ViTModel(ViTConfig(image_size=SIDE, patch_size=16, **shape))
    return bert.eval(), vit.eval()


def item_batch(n: int, has_image: list[bool] | None = None, seed: int = 1) -> ItemBatch:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (n, TOKENS), generator=generator)
    ids[:, 0] = 2  # [CLS]
    text = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    pixels = torch.randn(n, 3, SIDE, SIDE, generator=generator)
    mask = torch.tensor(has_image if has_image is not None else [True] * n)
    return ItemBatch(text, pixels, mask)


def build(method: str, hidden: int = 4, seed: int = 0):
    bert, vit = tiny_backbones(seed)
    torch.manual_seed(seed)
    return build_e2e_model(EndToEndConfig.of(method, hidden, lora_alpha=2.0), bert, vit).eval()


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("method", ["fft", "adapter", "lora"])
def test_paper_configuration_counts(method: str) -> None:
    assert paper_configuration_count(method, "TI", 512) == PAPER_TP[method]


@pytest.mark.parametrize("method", ["fft", "adapter", "lora"])
def test_params_command_prints_the_papers_count(method: str, capsys) -> None:
    args = build_parser().parse_args(["params", "--method", method])
    assert handler_of(args)(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(PAPER_TP[method])


def test_counts_follow_the_formula_at_other_sizes() -> None:
    heads = 2 * (768 * 64 + 64) + (128 * 64 + 64) + 100_224
    for h in (64, 1024):
        assert paper_configuration_count("adapter", "TI", h) == 48 * (2 * 768 * h + h + 768) + heads
        assert paper_configuration_count("lora", "TI", h) == 48 * (2 * 768 * h + 768) + heads
    assert paper_configuration_count("fft", "TI", 64) == PAPER_TP["fft"]  # h does not apply


def test_poolers_are_removed_and_not_counted() -> None:
    model = build("fft")
    encoder = model.item_encoder
    assert encoder.text.backbone.pooler is None and encoder.image.backbone.pooler is None
    bert, vit = tiny_backbones()
    backbone_weights = sum(p.numel() for n, p in (*bert.named_parameters(), *vit.named_parameters())
                           if not n.startswith("pooler."))
    others = count_trainable(encoder.text.head) + count_trainable(encoder.image.head) + count_trainable(
        encoder.fusion) + count_trainable(model.sequence_encoder)
    assert count_trainable(model) == backbone_weights + others


def test_text_and_image_only() -> None:
    with pytest.raises(ValueError, match="text\\+image"):
        paper_configuration_count("lora", "TIV", 512)


# ---------------------------------------------------------------- what a step moves


def one_step(model, batch: ItemBatch) -> None:
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model.encode_items(batch).square().sum()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("method", ["adapter", "lora"])
def test_frozen_weights_do_not_move_and_the_new_ones_do(method: str) -> None:
    model = build(method)
    bert, vit = tiny_backbones()
    pretrained = {**{f"text.{k}": v for k, v in bert.state_dict().items()},
                  **{f"image.{k}": v for k, v in vit.state_dict().items()}}
    one_step(model, item_batch(6))
    encoder = model.item_encoder
    state = {**{f"text.{k}": v for k, v in encoder.text.backbone.state_dict().items()},
             **{f"image.{k}": v for k, v in encoder.image.backbone.state_dict().items()}}
    new = {name for name in state if ".adapter." in name or ".lora_" in name}
    assert new and all(name not in pretrained for name in new)
    moved_pretrained = 0
    for name, value in state.items():
        if name in new:
            continue
        key = name if name in pretrained else (  # a wrapped module: its weights one level down
            name.replace(".projection.", ".").replace(".base_layer.", "."))
        assert key in pretrained, name
        if torch.equal(value, pretrained[key]):
            continue
        # LoRA trains the query/value biases (the paper's count includes them), nothing else
        assert method == "lora" and name.endswith(".base_layer.bias"), name
        moved_pretrained += 1
    assert moved_pretrained == (8 if method == "lora" else 0)  # 2 encoders x 2 layers x q, v
    trained = dict(model.named_parameters())
    assert all(trained[n].requires_grad for n in trained if ".adapter." in n or ".lora_" in n)
    lora_b = [p for n, p in trained.items() if ".lora_B." in n]
    adapter_up = [p for n, p in trained.items() if n.endswith(".adapter.up.weight")]
    assert all(p.abs().sum() > 0 for p in lora_b + adapter_up)  # they did move
    assert len(adapter_up if method == "adapter" else lora_b) == 8


def test_full_finetuning_moves_the_encoder_weights() -> None:
    model = build("fft")
    before = copy.deepcopy(model.item_encoder.state_dict())
    one_step(model, item_batch(6))
    after = model.item_encoder.state_dict()
    layer_weights = [n for n in after if ".layer" in n and n.endswith("weight")]
    assert len(layer_weights) > 20
    assert all(not torch.equal(after[n], before[n]) for n in layer_weights)
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- LoRA at step 0


def test_lora_with_zero_b_gives_exactly_the_frozen_item_embedding() -> None:
    model = build("lora", hidden=4)
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if ".lora_B." in n)
    assert any(torch.count_nonzero(p) > 0 for n, p in model.named_parameters() if ".lora_A." in n)
    batch = item_batch(5, has_image=[True, False, True, True, True])
    frozen_bert, frozen_vit = tiny_backbones()  # the same pretrained weights, no LoRA
    frozen_bert.pooler = frozen_vit.pooler = None
    encoder = model.item_encoder
    with torch.no_grad():
        text = F.gelu(encoder.text.head(frozen_bert(**batch.text).last_hidden_state[:, 0]))
        image = torch.zeros_like(text)  # ViT runs on the covered rows only, in both models
        covered = batch.pixels[batch.has_image]
        image[batch.has_image] = F.gelu(encoder.image.head(frozen_vit(pixel_values=covered).last_hidden_state[:, 0]))
        expected = encoder.fusion(torch.stack([text, image], 1), torch.stack(
            [torch.ones(5, dtype=torch.bool), batch.has_image], 1))
        assert torch.equal(model.encode_items(batch), expected)


# ---------------------------------------------------------------- Houlsby adapter arithmetic


def test_adapted_projection_is_the_frozen_output_plus_the_bottleneck_residual() -> None:
    projection = torch.nn.Linear(2, 2)
    adapted = AdaptedProjection(projection, hidden=1)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        projection.bias.copy_(torch.tensor([0.0, 1.0]))
        adapted.adapter.down.weight.copy_(torch.tensor([[1.0, 1.0]]))
        adapted.adapter.down.bias.copy_(torch.tensor([-1.0]))
        adapted.adapter.up.weight.copy_(torch.tensor([[2.0], [-1.0]]))
        adapted.adapter.up.bias.copy_(torch.tensor([0.0, 0.5]))
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    # row 1: p = [1, 3]; relu(1 + 3 - 1) = 3; up = [6, -3 + 0.5]     -> [7, 0.5]
    # row 2: p = [-1, -1]; relu(-1 - 1 - 1) = 0; up = [0, 0.5] (bias) -> [-1, -0.5]
    assert torch.equal(adapted(x), torch.tensor([[7.0, 0.5], [-1.0, -0.5]]))


def test_adapters_sit_after_both_output_projections_of_every_layer() -> None:
    bert, vit = tiny_backbones()
    reference = copy.deepcopy(bert)
    add_houlsby_adapters(bert, hidden=3)
    add_houlsby_adapters(vit, hidden=3)
    for layer in bert.encoder.layer:
        assert isinstance(layer.attention.output.dense, AdaptedProjection)
        assert isinstance(layer.output.dense, AdaptedProjection)
    for layer in vit.layers:
        assert isinstance(layer.attention.o_proj, AdaptedProjection)
        assert isinstance(layer.mlp.fc2, AdaptedProjection)
    # BERT's attention output block: LayerNorm(dense(h) + residual(dense(h)) + input), by hand
    block, frozen = bert.encoder.layer[0].attention.output, reference.encoder.layer[0].attention.output
    torch.manual_seed(3)
    for p in block.dense.adapter.parameters():
        p.data.normal_()
    hidden, skip = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    dense = frozen.dense(hidden)
    adapter = block.dense.adapter
    residual = adapter.up(torch.relu(adapter.down(dense)))
    expected = frozen.LayerNorm(dense + residual + skip)
    assert torch.allclose(block(hidden, skip), expected, atol=1e-6)


# ---------------------------------------------------------------- masked covers


@pytest.mark.parametrize("method", ["fft", "adapter", "lora"])
def test_masked_covers_stay_zero_and_never_reach_vit(method: str) -> None:
    model = build(method)
    batch = item_batch(4, has_image=[True, False, False, True])
    batch.pixels[~batch.has_image] = float("nan")  # would poison everything if ViT saw it
    towers = model.item_encoder.tower_outputs(batch)
    assert torch.equal(towers[~batch.has_image, 1], torch.zeros(2, ITEM_DIM))
    assert torch.isfinite(towers).all() and (towers[batch.has_image, 1] != 0).any()
    items = model.encode_items(batch)
    assert torch.isfinite(items).all()
    # no cover in the batch at all: ViT gets no gradient
    model.zero_grad()
    model.encode_items(item_batch(3, has_image=[False] * 3)).sum().backward()
    vit = model.item_encoder.image.backbone
    assert all(p.grad is None for p in vit.parameters())


# ---------------------------------------------------------------- [CLS] standardisation


def test_standardize_is_the_exact_identity_until_fitted_and_holds_no_parameters() -> None:
    x = torch.randn(5, 3)
    standardize = Standardize(3)
    assert torch.equal(standardize(x), x)
    assert count_trainable(standardize) == 0 and sum(p.numel() for p in standardize.parameters()) == 0
    model, states = build("lora"), torch.randn(4, 16)
    for name in ("text", "image"):  # the towers are built unfitted
        assert torch.equal(getattr(model.item_encoder, name).standardize(states), states)


def test_standardize_fitted_by_hand() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [5.0, 5.0, 2.0]])  # columns 2 and 3 constant
    standardize = Standardize(3)
    standardize.fit(x)
    std = (8.0 / 3.0) ** 0.5  # population std of 1, 3, 5
    expected = torch.tensor([[-2.0 / std, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0 / std, 0.0, 0.0]])
    assert torch.allclose(standardize(x), expected, atol=1e-6)
    assert torch.equal(standardize.mean, torch.tensor([3.0, 5.0, 2.0]))


# ---------------------------------------------------------------- head initialisation (IISAN)


def test_the_image_head_is_xavier_normal_with_zero_bias_as_iisans_and_the_text_head_pytorchs() -> None:
    from crossan.models.adapters import xavier_normal_head

    # Xavier-normal: std = sqrt(2 / (fan_in + fan_out)); at 768 -> 64 that is sqrt(2 / 832) = 0.049029
    torch.manual_seed(0)
    head = xavier_normal_head(torch.nn.Linear(768, 64))
    assert torch.count_nonzero(head.bias) == 0
    assert abs(head.weight.std().item() - 0.049029) < 0.02 * 0.049029  # 49,152 draws: ~0.3% noise
    assert abs(head.weight.mean().item()) < 1e-3
    for method in ("fft", "adapter", "lora"):
        encoder = build(method).item_encoder
        image, text = encoder.image.head, encoder.text.head  # hidden 16 -> 64: std sqrt(2/80) = 0.1581
        assert torch.count_nonzero(image.bias) == 0, method
        assert abs(image.weight.std().item() - 0.1581) < 0.15 * 0.1581, method  # 1,024 draws
        # the text head keeps nn.Linear's default: uniform within 1/sqrt(fan_in) = 0.25, bias too
        assert text.weight.abs().max() <= 0.25 and torch.count_nonzero(text.bias) > 0, method
