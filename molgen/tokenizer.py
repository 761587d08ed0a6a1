"""SELFIES tokenizer: canonical SMILES <-> SELFIES tokens <-> integer ids, with a saved vocabulary.

The SELFIES semantic constraints are part of the tokenizer because they change what a token
string decodes to: ``strict`` (the selfies default, every string is a valid molecule) or
``relaxed`` (C, N and O may take one extra bond, so a malformed string decodes to a hypervalent
atom that RDKit rejects; docs/DESIGN.md §2.3). ``selfies`` keeps the setting in a process-global, so it
is set again before every encode/decode in whichever process runs it.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Sequence

import selfies as sf
from rdkit import Chem, RDLogger

from molgen.errors import MolgenError
from molgen.files import atomic_open

RDLogger.DisableLog("rdApp.*")

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
CONSTRAINTS = ("strict", "relaxed")
_RELAXED_EXTRA = {"C": 5, "N": 4, "O": 3}
_active_constraints: str | None = None


def constraint_table(name: str) -> dict[str, int]:
    """Return the selfies bond-capacity table for ``strict`` or ``relaxed``."""
    if name not in CONSTRAINTS:
        raise MolgenError(f"unknown SELFIES constraints {name!r}; choose one of {', '.join(CONSTRAINTS)}")
    table = dict(sf.get_preset_constraints("default"))
    if name == "relaxed":
        table.update(_RELAXED_EXTRA)
    return table


def use_constraints(name: str) -> None:
    """Make ``name`` the active selfies constraint set in this process (cheap when already active)."""
    global _active_constraints
    if _active_constraints != name:
        sf.set_semantic_constraints(constraint_table(name))
        _active_constraints = name


def smiles_to_tokens(smiles: str, constraints: str = "strict") -> list[str]:
    """SELFIES tokens of a SMILES string; raises MolgenError if selfies cannot encode it."""
    use_constraints(constraints)
    try:
        encoded = sf.encoder(smiles)
    except sf.EncoderError as err:
        raise MolgenError(f"SELFIES cannot encode {smiles!r}: {str(err).splitlines()[0]}") from None
    return list(sf.split_selfies(encoded))


def selfies_to_smiles(selfies: str, constraints: str = "strict") -> str | None:
    """Decode a SELFIES string to canonical SMILES; None if RDKit rejects it or it has no atoms."""
    use_constraints(constraints)
    try:
        smiles = sf.decoder(selfies)
    except sf.DecoderError:
        return None
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return Chem.MolToSmiles(mol)


class SelfiesTokenizer:
    """Vocabulary of SELFIES tokens plus ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2)."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, tokens: Sequence[str], constraints: str = "strict") -> None:
        tokens = list(tokens)
        if tokens[:3] != list(SPECIALS):
            raise MolgenError(f"vocabulary must start with {', '.join(SPECIALS)}")
        if len(set(tokens)) != len(tokens):
            raise MolgenError("vocabulary has duplicate tokens")
        constraint_table(constraints)  # validates the name
        self.tokens = tokens
        self.constraints = constraints
        self.index = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, smiles: Iterable[str], constraints: str = "strict") -> "SelfiesTokenizer":
        """Build the vocabulary from SMILES strings (tokens sorted for a stable order)."""
        counts: Counter[str] = Counter()
        for s in smiles:
            counts.update(smiles_to_tokens(s, constraints))
        return cls.from_token_set(counts, constraints)

    @classmethod
    def from_token_set(cls, tokens: Iterable[str], constraints: str = "strict") -> "SelfiesTokenizer":
        """Vocabulary from a set of SELFIES tokens (specials are prepended)."""
        return cls([*SPECIALS, *sorted(set(tokens) - set(SPECIALS))], constraints)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SelfiesTokenizer) and self.to_dict() == other.to_dict()

    def ids_from_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Token ids followed by ``<eos>``; an unknown token is a MolgenError naming it."""
        try:
            return [self.index[t] for t in tokens] + [self.eos_id]
        except KeyError as err:
            raise MolgenError(f"unknown SELFIES token {err.args[0]} (not in the vocabulary)") from None

    def encode(self, smiles: str) -> list[int]:
        """SMILES -> SELFIES token ids followed by ``<eos>`` (no ``<bos>``)."""
        return self.ids_from_tokens(smiles_to_tokens(smiles, self.constraints))

    def ids_to_selfies(self, ids: Iterable[int]) -> str:
        """Join the tokens of ``ids`` up to the first ``<eos>``, skipping ``<pad>``/``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.tokens[i])
        return "".join(out)

    def decode(self, ids: Iterable[int]) -> tuple[str, str | None]:
        """ids -> (SELFIES string, canonical SMILES or None when the molecule is invalid)."""
        selfies = self.ids_to_selfies(ids)
        return selfies, selfies_to_smiles(selfies, self.constraints)

    def to_dict(self) -> dict:
        """Plain-type form saved in JSON files and checkpoints."""
        return {"tokens": list(self.tokens), "constraints": self.constraints}

    @classmethod
    def from_dict(cls, data: dict) -> "SelfiesTokenizer":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(data["tokens"], data.get("constraints", "strict"))
        except (KeyError, TypeError) as err:
            raise MolgenError(f"not a molgen vocabulary: {err}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically)."""
        with atomic_open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SelfiesTokenizer":
        """Read a vocabulary written by :meth:`save`."""
        try:
            with open(path, encoding="utf-8") as handle:
                return cls.from_dict(json.load(handle))
        except (OSError, ValueError) as err:
            raise MolgenError(f"{path}: cannot read vocabulary: {err}") from None
