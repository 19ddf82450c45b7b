"""The one exception type the command line turns into a one-line message and exit code 2."""


class PebenchError(Exception):
    """Bad input: the message names the problem and how to fix it, on one line."""
