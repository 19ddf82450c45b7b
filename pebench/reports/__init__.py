"""Everything made from result records: terminal tables and summaries, the report files (Markdown,
HTML with figures, CSV, JSON), published figures beside measured ones, findings, and the CI gate.

Enters: result records (:mod:`pebench.results`), a baseline file for the gate.
Leaves: tables, report files, a gate verdict. Reads records only: never runs a model.
"""
