"""Set metrics: each definition checked on a handful of molecules against values worked out by hand
or by a brute-force loop over RDKit's own Tanimoto; reference statistics cached and invalidated."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import selfies as sf
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molgen.metrics import MOSES_KEYS, score
from molgen.metrics import molecules, reference
from molgen.metrics.fcd import chemnet_activations, chemnet_tokens, frechet_distance, gaussian
from molgen.metrics.filters import filter_smarts, matching_filters, passes_filters
from molgen.metrics.fragments import brics_fragments, cosine_similarity, scaffold
from molgen.metrics.properties import properties, wasserstein
from molgen.metrics.score import unique_at
from molgen.metrics import similarity
from molgen.metrics.similarity import popcount_groups, internal_diversity, morgan_bits, nearest_similarity

MOLS = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "O=C(O)c1ccccc1OC(C)=O", "CCO"]
REF = ["CCN", "c1ccccc1N", "CC(=O)Oc1ccccc1C(=O)O", "Cc1ccccc1", "C1CCCCC1"]


def _rdkit_fps(smiles):
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def _packed(smiles):
    return np.stack([morgan_bits(Chem.MolFromSmiles(s)) for s in smiles])


@pytest.fixture(params=["kernel", "portable"])
def tanimoto_path(request, monkeypatch):
    """Runs a similarity test on the compiled AVX-512 kernel and on the portable int8 path."""
    if request.param == "kernel":
        if not similarity.kernel_available():
            pytest.skip("the Tanimoto kernel is not built or this CPU lacks AVX-512 VPOPCNTDQ")
        monkeypatch.setattr(similarity, "_CHUNK", 16)  # several chunks even for small inputs
    else:
        monkeypatch.setattr(similarity, "kernel_available", lambda: False)
    return request.param


def test_nearest_similarity_equals_brute_force_rdkit_tanimoto(tanimoto_path):
    gen_fps, ref_fps = _rdkit_fps(MOLS), _rdkit_fps(REF)
    expected = [max(DataStructs.BulkTanimotoSimilarity(g, ref_fps)) for g in gen_fps]
    got = nearest_similarity(_packed(MOLS), _packed(REF))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_nearest_similarity_uniform_popcount_blocks_match_brute_force(tanimoto_path):
    # a reference large enough that runs of one popcount become "uniform" blocks
    rng = np.random.default_rng(0)
    n_ref, n_gen = 1500, 40
    ref_bits = np.zeros((n_ref, 1024), dtype=np.uint8)
    for row, count in zip(ref_bits, rng.choice([20, 30, 31, 45], size=n_ref, p=[0.45, 0.45, 0.05, 0.05])):
        row[rng.choice(1024, size=count, replace=False)] = 1
    gen_bits = (rng.random((n_gen, 1024)) < 0.03).astype(np.uint8)
    gen_bits[0] = ref_bits[7]  # an exact match
    gen_bits[1] = 0  # an empty fingerprint: similarity 0 to non-empty ones
    groups = popcount_groups(np.sort(ref_bits.sum(1)))
    assert any(uniform for _, _, uniform in groups) and not all(uniform for _, _, uniform in groups)
    inter = gen_bits.astype(np.float64) @ ref_bits.T.astype(np.float64)
    union = gen_bits.sum(1)[:, None] + ref_bits.sum(1)[None, :] - inter
    expected = (inter / union).max(axis=1)
    got = nearest_similarity(np.packbits(gen_bits, axis=1), np.packbits(ref_bits, axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[0] == 1.0 and got[1] == 0.0


def test_internal_diversity_equals_pairwise_loop_with_self_pairs(tanimoto_path):
    fps = _rdkit_fps(MOLS)
    sims = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])  # includes i == j
    expected_1 = 1 - sims.mean()
    expected_2 = 1 - np.mean(np.sqrt((sims**2).mean(axis=1)))  # MOSES: per-molecule root, then mean
    got_1, got_2 = internal_diversity(_packed(MOLS))
    assert got_1 == pytest.approx(expected_1, abs=1e-6)
    assert got_2 == pytest.approx(expected_2, abs=1e-6)


def test_internal_diversity_across_several_blocks(tanimoto_path, monkeypatch):
    monkeypatch.setattr("molgen.metrics.similarity._BLOCK", 4)  # 6 molecules -> off-diagonal blocks
    fps = _rdkit_fps(MOLS)
    sims = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
    got_1, got_2 = internal_diversity(_packed(MOLS))
    assert got_1 == pytest.approx(1 - sims.mean(), abs=1e-6)
    assert got_2 == pytest.approx(1 - np.mean(np.sqrt((sims**2).mean(axis=1))), abs=1e-6)


def test_identical_molecules_have_zero_internal_diversity(tanimoto_path):
    assert internal_diversity(_packed(["CCO"] * 3)) == pytest.approx((0.0, 0.0), abs=1e-7)


def _random_packed(rng, n, counts):
    bits = np.zeros((n, 1024), dtype=np.uint8)
    for row, count in zip(bits, rng.choice(counts, size=n)):
        row[rng.choice(1024, size=count, replace=False)] = 1
    return np.packbits(bits, axis=1)


@pytest.mark.skipif(not similarity.kernel_available(), reason="the Tanimoto kernel is not built or unsupported")
def test_kernel_equals_portable_path(monkeypatch):
    # sizes that are not multiples of 8 and a reference longer than one 1,024-column tile;
    # empty fingerprints on both sides (empty vs empty is similarity 1, as in MOSES)
    rng = np.random.default_rng(1)
    gen = _random_packed(rng, 203, [0, 5, 20, 33, 60])
    ref = _random_packed(rng, 2501, [0, 7, 20, 31, 45, 90])
    gen[:5] = ref[100:105]
    monkeypatch.setattr(similarity, "_CHUNK", 40)
    kernel_snn, kernel_div = nearest_similarity(gen, ref), internal_diversity(ref)
    monkeypatch.setattr(similarity, "kernel_available", lambda: False)
    portable_snn, portable_div = nearest_similarity(gen, ref), internal_diversity(ref)
    np.testing.assert_array_equal(kernel_snn, portable_snn)  # same integers, same float32 ratio
    empty = ~gen.any(axis=1)
    assert (kernel_snn[:5] == 1.0).all() and empty.any() and (kernel_snn[empty] == 1.0).all()
    np.testing.assert_allclose(kernel_div, portable_div, rtol=0, atol=1e-8)  # sums in another order


@pytest.mark.skipif(not similarity.kernel_available(), reason="the Tanimoto kernel is not built or unsupported")
def test_kernel_rejects_misshapen_buffers():
    rows, counts = similarity._kernel_rows(np.zeros((8, 128), dtype=np.uint8))
    columns, column_counts = similarity._kernel_columns(np.zeros((8, 128), dtype=np.uint8))
    best = np.zeros(8, dtype=np.float32)
    with pytest.raises(ValueError, match="multiple of 8"):
        similarity._compiled.nearest(rows[:3], counts[:3], columns, column_counts, best[:3])
    with pytest.raises(ValueError, match="best must be float32"):
        similarity._compiled.nearest(rows, counts, columns, column_counts, np.zeros(8))
    with pytest.raises(ValueError, match="cols_pop"):
        similarity._compiled.nearest(rows, counts, columns, column_counts[:4], best)
    with pytest.raises(TypeError):
        similarity._compiled.nearest(rows, counts, columns, column_counts, best.tobytes())  # read-only
    with pytest.raises(ValueError, match="sums and squares"):
        similarity._compiled.similarity_sums(rows, counts, columns, column_counts, np.zeros(8), np.zeros(7))


def test_other_fingerprint_widths_take_the_portable_path():
    rng = np.random.default_rng(2)
    gen, ref = rng.integers(0, 256, (4, 8), dtype=np.uint8), rng.integers(0, 256, (9, 8), dtype=np.uint8)
    inter = np.unpackbits(gen, axis=1).astype(float) @ np.unpackbits(ref, axis=1).T.astype(float)
    counts_g, counts_r = np.unpackbits(gen, axis=1).sum(1), np.unpackbits(ref, axis=1).sum(1)
    expected = (inter / (counts_g[:, None] + counts_r[None, :] - inter)).max(axis=1)
    np.testing.assert_allclose(nearest_similarity(gen, ref), expected, atol=1e-6)


def test_cosine_similarity_by_hand():
    assert cosine_similarity({"a": 1, "b": 2}, {"b": 2, "c": 2}) == pytest.approx(4 / math.sqrt(5 * 8))
    assert cosine_similarity({"a": 3}, {"a": 1}) == pytest.approx(1.0)
    assert cosine_similarity({"a": 1}, {"b": 1}) == 0.0
    assert math.isnan(cosine_similarity({}, {"a": 1}))


def test_brics_fragments_of_ethyl_benzoate():
    # BRICS cuts Et-O (L4-L3), O-C(=O) (L3-L1) and C(=O)-Ar (L6-L16); dummies carry the link types
    frags = brics_fragments(Chem.MolFromSmiles("CCOC(=O)c1ccccc1"))
    assert sorted(frags) == sorted(["[4*]CC", "[3*]O[3*]", "[1*]C([6*])=O", "[16*]c1ccccc1"])
    assert brics_fragments(Chem.MolFromSmiles("CCCC")) == ["CCCC"]  # nothing to cut


def test_scaffold_needs_two_rings():
    assert scaffold(Chem.MolFromSmiles("CCc1ccccc1Cc1ccccc1O")) == Chem.MolToSmiles(Chem.MolFromSmiles("c1ccc(Cc2ccccc2)cc1"))
    assert scaffold(Chem.MolFromSmiles("CCc1ccccc1")) is None  # one ring
    assert scaffold(Chem.MolFromSmiles("CCCC")) is None


def test_filters_reject_charges_foreign_atoms_big_rings_and_alerts():
    assert passes_filters(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    assert not passes_filters(Chem.MolFromSmiles("C[N+](C)(C)C"))  # charged
    assert not passes_filters(Chem.MolFromSmiles("CC[Si](C)(C)C"))  # Si not allowed
    assert not passes_filters(Chem.MolFromSmiles("C1CCCCCCC1"))  # 8-membered ring
    assert not passes_filters(Chem.MolFromSmiles("c1ccccc1N=Nc1ccccc1"))  # azo: MCF and PAINS azo_A
    names = [name for name, _ in filter_smarts()]
    hits = [names[i] for i in matching_filters(Chem.MolFromSmiles("O=C1C=CC(=O)C=C1"))]
    assert any("quinone" in h for h in hits)
    assert len(names) == 22 + 480


def test_screen_bits_are_the_pattern_fingerprint_on_bits():
    from molgen.metrics.filters import screen_bits

    for mol in (Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")), Chem.MolFromSmarts("[#6]-[#1]")):
        words = screen_bits(mol)
        assert words.dtype == np.uint64 and words.shape == (32,)
        on = np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little"))
        assert on.tolist() == list(Chem.PatternFingerprint(mol, 2048).GetOnBits())


def test_filter_screen_never_drops_a_match():
    rng = random.Random(0)
    alphabet = sorted(sf.get_semantic_robust_alphabet())
    mols = []
    while len(mols) < 300:
        mol = Chem.MolFromSmiles(sf.decoder("".join(rng.choice(alphabet) for _ in range(rng.randint(8, 40)))) or "")
        if mol is not None and mol.GetNumAtoms():
            mols.append(mol)
    screened = [matching_filters(m) for m in mols]
    assert screened == [matching_filters(m, screen=False) for m in mols]
    assert sum(map(len, screened)) > 20  # the check saw real matches


def test_properties_by_hand():
    logp, sa, qed, weight, rings, aromatic_rings, aromatic_fraction = properties(Chem.MolFromSmiles("CCO"))
    assert weight == pytest.approx(2 * 12.011 + 6 * 1.008 + 15.999, abs=0.01)
    assert (rings, aromatic_rings, aromatic_fraction) == (0, 0, 0.0)
    assert 1 <= sa <= 10 and 0 < qed < 1
    *_, rings, aromatic_rings, aromatic_fraction = properties(Chem.MolFromSmiles("Cc1ccc2ccccc2c1C1CC1"))
    assert (rings, aromatic_rings) == (3, 2)
    assert aromatic_fraction == pytest.approx(10 / 14)


def test_wasserstein_of_shifted_samples_is_the_shift():
    assert wasserstein(np.array([0.0, 1.0, 2.0]), np.array([1.5, 2.5, 3.5])) == pytest.approx(1.5)


def test_unique_at_k_counts_the_first_k():
    assert unique_at(["a", "a", "b", "c"], 2) == 0.5
    assert unique_at(["a", "a", "b", "c"], 10) == 0.75  # fewer than k: all of them, as MOSES


def test_chemnet_activations_equal_fcd_torch():
    from fcd_torch import FCD

    smiles = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in MOLS]
    expected = FCD(n_jobs=1).get_predictions(smiles)
    got = chemnet_activations(np.stack([chemnet_tokens(s) for s in smiles]), batch_size=4)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # same function, fp32 sums in another order


def test_frechet_distance_by_hand():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, 3.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    # |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) = 5 + (1 + 4 - 4) + (4 + 9 - 12)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(7.0)
    acts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    mu, sigma = gaussian(acts)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_equals_fcd_torch_sqrtm_formula():
    from fcd_torch import calculate_frechet_distance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 20)), rng.normal(size=(300, 20)) @ rng.normal(size=(20, 20)) * 0.5 + 0.3
    (mu1, s1), (mu2, s2) = gaussian(a), gaussian(b)
    expected = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_parse_rejects_empty_and_invalid():
    assert molecules.parse("") is None
    assert molecules.parse("C1CC") is None
    assert molecules.parse("CCO").GetNumAtoms() == 3


def _write(path, smiles, header="SMILES"):
    path.write_text(header + "\n" + "".join(s + "\n" for s in smiles))
    return path


@pytest.fixture
def refs(tmp_path):
    test = _write(tmp_path / "test.csv", REF + ["CCOC(=O)c1ccccc1", "Oc1ccc(Cl)cc1", "c1ccc2ccccc2c1"])
    scaffolds = _write(tmp_path / "scaf.csv", ["c1ccc(Cc2ccccc2)cc1", "c1ccc(-c2ccncc2)cc1", "CCc1ccccc1"])
    train = _write(tmp_path / "train.csv", ["OCC", "Oc1ccccc1", "CCCCCC"])  # not canonical on purpose
    return test, scaffolds, train, tmp_path / "cache"


def test_score_counts_valid_unique_and_novel_by_hand(refs):
    test, scaffolds, train, cache = refs
    gen = ["CCO", "OCC", "c1ccccc1O", "C1CC", "not smiles", "CC(=O)Nc1ccc(O)cc1", "Cc1ccccc1"]
    report = score(gen, test, scaffolds, train, cache_dir=cache)
    assert report["valid"] == pytest.approx(5 / 7)
    assert report["unique@1000"] == pytest.approx(4 / 5)  # CCO == OCC
    # unique valid: CCO, c1ccccc1O (both in train), paracetamol, toluene -> 2 of 4 novel
    assert report["Novelty"] == pytest.approx(0.5)
    assert set(MOSES_KEYS) <= set(report)
    assert report["counts"] == {"input": 7, "valid": 5, "unique": 4, "test": 8, "test_scaffolds": 3, "train_unique": 3}
    ref_fps = _rdkit_fps(Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in test.read_text().split()[1:])
    gen_valid = ["CCO", "CCO", "Oc1ccccc1", "CC(=O)Nc1ccc(O)cc1", "Cc1ccccc1"]
    snn = np.mean([max(DataStructs.BulkTanimotoSimilarity(f, ref_fps)) for f in _rdkit_fps(gen_valid)])
    assert report["SNN/Test"] == pytest.approx(snn, abs=1e-6)
    assert report["structure"]["rings"]["set"] == pytest.approx(3 / 5)
    for key in ("FCD/Test", "FCD/TestSF"):
        assert report[key] >= 0


def test_reference_statistics_are_cached_and_reused(refs, monkeypatch):
    test, _, _, cache = refs
    first = reference.reference_stats(test, cache_dir=cache)
    assert len(list(cache.glob("test.csv.reference-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(reference, "describe", fail)
    again = reference.reference_stats(test, cache_dir=cache)
    np.testing.assert_array_equal(again.fcd_sigma, first.fcd_sigma)
    np.testing.assert_array_equal(again.fingerprints, first.fingerprints)
    assert again.fragments == first.fragments and again.scaffolds == first.scaffolds


def test_reference_cache_is_invalidated_when_the_file_changes(refs):
    test, _, _, cache = refs
    first = reference.reference_stats(test, cache_dir=cache)
    _write(test, REF + ["CCCCCCO", "CC(C)(C)c1ccccc1"])
    second = reference.reference_stats(test, cache_dir=cache)
    assert (first.n, second.n) == (8, 7)
    assert second.sha256 != first.sha256
    assert len(list(cache.glob("test.csv.reference-*.npz"))) == 1  # the stale entry is gone


def test_training_keys_are_cached_and_canonical(refs):
    _, _, train, cache = refs
    keys, _ = reference.training_keys(train, cache_dir=cache)
    assert reference.smiles_key("CCO") in keys and reference.smiles_key("Oc1ccccc1") in keys
    assert len(list(cache.glob("train.csv.train-*.npz"))) == 1


def test_properties_equal_rdkit_functions_with_and_without_explicit_hydrogens():
    from rdkit.Chem import QED, Crippen, Descriptors

    for smiles in ("CC(=O)Nc1ccc(O)cc1", "[H]N=C1NC(=O)c2ccccc21", "[2H]C([2H])([2H])Oc1ccccc1"):
        mol = Chem.MolFromSmiles(smiles)
        logp, _, qed, weight, *_ = properties(mol)
        assert (logp, qed, weight) == (Crippen.MolLogP(mol), QED.qed(mol), Descriptors.MolWt(mol)), smiles


def test_chemnet_activations_equal_fcd_torch_for_short_and_full_length_smiles():
    from fcd_torch import FCD

    raw = ["C", "CC", "c1ccccc1" * 2, "C" * 60, "CC(C)" * 80 + "C", "N#Cc1ccc(F)cc1"] * 2
    smiles = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in raw]  # fcd-torch canonicalizes its input
    assert max(map(len, smiles)) > 350  # one fills all 350 positions (truncated, as fcd-torch does)
    expected = FCD(n_jobs=1).get_predictions(smiles)
    got = chemnet_activations(np.stack([chemnet_tokens(s) for s in smiles]), batch_size=5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


ALERT_MOLS = [
    "CCCCCCCC(=O)O",  # an unbranched chain: the alert that tests explicit degree (D2), never screened
    "O=[N+]([O-])c1ccccc1", "C1OC1c1ccccc1", "CC(=O)OO", "S=C=Nc1ccccc1", "O=CC=Cc1ccccc1",
    "[H]N=C1NC(=O)c2ccccc21", "NNc1ccccc1", "CC(=O)Cl", "c1ccc2c(c1)ccc1ccccc12",
]


def test_screened_qed_properties_equal_rdkit():
    from rdkit.Chem import QED

    from molgen.metrics.filters import screen_bits
    from molgen.metrics.properties import qed_properties

    found = 0
    for smiles in ALERT_MOLS + MOLS:
        mol = Chem.MolFromSmiles(smiles)
        expected = QED.properties(mol)
        assert qed_properties(mol, screen_bits(Chem.AddHs(mol))) == expected, smiles
        assert qed_properties(mol) == expected, smiles
        found += expected.ALERTS
    assert found >= 10  # the molecules above do trigger alerts


def test_passes_filters_with_precomputed_hydrogens_and_bits_agrees():
    from molgen.metrics.filters import screen_bits

    for smiles in ALERT_MOLS + MOLS + ["C[N+](C)(C)C", "C1CCCCCCC1", "CC[Si](C)C"]:
        mol = Chem.MolFromSmiles(smiles)
        h_mol = Chem.AddHs(mol)
        hinted = passes_filters(mol, h_mol, screen_bits(h_mol), readable=Chem.MolToSmiles(mol))
        assert hinted == passes_filters(mol), smiles
