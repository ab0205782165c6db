"""End-to-end baselines: BERT and ViT inside the training loop, text + image only.

The paper's Table 3/4 rows "Full Finetuning (T+I)", "Adapter (T+I)" and "LoRA (T+I)"
(IISAN ``Code_Uncached/``). Unlike the side adapters, these backpropagate through the
foundation models, so they read the raw inputs (tokenised titles and cover pixels) instead of
cached states:

* :mod:`~crossan.models.e2e.item_encoder`: each encoder's ``[CLS]`` last hidden state through
  ``Linear(D -> 64)`` + GELU, the two fused by ``Linear(128 -> 64)`` (concat fusion), then the
  same SASRec as every other method;
* :mod:`~crossan.models.e2e.full`: every encoder weight trainable;
* :mod:`~crossan.models.e2e.houlsby`: two Houlsby adapters per layer, encoders frozen;
* :mod:`~crossan.models.e2e.lora`: ``peft`` LoRA on the query and value projections.

The methods themselves (names, fixed modalities and fusion) are in
:mod:`crossan.runs.vocabulary`.
"""
