"""The `pebench` command line: the last stage, the only one that may import every other.

Enters: argv. Leaves: one-row or YAML suites handed to :mod:`pebench.runner`, reports and gates from
:mod:`pebench.reports`, tables on the terminal, an exit code (2: bad input, one line, no traceback).
"""

from pebench.cli.app import app, main

__all__ = ["app", "main"]
