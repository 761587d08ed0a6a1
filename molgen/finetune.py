"""Fine-tuning a trained model on a small set (``molgen train --init-from MODEL``), and how its samples moved.

``molgen.train.train`` does the training; this module holds what is particular to fine-tuning:
which model ``--init-from`` names (``load_base``), the architecture and vocabulary taken from it
(``adopt_architecture``), the check that every molecule of the set is one the model can read
(``check_molecules``: an error naming the tokens and lines, or rejects under ``--on-invalid skip``),
the end of the run (``finish``: best weights, EM refit of the prior on the training molecules) and
the before/after comparison of samples against the set (``compare``, also usable on its own).

Similarity to the set is the mean over valid samples of the Tanimoto similarity to their nearest
neighbour in the set, on Morgan fingerprints of radius 2 and 2,048 bits (the convention of
fine-tuning studies; ``molgen score``'s SNN uses MOSES's 1,024 bits).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from molgen.checkpoint import load_model
from molgen.config import TrainConfig, apply_overrides
from molgen.errors import MolgenError
from molgen.model.vae import MoleculeVAE
from molgen.progress import say
from molgen.readers import Reject
from molgen.resources import MODEL, MOSES_TRAIN, bundled
from molgen.token_cache import TokenizedSet, load_tokenized, subset
from molgen.tokenizer import SelfiesTokenizer

SHIPPED = "shipped"  # --init-from shipped: the MOSES model that comes with molgen
FINGERPRINT_BITS = 2048
FINGERPRINT_RADIUS = 2
REFIT_MAX_DRAWS = 50_000
ARCHITECTURE_KEYS = ("kind", "emb_dim", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers", "latent_dim",
                     "n_components", "word_dropout", "mu_batchnorm", "max_len")  # fmt: skip
COMPARED = ("valid", "unique", "fcd_to_set", "nn_tanimoto_to_set", "novelty_vs_set", "novelty_vs_base_train")


@dataclass
class BaseModel:
    """The model a fine-tune starts from, and the training file its novelty is measured against."""

    path: Path
    model: MoleculeVAE
    tokenizer: SelfiesTokenizer
    base_train: Path | None
    base_train_note: str


def resolve_model_path(name: str) -> Path:
    """The model file ``--init-from`` names: "shipped" (the MOSES model), a model file or .ckpt, or a run folder."""
    path = bundled(MODEL) if name == SHIPPED else Path(name)
    if path.is_dir():
        if (path / "model.pt").is_file():
            return path / "model.pt"
        raise MolgenError(f"--init-from {name}: a folder without model.pt (no such model file; give the model file itself)")
    if not path.exists():
        raise MolgenError(
            f"--init-from {name}: no such model file (give a model.pt, a training .ckpt, a run folder or 'shipped')"
        )
    return path


def base_training_file(model_path: Path, explicit: str | None) -> tuple[Path | None, str]:
    """The base model's training file for novelty: ``explicit``, MOSES train for the shipped model, or the
    ``data.train`` of the run folder the model file sits in; (None, why) when none is known."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise MolgenError(f"finetune.base_train {explicit}: no such file")
        return path, "finetune.base_train"
    if model_path.resolve() == bundled(MODEL).resolve():
        return bundled(MOSES_TRAIN), "the shipped model's training set (MOSES train)"
    run_config = model_path.parent / "config.yaml"
    if run_config.is_file():
        from molgen.config import load_config

        train = load_config(run_config).data.train
        if train is not None and Path(train).is_file():
            return Path(train), f"data.train of {run_config}"
    return None, "unknown for this model: set finetune.base_train to its training file"


def load_base(config: TrainConfig) -> BaseModel:
    """Load the model ``config.finetune.init_from`` names, with its vocabulary and base training file."""
    path = resolve_model_path(config.finetune.init_from)
    model, tokenizer = load_model(path)
    base_train, note = base_training_file(path, config.finetune.base_train)
    return BaseModel(path, model, tokenizer, base_train, note)


