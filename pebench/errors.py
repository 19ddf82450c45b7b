"""The exception types the command line turns into a one-line message instead of a traceback."""


class PebenchError(Exception):
    """Bad input: the message names the problem and how to fix it, on one line (exit code 2)."""

    exit_code = 2


class RunFailed(PebenchError):
    """The input was fine but the run could not finish (e.g. a data worker died): exit code 1."""

    exit_code = 1
