"""The engine: the paper's setting and data, the models, training, measurements, the CPU numerics.
It imports nothing from the layers above it (stats, book, experiments, claims, cli)."""