def adopt_architecture(config: TrainConfig, model: MoleculeVAE) -> tuple[TrainConfig, list[str]]:
    """``config`` with model.* set from the base model (its architecture is kept), and the settings that changed."""
    hparams = model.hparams_dict
    current = config.to_dict()["model"]
    changed = [f"model.{k}={current[k]}" for k in ARCHITECTURE_KEYS if current[k] not in (None, hparams[k])]
    return apply_overrides(config, {f"model.{k}": hparams[k] for k in ARCHITECTURE_KEYS}), changed


def _lines(lines: Sequence[int], shown: int = 8) -> str:
    text = ", ".join(str(n) for n in lines[:shown])
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return f"line{'s' if len(lines) > 1 else ''} {text}{more}"


def check_molecules(
    path: str | Path,
    tokenizer: SelfiesTokenizer,
    max_len: int,
    smiles_column: str | None = None,
    on_invalid: str = "error",
    cache_dir: str | None = None,
) -> list[Reject]:
    """The rows of a fine-tuning file the model cannot read: not a molecule, SELFIES tokens outside its
    vocabulary (which is never extended) or more than ``max_len`` tokens. With ``on_invalid="error"``
    any of them is a MolgenError naming every unknown token with its lines; else they are returned."""
    own, data = load_tokenized(path, None, tokenizer.constraints, smiles_column, "skip", cache_dir=cache_dir)
    known = np.array([token in tokenizer.index for token in own.tokens], dtype=bool)
    lines = data.lines if data.lines is not None else np.full(len(data), -1, dtype=np.int64)
    smiles = data.smiles or [""] * len(data)
    unknown_at = np.flatnonzero(~known[data.ids.astype(np.int64)])
    owners = np.searchsorted(data.offsets, unknown_at, side="right") - 1
    unknown: dict[int, set[str]] = {}
    for position, molecule in zip(unknown_at.tolist(), owners.tolist()):
        unknown.setdefault(molecule, set()).add(own.tokens[data.ids[position]])
    too_long = [i for i in np.flatnonzero(data.lengths > max_len).tolist() if i not in unknown]
    rejects = list(data.rejects or [])
    rejects += [Reject(int(lines[i]), smiles[i], f"SELFIES tokens outside the model's vocabulary: {', '.join(sorted(t))}")
                for i, t in unknown.items()]  # fmt: skip
    rejects += [Reject(int(lines[i]), smiles[i], f"{data.lengths[i]} tokens, longer than the model's cap of {max_len}")
                for i in too_long]  # fmt: skip
    rejects.sort(key=lambda r: r.line)
    if rejects and on_invalid == "error":
        parts = []
        if unknown:
            by_token: dict[str, list[int]] = {}
            for i, tokens in sorted(unknown.items(), key=lambda item: lines[item[0]]):
                for token in tokens:
                    by_token.setdefault(token, []).append(int(lines[i]))
            listed = "; ".join(f"{token} on {_lines(found)}" for token, found in sorted(by_token.items()))
            kinds = [kind for kind, sign in (("stereo", "@"), ("charges", "+"), ("charges", "-"))
                     if any(sign in token for token in by_token)]  # fmt: skip
            hint = f" (the model knows no {' or '.join(dict.fromkeys(kinds))}: write the molecules without them)" if kinds else ""
            parts.append(f"{len(unknown)} molecule(s) use SELFIES tokens outside the model's vocabulary of "
                         f"{len(tokenizer)} tokens (kept as it is when fine-tuning): {listed}{hint}")  # fmt: skip
        if too_long:
            parts.append(f"{len(too_long)} molecule(s) are longer than the model's cap of {max_len} tokens "
                         f"({_lines(sorted(int(lines[i]) for i in too_long))})")  # fmt: skip
        if data.rejects:
            first = data.rejects[0]
            parts.append(f"{len(data.rejects)} row(s) are not valid molecules ({_lines([r.line for r in data.rejects])}; "
                         f"line {first.line}: {first.reason})")  # fmt: skip
        raise MolgenError(f"{path}: " + "; ".join(parts) + "; remove them, or use --on-invalid skip to drop them "
                          "(listed in rejects.csv in the run folder)")  # fmt: skip
    return rejects


