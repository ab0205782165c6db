"""Datasets: the demo generator, MicroLens download, layout checks and interaction sequences."""
