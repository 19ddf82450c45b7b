"""The exception types the command line turns into a one-line message instead of a traceback, and the
"did you mean" hint those messages share."""

import difflib


class PebenchError(Exception):
    """Bad input: the message names the problem and how to fix it, on one line (exit code 2)."""

    exit_code = 2


class RunFailed(PebenchError):
    """The input was fine but the run could not finish (e.g. a data worker died): exit code 1."""

    exit_code = 1


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known``, or '' when nothing is close."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
