"""`python -m pebench.cli`: how torchrun starts pebench (one process per GPU)."""

from pebench.cli.app import main

main()
