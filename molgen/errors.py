"""The one exception type for mistakes a user can make (bad file, unknown token, wrong checkpoint),
and the one check of a number of molecules asked for."""


class MolgenError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


def check_molecule_count(n: int, flag: str | None = None) -> int:
    """``n`` if it is a positive number of molecules, else a MolgenError (naming the CLI ``flag`` when given)."""
    if n <= 0:
        what = f"{flag} must be a positive number of molecules" if flag else "n must be a positive number of molecules"
        raise MolgenError(f"{what}, not {n}")
    return n
