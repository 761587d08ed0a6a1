"""Objectives for latent-space optimisation (``molgen optimize``): a value per molecule, higher is better.

Built in (``OBJECTIVES``), each computed with RDKit from the molecule's canonical SMILES:

- ``qed``: RDKit's QED (``rdkit.Chem.QED.qed``), 0 to about 0.948.
- ``logp``: penalised logP as in JT-VAE (Jin et al. 2018) but **un-normalised**: Crippen logP minus
  the SA score minus the ring penalty max(0, size of the largest ring - 6), rings as RDKit's SSSR.
  JT-VAE standardises the three terms with ZINC's means and standard deviations first; these values
  are the raw sum, as most later work (GCPN, MolDQN, ...) reports them.
- ``sa``: the value is **minus** the synthetic-accessibility score (SA 1 easy to 10 hard), so that
  maximising it makes molecules easier to make; a reported value of -1.8 is SA 1.8.

``learned_objective`` builds a user objective from a CSV of measured values: ridge regression on the
model's posterior means E[z|x], with its held-out R² and RMSE. Its values are *predictions* of that
regressor for the decoded molecule (re-encoded), never measurements.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from molgen.errors import MolgenError

if TYPE_CHECKING:
    from molgen.sample import Generator

RIDGE_ALPHAS = tuple(10.0 ** k for k in np.arange(-3, 3.5, 0.5))  # chosen by 5-fold CV on the training split
MIN_TRAIN_ROWS = 10


@dataclass(frozen=True)
class Objective:
    """A property to maximise: ``score(smiles)`` gives one value per SMILES (NaN where it cannot be scored).

    ``scale`` is the objective's typical spread (the prior penalty of ``molgen.optimize`` is in these
    units); ``worst`` the value given to an invalid decode; ``predicted`` marks regressor predictions.
    """

    name: str
    description: str
    score: Callable[[Sequence[str | None]], np.ndarray]
    scale: float
    worst: float
    predicted: bool = False
    report: dict = field(default_factory=dict)


def _per_molecule(function: Callable) -> Callable[[Sequence[str | None]], np.ndarray]:
    """A batch scorer from a function of one RDKit molecule (NaN for None or unparseable SMILES)."""
    from rdkit import Chem

    def score(smiles: Sequence[str | None]) -> np.ndarray:
        values = np.full(len(smiles), np.nan)
        for i, s in enumerate(smiles):
            mol = Chem.MolFromSmiles(s) if s else None
            if mol is not None and mol.GetNumAtoms() > 0:
                values[i] = function(mol)
        return values

    return score


def qed(mol) -> float:
    """RDKit's QED of ``mol`` (0 to about 0.948)."""
    from rdkit.Chem import QED

    return float(QED.qed(mol))


def penalized_logp(mol) -> float:
    """Un-normalised penalised logP: Crippen logP - SA score - max(0, largest ring size - 6)."""
    from rdkit.Chem import Crippen

    from molgen.metrics.sascorer import sa_score

    rings = mol.GetRingInfo().AtomRings()
    largest = max((len(ring) for ring in rings), default=0)
    return float(Crippen.MolLogP(mol) - sa_score(mol) - max(0, largest - 6))


def negative_sa(mol) -> float:
    """Minus the SA score of ``mol`` (so -1 is the easiest to make, -10 the hardest)."""
    from molgen.metrics.sascorer import sa_score

    return -sa_score(mol)


#: name -> (function of one molecule, description, scale, worst value)
BUILTIN = {
    "qed": (qed, "QED (RDKit), higher is better", 0.1, 0.0),
    "logp": (penalized_logp, "penalised logP = logP - SA - ring penalty (un-normalised), higher is better", 1.0, -30.0),
    "sa": (negative_sa, "-SA score (SA 1 easy .. 10 hard), higher is easier to make", 0.5, -10.0),
}
OBJECTIVES = tuple(BUILTIN)


def builtin_objective(name: str) -> Objective:
    """The built-in objective ``name`` (one of ``OBJECTIVES``); MolgenError for any other name."""
    if name not in BUILTIN:
        raise MolgenError(f"unknown objective {name!r}; built-in objectives are {', '.join(OBJECTIVES)} "
                          "(or learn one from measured values with --train-property FILE --column NAME)")  # fmt: skip
    function, description, scale, worst = BUILTIN[name]
    return Objective(name, description, _per_molecule(function), scale, worst)


