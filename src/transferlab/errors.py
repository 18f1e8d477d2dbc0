"""The one exception type that reaches the user as a single line (exit code 2)."""


class TransferlabError(Exception):
    """A problem with the user's input or environment, stated with its fix.

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback.
    Raise it early, before any run directory exists, so no partial result is left behind.
    """
