"""Molecule files by extension: ``.csv`` (every column), ``.smi`` (SMILES and a name), ``.sdf`` (a
2-D structure per molecule, the other columns as SD tags). Written atomically, like every output.

Rows are dicts with a ``SMILES`` key. A row without a molecule (an invalid draw: empty or None
SMILES) is a CSV line like any other, but has no structure to put in a ``.smi`` or ``.sdf`` file:
there it is left out and counted in ``MoleculeWriter.skipped``.
"""
from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import IO, Iterator, Sequence

from molgen.errors import MolgenError
from molgen.files import atomic_open, check_output_path

FORMATS = (".csv", ".smi", ".sdf")


def output_format(path: str | os.PathLike) -> str:
    """The format of a writable output path from its extension; MolgenError otherwise."""
    suffix = check_output_path(path).suffix.lower()
    if suffix not in FORMATS:
        raise MolgenError(f"{path}: unknown molecule file type {suffix or '(no extension)'!r}; use {', '.join(FORMATS)}")
    return suffix


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


class MoleculeWriter:
    """Writes rows to an open text handle in one of FORMATS; ``written`` and ``skipped`` count rows."""

    def __init__(self, handle: IO[str], fmt: str, columns: Sequence[str], name_column: str | None = None) -> None:
        if "SMILES" not in columns:
            raise MolgenError(f"a molecule file needs a SMILES column, not only {', '.join(columns)}")
        self.handle, self.fmt, self.columns, self.name_column = handle, fmt, tuple(columns), name_column
        self.written = self.skipped = 0
        if fmt == ".csv":
            self._csv = csv.writer(handle)
            self._csv.writerow(self.columns)

    def write(self, row: dict) -> None:
        """Write one row (a dict with at least a SMILES key)."""
        smiles = row.get("SMILES") or ""
        if self.fmt == ".csv":
            self._csv.writerow([_text(row.get(c)) for c in self.columns])
        elif not smiles:
            self.skipped += 1
            return
        elif self.fmt == ".smi":
            self.handle.write(f"{smiles}\t{self._name(row)}\n")
        else:
            self.handle.write(_sd_record(smiles, self._name(row), {c: row.get(c) for c in self.columns if c != "SMILES"}))
        self.written += 1

    def _name(self, row: dict) -> str:
        if self.name_column is not None and row.get(self.name_column) not in (None, ""):
            return str(row[self.name_column])
        return f"molgen_{self.written + self.skipped + 1}"


def _sd_record(smiles: str, name: str, tags: dict) -> str:
    """One SD record: a 2-D molfile of ``smiles`` titled ``name``, then ``> <tag>`` blocks, then ``$$$$``."""
    from rdkit import Chem
    from rdkit.Chem import rdDepictor

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise MolgenError(f"{smiles!r}: RDKit cannot parse this SMILES, so it has no SD record")
    rdDepictor.Compute2DCoords(mol)
    mol.SetProp("_Name", name)
    lines = [Chem.MolToMolBlock(mol).rstrip("\n")]
    for key, value in tags.items():
        lines += [f">  <{key}>", _text(value), ""]
    return "\n".join(lines) + "\n$$$$\n"


@contextlib.contextmanager
def molecule_writer(
    path: str | os.PathLike, columns: Sequence[str], name_column: str | None = None
) -> Iterator[MoleculeWriter]:
    """A MoleculeWriter for ``path`` (format by extension); the file appears complete or not at all."""
    fmt = output_format(path)
    with atomic_open(path, "w", newline="" if fmt == ".csv" else None, encoding="utf-8") as handle:
        yield MoleculeWriter(handle, fmt, columns, name_column)


def write_molecules(
    path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None, name_column: str | None = None
) -> dict:
    """Write ``rows`` (dicts with a SMILES key) to ``path`` by extension; {"written", "skipped"}."""
    if columns is None:
        columns = list(rows[0]) if rows else ["SMILES"]
    with molecule_writer(path, columns, name_column) as writer:
        for row in rows:
            writer.write(row)
    return {"written": writer.written, "skipped": writer.skipped}
