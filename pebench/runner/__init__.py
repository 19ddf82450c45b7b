"""The cell runner: a suite (YAML, or the one-row suite of `pebench eval`, `tune`, `inspect` and
`profile`) expanded into keyed cells and run, resumably, one streamed pass per resolution.

Enters: a suite file or :class:`~pebench.runner.suite.Suite`, models by spec, a dataset spec, a device.
Leaves: result records (:mod:`pebench.results`), appended one JSON line per finished cell.
"""
