"""``python -m pipelines.status``: where each stream stands, how the last sync went, and whether
the destination's data is fresh enough (``--max-age``)."""