# ---------------------------------------------------------------------------------------- learned
def read_property_table(
    path: str | os.PathLike, column: str, smiles_column: str | None = None
) -> tuple[list[str], np.ndarray]:
    """Canonical SMILES and float values of ``column`` from a CSV/TSV file; errors name the row."""
    import pandas as pd

    from molgen.chemistry import canonical_or_reason
    from molgen.readers import SMILES_COLUMNS

    path = Path(path)
    if not path.is_file():
        raise MolgenError(f"{path}: no such file")
    sep = "\t" if path.name.lower().removesuffix(".gz").endswith((".tsv", ".tab")) else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise MolgenError(f"{path}: cannot read as CSV: {str(err).splitlines()[0]}") from None
    columns = list(table.columns)
    if column not in columns:
        raise MolgenError(f"{path}: no column {column!r}; columns found: {', '.join(columns)}")
    if smiles_column is None:
        found = [c for c in SMILES_COLUMNS if c in columns]
        if not found:
            raise MolgenError(f"{path}: no SMILES column found (columns: {', '.join(columns)}); name it with --smiles-column")
        smiles_column = found[0]
    elif smiles_column not in columns:
        raise MolgenError(f"{path}: no column {smiles_column!r}; columns found: {', '.join(columns)}")
    smiles, values = [], []
    for row, (s, v) in enumerate(zip(table[smiles_column], table[column]), start=2):  # line 1 is the header
        canonical, why = canonical_or_reason(s.strip())
        if canonical is None:
            raise MolgenError(f"{path}:{row}: {s!r}: invalid SMILES ({why})")
        try:
            value = float(v)
        except ValueError:
            raise MolgenError(f"{path}:{row}: {column} is {v!r}, not a number") from None
        if not np.isfinite(value):
            raise MolgenError(f"{path}:{row}: {column} is {v!r}, not a finite number")
        smiles.append(canonical)
        values.append(value)
    if len(smiles) < MIN_TRAIN_ROWS:
        raise MolgenError(f"{path}: {len(smiles)} molecules; a learned objective needs at least {MIN_TRAIN_ROWS}")
    return smiles, np.asarray(values)


def _ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weights and intercept of ridge regression (features centred, intercept not penalised)."""
    x_mean, y_mean = x.mean(0), y.mean()
    xc = x - x_mean
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return w, float(y_mean - x_mean @ w)


def _choose_alpha(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, folds: int = 5) -> float:
    """The ridge penalty of RIDGE_ALPHAS with the lowest k-fold cross-validated squared error."""
    fold = rng.permutation(len(y)) % min(folds, len(y))
    errors = []
    for alpha in RIDGE_ALPHAS:
        sse = 0.0
        for k in np.unique(fold):
            w, b = _ridge_fit(x[fold != k], y[fold != k], alpha)
            sse += float(((x[fold == k] @ w + b - y[fold == k]) ** 2).sum())
        errors.append(sse)
    return RIDGE_ALPHAS[int(np.argmin(errors))]


def _encode_each(generator: "Generator", smiles: Sequence[str | None], batch_size: int = 256) -> np.ndarray:
    """Posterior means [N, D] (float64); a row of NaN where the molecule cannot be encoded."""
    out = np.full((len(smiles), generator.model.prior.latent_dim), np.nan)
    for start in range(0, len(smiles), batch_size):
        chunk = [(i, s) for i, s in enumerate(smiles[start : start + batch_size], start) if s]
        if not chunk:
            continue
        try:
            mu, _ = generator.encode([s for _, s in chunk])
            out[[i for i, _ in chunk]] = mu.double().numpy()
        except MolgenError:  # one of them has a token outside the vocabulary or is too long: one by one
            for i, s in chunk:
                try:
                    out[i] = generator.encode([s])[0][0].double().numpy()
                except MolgenError:
                    pass
    return out


def learned_objective(
    generator: "Generator",
    path: str | os.PathLike,
    column: str,
    smiles_column: str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    maximize: bool = True,
) -> Objective:
    """An objective learned from measured values: ridge regression of ``column`` on E[z|x].

    The rows are split at random (``seed``) into a training part and a held-out ``holdout``
    fraction; the ridge penalty is chosen by 5-fold CV on the training part, and the held-out R²
    and RMSE (in the column's units) go into ``report``. The regressor used is exactly that one (fit
    on the training part), so the reported error is the error of the predictions being optimised.
    A molecule is scored by encoding it (its posterior mean) and predicting; NaN if it cannot be encoded.
    ``maximize=False``: the value is minus the prediction (named ``-column``), so lower predictions win.
    """
    if not 0 < holdout < 1:
        raise MolgenError(f"holdout must be between 0 and 1, not {holdout}")
    smiles, y = read_property_table(path, column, smiles_column)
    x = _encode_each(generator, smiles)
    bad = np.flatnonzero(np.isnan(x).any(1))
    if len(bad):
        raise MolgenError(f"{path}: {len(bad)} molecules cannot be encoded by this model (token outside its "
                          f"vocabulary or too long), first {smiles[bad[0]]!r}")  # fmt: skip
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = max(2, int(round(holdout * len(y))))
    test, train = order[:n_test], order[n_test:]
    alpha = _choose_alpha(x[train], y[train], rng)
    w, b = _ridge_fit(x[train], y[train], alpha)
    pred = x[test] @ w + b
    residual = float(((y[test] - pred) ** 2).sum())
    total = float(((y[test] - y[test].mean()) ** 2).sum())
    report = {
        "column": column,
        "rows": len(y),
        "train": len(train),
        "held_out": len(test),
        "ridge_alpha": alpha,
        "held_out_r2": 1.0 - residual / total if total > 0 else float("nan"),
        "held_out_rmse": float(np.sqrt(residual / len(test))),
    }
    spread = float(y.std()) or 1.0
    sign = 1.0 if maximize else -1.0

    def score(batch: Sequence[str | None]) -> np.ndarray:
        return sign * (_encode_each(generator, batch) @ w + b)  # NaN rows stay NaN

    what = f"ridge regression on E[z|x], fit to {Path(path).name}"
    return Objective(
        name=column if maximize else f"-{column}",
        description=f"predicted {column} ({what}), higher is better" if maximize
        else f"minus predicted {column} ({what}): lower predictions are better",
        score=score,
        scale=spread,
        worst=float(min(sign * y) - 10 * spread),
        predicted=True,
        report=report,
    )
