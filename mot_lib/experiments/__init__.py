"""Experiments beyond the synthetic engine: real data (loaders, models, training), the predecessor paper's model
and table, and the sweeps (fair comparison, training schedule) that commit tables under data/."""
