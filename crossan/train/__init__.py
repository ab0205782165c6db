"""Stage 2 training pieces: the in-batch debiased loss and full-ranking evaluation metrics."""
