"""Model inputs read from the feature store: pooled (n, d) blocks and per-turn (n, T, d) sequences."""
