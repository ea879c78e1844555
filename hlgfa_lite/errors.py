"""One exception type for every mistake a user can fix: the CLI prints its message as one line, exit code 2."""


class HLGFAError(Exception):
    """A problem with the user's input, files or environment; the message says what to do."""


def named(names: list[str], most: int = 3) -> str:
    """The first few of ``names`` for a one-line message: "a.png, b.png, c.png, ..."."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")