def finish(
    model: MoleculeVAE,
    tokenizer: SelfiesTokenizer,
    train_set: TokenizedSet,
    reference: Sequence[str],
    config: TrainConfig,
    base: BaseModel,
    best_checkpoint: str | None,
) -> dict:
    """End a fine-tune in place on ``model``: the best validation step's weights, the EM refit of the prior
    on the training molecules, then ``compare`` against ``reference`` (the set). Returns the report."""
    ft = config.finetune
    report: dict = {"init_from": str(base.path), "restored_from": None, "prior_refit": None}
    if ft.restore_best and best_checkpoint:
        best, _ = load_model(best_checkpoint)
        model.load_state_dict(best.state_dict())
        report["restored_from"] = str(best_checkpoint)
    if ft.refit_prior and model.kind == "vae":
        from molgen.model.prior_fit import refit_prior

        draws = max(1, min(ft.refit_draws, REFIT_MAX_DRAWS // max(1, len(train_set))))
        tiled = subset(train_set, np.tile(np.arange(len(train_set)), draws))  # several z draws per molecule
        say(f"fine-tune: EM refit of the prior on {len(train_set):,} training molecules x {draws} draws")
        report["prior_refit"] = {**refit_prior(model, tiled, n=len(tiled), seed=config.trainer.seed), "draws_per_molecule": draws}
    if ft.eval_samples > 0:
        report["comparison"] = compare(
            base.model, model, tokenizer, reference, ft.eval_samples, ft.eval_seed, ft.eval_constraints,
            ft.eval_valid_only, base.base_train,
        )  # fmt: skip
        report["comparison"]["base_train_note"] = base.base_train_note
    return report


@functools.lru_cache(maxsize=1)
def _fingerprint_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_BITS)


def morgan_fingerprints(smiles: Sequence[str]) -> np.ndarray:
    """Packed Morgan fingerprints (radius 2, 2,048 bits) of valid SMILES: uint8 [n, 256]."""
    from molgen.metrics.molecules import parse

    rows = []
    for s in smiles:
        mol = parse(s)
        if mol is None:
            raise MolgenError(f"not a valid molecule: {s!r}")
        rows.append(np.packbits(_fingerprint_generator().GetFingerprintAsNumPy(mol)))
    return np.stack(rows) if rows else np.zeros((0, FINGERPRINT_BITS // 8), dtype=np.uint8)


@dataclass
class ReferenceSet:
    """What the comparison needs of the fine-tuning set (and of the base model's training set)."""

    smiles: list[str]
    fingerprints: np.ndarray
    keys: np.ndarray
    chemnet: tuple[np.ndarray, np.ndarray]
    base_keys: np.ndarray | None


def reference_set(smiles: Sequence[str], base_train: str | Path | None = None) -> ReferenceSet:
    """Fingerprints, SMILES keys and ChemNet statistics of the set's valid molecules (canonicalized)."""
    from molgen.chemistry import canonicalize
    from molgen.metrics.reference import smiles_keys, training_keys

    canonical = sorted({c for c in (canonicalize(s) for s in smiles) if c})
    if len(canonical) < 2:
        raise MolgenError(f"the reference set needs at least two valid molecules, found {len(canonical)}")
    base_keys = training_keys(base_train)[0] if base_train is not None else None
    return ReferenceSet(canonical, morgan_fingerprints(canonical), np.unique(smiles_keys(canonical)),
                        _chemnet_statistics(canonical), base_keys)  # fmt: skip


def _chemnet_statistics(canonical: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    from molgen.metrics.fcd import chemnet_activations, chemnet_tokens, gaussian

    return gaussian(chemnet_activations(np.stack([chemnet_tokens(s) for s in canonical])))


def sample_smiles(
    model: MoleculeVAE, tokenizer: SelfiesTokenizer, n: int, seed: int = 0, constraints: str | None = None,
    valid_only: bool = False,
) -> tuple[list[str | None], float]:  # fmt: skip
    """``n`` molecules drawn from the model's prior (canonical SMILES, None where invalid) and the valid
    fraction of ``n`` plain draws; ``valid_only`` redraws invalid ones (the list then holds valid SMILES)."""
    from molgen.library import Filters
    from molgen.sample import Generator

    if constraints is not None:
        tokenizer = SelfiesTokenizer(tokenizer.tokens, constraints)
    generator = Generator(model, tokenizer)
    rows = generator.sample(n, seed=seed, filters=Filters())  # plain draws, for the raw validity
    smiles = [row["SMILES"] for row in rows]
    valid = sum(s is not None for s in smiles) / len(smiles)
    if valid_only:
        smiles = [row["SMILES"] for row in generator.sample(n, seed=seed, filters=Filters(valid_only=True))]
    return smiles, valid


def sample_report(smiles: Sequence[str | None], valid: float, reference: ReferenceSet) -> dict:
    """Validity, uniqueness, FCD, nearest-neighbour Tanimoto and novelty of samples against ``reference``."""
    from molgen.metrics.fcd import frechet_distance
    from molgen.metrics.reference import smiles_keys
    from molgen.metrics.similarity import nearest_similarity

    good = [s for s in smiles if s]
    unique = np.unique(smiles_keys(good)) if good else np.zeros(0, dtype=np.uint64)
    report = {"valid": valid, "unique": len(unique) / len(good) if good else float("nan")}
    report["fcd_to_set"] = frechet_distance(*_chemnet_statistics(good), *reference.chemnet) if len(good) >= 2 else float("nan")
    report["nn_tanimoto_to_set"] = (
        float(nearest_similarity(morgan_fingerprints(good), reference.fingerprints).mean()) if good else float("nan")
    )
    report["novelty_vs_set"] = float((~np.isin(unique, reference.keys)).mean()) if len(unique) else float("nan")
    if reference.base_keys is not None:
        report["novelty_vs_base_train"] = float((~np.isin(unique, reference.base_keys)).mean()) if len(unique) else float("nan")
    report["n_valid"] = len(good)
    return report


def compare(
    base_model: MoleculeVAE,
    tuned_model: MoleculeVAE,
    tokenizer: SelfiesTokenizer,
    reference: Sequence[str],
    n: int = 1000,
    seed: int = 0,
    constraints: str | None = None,
    valid_only: bool = False,
    base_train: str | Path | None = None,
) -> dict:
    """Samples of the base and the fine-tuned model (``n`` each, same seed and decoding) measured against
    the set ``reference``: {"before", "after", "change" (after - before), settings}. ``base_train``: the
    base model's training file, for novelty against it (cached keys, seconds for MOSES train)."""
    started = time.perf_counter()
    say(f"fine-tune: statistics of the set ({len(reference):,} molecules)"
        + (f" and the keys of {Path(base_train).name}" if base_train is not None else ""))  # fmt: skip
    ref = reference_set(reference, base_train)
    reports = {}
    for name, model in (("before", base_model), ("after", tuned_model)):
        say(f"fine-tune: {n:,} samples from the {'base' if name == 'before' else 'fine-tuned'} model (seed {seed})")
        reports[name] = sample_report(*sample_smiles(model, tokenizer, n, seed, constraints, valid_only), ref)
    change = {k: reports["after"][k] - reports["before"][k] for k in COMPARED if k in reports["after"]}
    return {
        "n": n, "seed": seed, "constraints": constraints or tokenizer.constraints, "valid_only": valid_only,
        "set_size": len(ref.smiles), "base_train": str(base_train) if base_train is not None else None,
        "fingerprint": f"Morgan r={FINGERPRINT_RADIUS}, {FINGERPRINT_BITS} bits",
        **reports, "change": change, "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def format_comparison(comparison: dict) -> str:
    """The before/after table of ``compare`` as text."""
    head = (f"samples vs the set ({comparison['set_size']:,} molecules): {comparison['n']:,} per model, "
            f"seed {comparison['seed']}, {comparison['constraints']} decoding"
            + (", invalid redrawn" if comparison["valid_only"] else ""))  # fmt: skip
    lines = [head, f"{'':<24}{'before':>10}{'after':>10}{'change':>10}"]
    for key in COMPARED:
        if key in comparison["after"]:
            before, after = comparison["before"][key], comparison["after"][key]
            lines.append(f"{key:<24}{before:>10.3f}{after:>10.3f}{after - before:>+10.3f}")
    return "\n".join(lines)

