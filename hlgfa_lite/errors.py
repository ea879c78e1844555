"""One exception type for every mistake a user can fix: the CLI prints its message as one line, exit code 2."""


class HLGFAError(Exception):
    """A problem with the user's input, files or environment; the message says what to do."""
