"""Files: atomic output (a temporary name in the same folder, then rename), content hashes, the
cache folder and string arrays for .npz files."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np

from molgen.errors import MolgenError


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that its folder exists and is writable."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise MolgenError(f"{path}: is a folder; give a file name")
    if folder.exists() and not folder.is_dir():
        raise MolgenError(f"{path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise MolgenError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise MolgenError(f"{path}: output folder {folder} is not writable")
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import: os.umask can only be read by setting it


def _mkstemp(path: Path) -> tuple[int, str]:
    """A new hidden temporary file beside ``path`` with the permissions of a plain ``open`` (mkstemp makes it 0600)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise MolgenError(f"{path}: cannot write in {path.parent}: {err.strerror}") from None
    os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it.

    Readers see either the previous file or the complete new one, never a partial file.
    """
    path = check_output_path(path)
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write with any library; rename it to ``path`` on success."""
    path = check_output_path(path)
    fd, tmp = _mkstemp(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise MolgenError(f"{path}: no such file") from None
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$MOLGEN_CACHE_DIR`` or ``~/.cache/molgen``."""
    return Path(os.environ.get("MOLGEN_CACHE_DIR", Path.home() / ".cache" / "molgen"))


def pack_strings(strings: Sequence[str]) -> np.ndarray:
    """Strings as one uint8 array (newline-separated UTF-8), for .npz files without pickles."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def unpack_strings(array: np.ndarray) -> list[str]:
    """The strings of ``pack_strings``."""
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []
