"""The project's one exception type.

Every failure a user can cause (bad input files, bad parameters, mismatched artifacts) raises
`BertforgeError` with a one-line message that names the file, row or parameter. Stage scripts and
the CLI turn it into that line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""


class BertforgeError(Exception):
    """A user-facing error with a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
