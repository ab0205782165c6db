"""The captions of the paper's tables and figures (and those beyond it), with the modalities
of a dataset that has fewer than four named in them."""

from __future__ import annotations

from crossan.runs.vocabulary import ALL_LETTERS, MODALITY_WORDS

# Each target's caption, with the modalities as placeholders: {legend} "T, I, V, A: text, image,
# video, audio", {pair} "text and image", {sources} "T, I, V, A" (see target_caption).
CAPTION_TEMPLATES: dict[str, str] = {
    "table1": "Performance comparison between INDSAN (independent side adapters) and CROSSAN "
              "(cross-modal side adapters), and the mutual information between their {pair} "
              "tower outputs.",
    "table3": "Performance comparison of CROSSAN with raw modalities ({legend}) against IISAN "
              "and its extension IISAN-E.",
    "table4": "Efficiency: TT training time (s per epoch), GM peak memory (MiB), TP trainable "
              "parameters; lower is better; improvement over IISAN-E.",
    "table5": "Ablation on the fusion method: MOMEF, dynamic (D-Gated) and static (S-Gated) "
              "gated fusion, and concatenation.",
    "table6": "Ablation: cross-modal (CROSSAN) vs independent (INDSAN) side adapters.",
    "table7": "Top-K experts of CROSSAN's MOMEF.",
    "table8": "Comparison with multimodal graph recommenders (MMRecs) on the same splits, item "
              "content and full-ranking evaluation.",
    "figure3": "Adapter hidden size vs test HR@10 for IISAN-E and CROSSAN; a ring marks each method's best h "
               "(its highest mean; the smaller h on a tie).",
    "figure4": "CROSSAN's learned gates per tower: layers (bottom 0) x sources (H: the tower's "
               "own frozen hidden state; {sources}: the previous adapter layer's output of that "
               "tower, zeros before layer 0 unless training.layer0_previous is frozen).",
    "figure5": "CROSSAN's sensitivity: adapter hidden size (top) and learning rate (bottom) vs "
               "test HR and NDCG at 10 and 20.",
    "tableB1": "Beyond the paper: CROSSAN with and without an auxiliary loss aligning its modality towers' "
               "outputs (CMSA, SDA's cross-modal structural alignment, or InfoNCE), and the mutual "
               "information between each run's first two tower outputs ({pair} for T+I).",
    "tableB2": "Beyond the paper: CROSSAN's cross-modal gates over one shared adapter tower with "
               "modality-gated low-rank experts (CROSSAN-MoDA, after SDA's MoDA) vs CROSSAN's tower per "
               "modality: TP trainable parameters (here and at the paper's configuration), TT training "
               "time (s per epoch) and test metrics.",
    "tableB3": "Beyond the paper: the long tail. Test HR@10 and NDCG@10 of the users whose target item "
               "is a head, torso or tail item by its number of training interactions (head: the fewest "
               "most popular items holding a third of them; tail: the fewest least popular holding a third).",
    "figureB1": "Beyond the paper: test HR@10 by the popularity of the target item (head, torso, tail "
                "by training interactions), one bar per method of Table B3.",
}
# Targets whose caption names the modalities itself; the others get a sentence naming the
# dataset's when it has fewer than four.
_CAPTIONS_NAMING_MODALITIES = ("table3",)


def modality_legend(letters: str) -> str:
    """``"TI" -> "T, I: text, image"``."""
    return f"{', '.join(letters)}: {modality_words(letters)}"


def modality_words(letters: str) -> str:
    """``"TV" -> "text, video"``."""
    return ", ".join(MODALITY_WORDS[letter] for letter in letters)


def target_caption(target: str, dataset_letters: str = ALL_LETTERS, target_letters: str = ALL_LETTERS) -> str:
    """The caption of ``target`` for a dataset with ``dataset_letters`` whose target uses
    ``target_letters`` (Table 1's pair, Figure 4's towers); the paper's caption for all four."""
    pair = target_letters[:2] if target == "table1" else "TI"
    caption = CAPTION_TEMPLATES[target].format(
        legend=modality_legend(dataset_letters), pair=" and ".join(MODALITY_WORDS[letter] for letter in pair),
        sources=", ".join(target_letters if target == "figure4" else ALL_LETTERS),
    )
    if dataset_letters != ALL_LETTERS and target not in _CAPTIONS_NAMING_MODALITIES:
        caption += f" Modalities: {modality_legend(dataset_letters)} (the dataset's own)."
    return caption


CAPTIONS: dict[str, str] = {target: target_caption(target) for target in CAPTION_TEMPLATES}
