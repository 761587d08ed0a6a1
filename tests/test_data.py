import csv
import gzip

import numpy as np
import pytest
import torch

from molgen.errors import MolgenError
from molgen.readers import read_column, read_smiles
from molgen.token_cache import load_tokenized, subset
from molgen.tokenizer import SelfiesTokenizer

from conftest import SMALL_SMILES


@pytest.mark.parametrize("column", ["SMILES", "smiles", "canonical_smiles"])
def test_smiles_column_is_detected(tmp_path, column):
    path = tmp_path / "x.csv"
    path.write_text(f"name,{column},y\na,CCO,1\nb,c1ccccc1,2\n")
    assert read_column(path) == ["CCO", "c1ccccc1"]


def test_smiles_column_can_be_named(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("structure\tSMILES\nCCN\tCCO\n")
    assert read_column(path, smiles_column="structure") == ["CCN"]


def test_missing_column_lists_the_columns_found(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(MolgenError, match="no SMILES column found \\(columns: a, b\\)"):
        read_column(path)
    with pytest.raises(MolgenError, match="no column 'mol2'; columns found: a, b"):
        read_column(path, smiles_column="mol2")


def test_gzipped_csv_and_smi_files_are_read(tmp_path):
    gz = tmp_path / "x.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write("SMILES\nCCO\nCCN\n")
    assert read_column(gz) == ["CCO", "CCN"]
    smi = tmp_path / "x.smi"
    smi.write_text("CCO ethanol\n\nc1ccccc1\tbenzene\n")
    assert read_column(smi) == ["CCO", "c1ccccc1"]
    smi_gz = tmp_path / "y.smi.gz"
    with gzip.open(smi_gz, "wt") as handle:
        handle.write("smiles\nCCC\n")
    assert read_column(smi_gz) == ["CCC"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"SMILES\n", "header only"),
        (b"SMILES\nCCO\n\xff\xfeC\n", r":3: not UTF-8 text"),
        (b"\x00\x01\x02binary", "binary data"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt or truncated gzip"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(MolgenError, match=message) as info:
        read_column(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MolgenError, match="no such file"):
        read_column(tmp_path / "nope.csv")


def test_smiles_are_canonicalized(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES\nOCC\nC1=CC=CC=C1\n")
    assert read_smiles(path) == ["CCO", "c1ccccc1"]


def test_on_invalid_error_names_the_line_and_reason(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES\nCCO\nC1CC\nCN(C)(C)(C)C\n")
    with pytest.raises(MolgenError, match=r"x.csv:3: invalid molecule 'C1CC': .*2 bad row"):
        read_smiles(path)


def test_on_invalid_skip_writes_rejects_with_reasons(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES\nCCO\nC1CC\nCN(C)(C)(C)C\nnot_a_smiles\nCCN\n")
    rejects = tmp_path / "rejects.csv"
    assert read_smiles(path, on_invalid="skip", rejects_path=rejects) == ["CCO", "CCN"]
    rows = list(csv.DictReader(rejects.open()))
    assert [(r["line"], r["smiles"]) for r in rows] == [("3", "C1CC"), ("4", "CN(C)(C)(C)C"), ("5", "not_a_smiles")]
    assert "valence" in rows[1]["reason"].lower()
    assert rows[2]["reason"] == "cannot parse SMILES"


def test_load_tokenized_builds_vocabulary_and_flat_ids(small_csv, tmp_path):
    tok, data = load_tokenized(small_csv, cache_dir=tmp_path)
    assert len(data) == len(SMALL_SMILES) == data.n_rows
    assert data.ids.dtype == np.int16 and data.offsets[-1] == len(data.ids)
    for i, smiles in enumerate(data.smiles):
        assert tok.encode(smiles) == data.get(i).tolist()
        assert tok.decode(data.get(i))[1] == smiles
    assert (data.lengths == [len(tok.encode(s)) for s in data.smiles]).all()


def test_cache_is_reused_and_invalidated_when_the_file_changes(small_csv, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    tok, first = load_tokenized(small_csv, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    import molgen.token_cache as token_cache_module

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again instead of using the cache")

    monkeypatch.setattr(token_cache_module, "parallel_map", fail)
    tok2, second = load_tokenized(small_csv, cache_dir=cache)
    assert tok2 == tok and (second.ids == first.ids).all() and second.smiles == first.smiles
    monkeypatch.undo()
    small_csv.write_text(small_csv.read_text() + "m99,CCCCCC\n")
    _, third = load_tokenized(small_csv, cache_dir=cache)
    assert len(third) == len(first) + 1
    assert len(list(cache.glob("*.npz"))) == 2


def test_given_vocabulary_rejects_unknown_tokens(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES\nCCO\nCCCl\n")
    tok = SelfiesTokenizer.build(["CCO"])
    with pytest.raises(MolgenError, match=r"x.csv:3: .*unknown SELFIES token \[Cl\]"):
        load_tokenized(path, tok, cache_dir=tmp_path)
    _, data = load_tokenized(path, tok, on_invalid="skip", cache_dir=tmp_path)
    assert data.smiles == ["CCO"]


def test_length_cap_rejects_long_molecules(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("SMILES\nCC\nCCCCCCCCCCCC\n")
    with pytest.raises(MolgenError, match="13 tokens, longer than the model's cap of 5"):
        load_tokenized(path, max_tokens=5, cache_dir=tmp_path)


def test_subset_keeps_molecules_in_order(small_csv, tmp_path):
    _, data = load_tokenized(small_csv, cache_dir=tmp_path)
    part = subset(data, [3, 0, 5])
    assert [part.get(i).tolist() for i in range(3)] == [data.get(i).tolist() for i in (3, 0, 5)]
    assert part.smiles == [data.smiles[i] for i in (3, 0, 5)]


def test_a_given_vocabulary_reuses_the_file_cache_by_remapping(small_csv, tmp_path, monkeypatch):
    import molgen.token_cache as token_cache_module

    load_tokenized(small_csv, cache_dir=tmp_path)
    other = SelfiesTokenizer.build(SMALL_SMILES[:3] + ["CCCl", "CCBr", "CCS"])  # another id order, missing tokens

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again instead of remapping the cached ids")

    monkeypatch.setattr(token_cache_module, "parallel_map", fail)
    tok, data = load_tokenized(small_csv, other, on_invalid="skip", cache_dir=tmp_path)
    assert tok is other and len(data) >= 3
    for i, smiles in enumerate(data.smiles):
        assert other.decode(data.get(i))[1] == smiles
    assert {r.reason.split(" (")[0][:22] for r in data.rejects} == {"unknown SELFIES token "}
    assert all(r.line > 1 for r in data.rejects)


def test_padding_right_pads_each_molecule_in_the_order_asked(small_csv, tmp_path):
    from molgen.padding import pad_ids, pad_molecules

    _, data = load_tokenized(small_csv, cache_dir=tmp_path)
    index = [4, 0, 2, 4]
    tokens, lengths = pad_molecules(data, index, pad_id=7)
    assert tokens.dtype == lengths.dtype == torch.long
    assert lengths.tolist() == [len(data.get(i)) for i in index] and tokens.shape == (4, max(lengths.tolist()))
    for row, i in zip(tokens.tolist(), index):
        ids = data.get(i).tolist()
        assert row == ids + [7] * (tokens.shape[1] - len(ids))
    every, _ = pad_molecules(data)
    assert every.shape[0] == len(data) and every[2].tolist()[: len(data.get(2))] == data.get(2).tolist()
    from_lists, list_lengths = pad_ids([[5, 6, 2], [2]], pad_id=0)
    assert from_lists.tolist() == [[5, 6, 2], [2, 0, 0]] and list_lengths.tolist() == [3, 1]
    empty, no_lengths = pad_ids([])
    assert empty.shape == (0, 0) and no_lengths.shape == (0,)


def test_the_token_table_gathers_the_batches_that_padding_builds(small_csv, tmp_path):
    from molgen.datamodule import IndexBatch, MoleculeDataModule
    from molgen.padding import TokenTable, pad_molecules
    from molgen.token_cache import subset

    _, data = load_tokenized(small_csv, cache_dir=tmp_path)
    table = TokenTable(data, pad_id=0)
    index = [3, 1, 1, 0]
    width = int(data.lengths[index].max())
    tokens, lengths = table.batch(torch.tensor(index), width)
    expected_tokens, expected_lengths = pad_molecules(data, index)
    assert tokens.dtype == lengths.dtype == torch.long
    assert torch.equal(tokens, expected_tokens) and torch.equal(lengths, expected_lengths)
    tail = subset(data, [4, 2])  # a subset's ids start at its own first molecule
    assert torch.equal(TokenTable(tail).batch(torch.tensor([1, 0]), 99)[0], pad_molecules(tail, [1, 0])[0])

    dm = MoleculeDataModule(subset(data, [0, 1, 2]), subset(data, [3, 4]), batch_size=2)
    seen = []
    for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
        source = dm.train_set if split == "train" else dm.val_set
        for batch in loader:  # the loader yields indices only; the hook after the transfer gathers
            assert isinstance(batch, IndexBatch) and batch.split == split
            tokens, lengths = dm.on_after_batch_transfer(batch, 0)
            assert torch.equal(tokens, pad_molecules(source, batch.index.tolist())[0])
            seen += [(split, i) for i in batch.index.tolist()]
    assert sorted(seen) == [("train", 0), ("train", 1), ("train", 2), ("val", 0), ("val", 1)]
    assert dm.on_after_batch_transfer((tokens, lengths), 0) == (tokens, lengths)  # batches already built pass
