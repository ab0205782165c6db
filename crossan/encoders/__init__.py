"""Frozen foundation encoders: loading, input preparation, pooled hidden-state extraction."""
