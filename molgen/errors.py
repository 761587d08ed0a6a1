"""The one exception type for mistakes a user can make (bad file, unknown token, wrong checkpoint)."""


class MolgenError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""
