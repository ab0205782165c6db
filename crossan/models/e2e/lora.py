"""LoRA on the query and value projections of a frozen encoder (paper Table 3, "LoRA"; Hu et al.
2021), through ``peft``.

Every layer's query and value ``nn.Linear`` gets ``W x + (alpha / r) B A x`` with ``A: [r, D]``
(Kaiming-uniform) and ``B: [D, r]`` (zeros), so at step 0 the encoder computes exactly what the
pretrained one does. The pretrained weights stay in place and frozen; the projections' biases are
trainable (``bias="lora_only"``), as in IISAN ``Code_Uncached/`` (its ``loralib`` layers leave
the bias trainable) and in the paper's count: 48 targets x (2 x 768 x 512 + 768) = 37,785,600.

``alpha`` defaults to 1, ``loralib``'s default that IISAN's code runs with (scale ``1/r``);
``peft``'s own default would be 8.
"""

from __future__ import annotations

from peft import LoraConfig, inject_adapter_in_model
from transformers import PreTrainedModel

# Names of the query/value projections per architecture (transformers 5 renamed ViT's to
# q_proj/v_proj); peft matches them as the last component of a module's path.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "BertModel": ("query", "value"),
    "ViTModel": ("q_proj", "v_proj"),
}


def add_lora(backbone: PreTrainedModel, rank: int, alpha: float = 1.0, dropout: float = 0.0) -> PreTrainedModel:
    """Freeze ``backbone`` and inject LoRA of rank ``rank`` into its query and value projections
    (in place; returned for chaining). Raises ValueError for an unknown architecture or when
    the targets are not exactly two per layer."""
    name = type(backbone).__name__
    if name not in LORA_TARGETS:
        raise ValueError(f"no LoRA targets for {name}; known: {', '.join(LORA_TARGETS)}")
    backbone.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(LORA_TARGETS[name]), bias="lora_only")
    backbone = inject_adapter_in_model(config, backbone)
    injected = sum(1 for path, _ in backbone.named_modules() if path.endswith(".lora_A"))
    expected = 2 * int(backbone.config.num_hidden_layers)
    if injected != expected:
        raise ValueError(f"{name}: LoRA reached {injected} projections, expected {expected}")
    return backbone
