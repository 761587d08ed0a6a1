"""Shipped reference statistics: the shipped path gives what a fresh computation gives, and the
statistics that ship with molgen belong to the MOSES files in data/moses."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from molgen.files import file_sha256
from molgen.metrics import reference
from molgen.metrics.fcd import chemnet_activations, chemnet_tokens
from molgen.metrics.molecules import parse
from molgen.metrics.properties import PROPERTIES, properties
from molgen.readers import read_column

from conftest import ROOT

MOSES = ROOT / "data" / "moses"


def _file(path, rows):
    path.write_text("\n".join(["SMILES", *rows]) + "\n")
    return path


@pytest.fixture
def small_shipped(tmp_path, monkeypatch):
    """Shipped statistics built for a 300-molecule reference and a training file with non-canonical rows."""
    rows = (ROOT / "data" / "sample.csv").read_text().splitlines()[1:]
    ref = _file(tmp_path / "ref.csv", rows[:300])
    # non-canonical text (OCC, C1=CC=CC=C1), a duplicate under canonicalization, an invalid row
    train = _file(tmp_path / "train.csv", [*rows[300:700], "OCC", "CCO", "C1=CC=CC=C1", "C1CC"])
    shipped = tmp_path / "stats.npz"
    np.savez_compressed(shipped, **reference.build_shipped([ref], train))
    monkeypatch.setattr(reference, "SHIPPED", shipped)
    return ref, train


def test_shipped_statistics_equal_a_fresh_computation(small_shipped, tmp_path):
    ref, _ = small_shipped
    fast = reference.reference_stats(ref, cache_dir=tmp_path / "a")
    fresh = reference.reference_stats(ref, cache_dir=tmp_path / "b", use_shipped=False)
    assert fast.source.startswith("shipped (rdkit ") and fresh.source == "computed"
    assert fast.n == fresh.n == 300
    np.testing.assert_array_equal(fast.fcd_mu, fresh.fcd_mu)
    np.testing.assert_array_equal(fast.fcd_sigma, fresh.fcd_sigma)
    np.testing.assert_array_equal(fast.fingerprints, fresh.fingerprints)  # computed by the fingerprint-only path
    assert fast.fragments == fresh.fragments and fast.scaffolds == fresh.scaffolds
    for name in PROPERTIES:  # shipped as float32
        np.testing.assert_allclose(fast.properties[name], fresh.properties[name], rtol=1e-6, atol=1e-6)
    again = reference.reference_stats(ref, cache_dir=tmp_path / "a")  # the cached fingerprints
    np.testing.assert_array_equal(again.fingerprints, fresh.fingerprints)


def test_shipped_training_exceptions_give_the_canonical_training_set(small_shipped, tmp_path):
    _, train = small_shipped
    fast, sha = reference.training_keys(train, cache_dir=tmp_path / "a")
    fresh, _ = reference.training_keys(train, cache_dir=tmp_path / "b", use_shipped=False)
    np.testing.assert_array_equal(fast, fresh)
    assert sha == file_sha256(train)
    assert reference.smiles_key("CCO") in fast and reference.smiles_key("OCC") not in fast
    assert reference.smiles_key("c1ccccc1") in fast and reference.smiles_key("C1=CC=CC=C1") not in fast


def test_a_file_that_is_not_shipped_is_computed(small_shipped, tmp_path):
    rows = (ROOT / "data" / "sample.csv").read_text().splitlines()[1:]
    other = _file(tmp_path / "other.csv", rows[1000:1100])
    stats = reference.reference_stats(other, cache_dir=tmp_path / "c")
    assert stats.source == "computed" and stats.n == 100


@pytest.mark.skipif(not reference.SHIPPED.is_file(), reason="no shipped statistics in this checkout")
def test_the_shipped_statistics_are_those_of_the_moses_splits():
    test_sha = file_sha256(MOSES / "test.csv.gz")
    test = reference.shipped("reference", test_sha)
    assert test is not None and reference.shipped("reference", file_sha256(MOSES / "test_scaffolds.csv.gz")) is not None
    train = reference.shipped("train", file_sha256(MOSES / "train.csv.gz"))
    assert train is not None and 0 < len(train["not_canonical"]) < 0.01 * int(train["n_unique"])
    smiles = read_column(MOSES / "test.csv.gz")
    assert int(test["n"]) == len(smiles)  # every MOSES test molecule is valid: row i is molecule i
    rows = np.random.default_rng(0).choice(len(smiles), 200, replace=False)
    for i in rows[:50]:  # property columns recomputed now
        expected = properties(parse(smiles[i]))
        got = [test[f"property_{name}"][i] for name in PROPERTIES]
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # ChemNet mean of 200 random test molecules lies within a few standard errors of the shipped mean
    acts = chemnet_activations(np.stack([chemnet_tokens(Chem.MolToSmiles(parse(smiles[i]))) for i in rows]))
    se = np.sqrt(np.diag(test["fcd_sigma"]) / len(rows))
    assert np.all(np.abs(acts.mean(0) - test["fcd_mu"]) < 6 * se + 1e-9)


# fast-path fingerprints differ from the exact ones on these (found in the MOSES test split)
FAST_PATH_EXCEPTIONS = [
    "[H]N=C1NC(=Nc2cccc(Cl)c2)NC(C)(C)N1",
    "C1CCc2sc3c(c2CC1)-c1nnnn1-c1nnnn1-3",
    "Cc1nnc2n1-c1ccc(Cl)cc1-n1c(C)nnc1-2",
]


def test_fast_fingerprints_put_right_by_their_exceptions_equal_the_exact_ones(tmp_path):
    rows = (ROOT / "data" / "sample.csv").read_text().splitlines()[1:101]
    # C1CC fails on both paths; C(C)(C)(C)(C)C parses unsanitized, but is no valid molecule
    ref = _file(tmp_path / "ref.csv", [*rows[:50], *FAST_PATH_EXCEPTIONS, "C1CC", "C(C)(C)(C)(C)C", *rows[50:]])
    found = reference.fingerprint_exceptions(ref)
    assert found["fingerprint_rows"].tolist() == [50, 51, 52, 54]
    assert found["fingerprint_valid"].tolist() == [True, True, True, False]
    exact = reference.reference_fingerprints(ref)
    assert exact.shape == (103, 128)
    np.testing.assert_array_equal(reference.reference_fingerprints(ref, exceptions=found), exact)
    np.testing.assert_array_equal(found["fingerprint_bits"][:3], exact[50:53])


@pytest.mark.skipif(not reference.SHIPPED.is_file(), reason="no shipped statistics in this checkout")
def test_the_shipped_fingerprint_exceptions_are_those_of_the_moses_splits():
    from molgen.metrics.similarity import morgan_bits

    for name in ("test.csv.gz", "test_scaffolds.csv.gz"):
        shipped = reference.shipped("reference", file_sha256(MOSES / name))
        smiles = read_column(MOSES / name)
        rows = set(shipped["fingerprint_rows"].tolist())
        assert 0 < len(rows) < 0.001 * len(smiles) and shipped["fingerprint_valid"].all()
        for i, bits in zip(shipped["fingerprint_rows"][:20], shipped["fingerprint_bits"]):
            np.testing.assert_array_equal(bits, morgan_bits(parse(smiles[i])))
        others = [i for i in np.random.default_rng(1).choice(len(smiles), 300, replace=False) if i not in rows]
        for i in others:  # the fast path is exact outside the exceptions
            fast = reference.fast_fingerprint(smiles[i])
            assert fast == morgan_bits(parse(smiles[i])).tobytes(), smiles[i]
