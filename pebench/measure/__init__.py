"""What is measured on a model: accuracy tallies over a streamed pass, the tuned position scale,
attention diagnostics, and cost (params, FLOPs, timing, memory). Knows nothing of suites or cells.

Enters: models (:mod:`pebench.models`), batches from a :class:`~pebench.data.stream.SplitStream`, a mode.
Leaves: per-cell measurements (counts, metrics, timing, statistics) that the runner puts into records.
"""
