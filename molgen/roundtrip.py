"""Round-trip check: canonical SMILES -> SELFIES -> SMILES must give the same canonical SMILES."""
from __future__ import annotations

import os

import selfies as sf

from molgen.chemistry import canonicalize
from molgen.parallel import parallel_map
from molgen.readers import read_column
from molgen.tokenizer import selfies_to_smiles, use_constraints


def roundtrip_one(smiles: str, constraints: str = "strict") -> tuple[str | None, str | None]:
    """(canonical SMILES, canonical SMILES after the SELFIES round trip); None where invalid."""
    canonical = canonicalize(smiles)
    if canonical is None:
        return None, None
    use_constraints(constraints)
    try:
        return canonical, selfies_to_smiles(sf.encoder(canonical), constraints)
    except sf.EncoderError:
        return canonical, None


def _roundtrip_args(args: tuple[str, str]) -> tuple[str | None, str | None]:
    return roundtrip_one(*args)


def roundtrip_rate(path: str | os.PathLike, smiles_column: str | None = None, constraints: str = "strict") -> dict:
    """Fraction of the valid molecules of a file whose SELFIES round trip is exact, with the failures."""
    strings = read_column(path, smiles_column)
    pairs = parallel_map(_roundtrip_args, [(s, constraints) for s in strings], desc="round trip")
    valid = [(c, b) for c, b in pairs if c is not None]
    failures = [(c, b) for c, b in valid if b != c]
    return {
        "file": str(path),
        "constraints": constraints,
        "molecules": len(valid),
        "exact": len(valid) - len(failures),
        "rate": (len(valid) - len(failures)) / max(1, len(valid)),
        "failures": failures,
    }
