import json

import pytest
import selfies as sf

from molgen.chemistry import canonicalize
from molgen.errors import MolgenError
from molgen.readers import read_column
from molgen.roundtrip import roundtrip_one
from molgen.tokenizer import SelfiesTokenizer, constraint_table, selfies_to_smiles, use_constraints

from conftest import SAMPLE, SMALL_SMILES


def test_specials_have_fixed_ids():
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    assert tok.tokens[:3] == ["<pad>", "<bos>", "<eos>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)


@pytest.mark.parametrize("constraints", ["strict", "relaxed"])
def test_encode_decode_round_trip_gives_canonical_smiles(constraints):
    tok = SelfiesTokenizer.build(SMALL_SMILES, constraints)
    for smiles in SMALL_SMILES:
        canonical = canonicalize(smiles)
        ids = tok.encode(canonical)
        assert ids[-1] == tok.eos_id and tok.bos_id not in ids
        selfies, back = tok.decode(ids + [tok.pad_id] * 3)
        assert back == canonical
        assert selfies == sf.encoder(canonical)


def test_round_trip_rate_on_sample_is_near_one():
    strings = read_column(SAMPLE)[:500]
    pairs = [roundtrip_one(s) for s in strings]
    exact = sum(c == b for c, b in pairs)
    assert exact / len(pairs) > 0.99


def test_unknown_token_error_names_the_token():
    tok = SelfiesTokenizer.build(["CCO"])
    with pytest.raises(MolgenError, match=r"unknown SELFIES token \[Cl\]"):
        tok.encode("CCCl")


def test_save_load_keeps_vocabulary_and_constraints(tmp_path):
    tok = SelfiesTokenizer.build(SMALL_SMILES, "relaxed")
    tok.save(tmp_path / "vocab.json")
    back = SelfiesTokenizer.load(tmp_path / "vocab.json")
    assert back == tok and back.constraints == "relaxed"
    assert json.loads((tmp_path / "vocab.json").read_text())["tokens"][:3] == ["<pad>", "<bos>", "<eos>"]


def test_load_rejects_a_file_that_is_not_a_vocabulary(tmp_path):
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(MolgenError, match="not a molgen vocabulary"):
        SelfiesTokenizer.load(tmp_path / "bad.json")


def test_relaxed_constraints_let_carbon_take_five_bonds_and_decode_invalid():
    assert constraint_table("strict")["C"] == 4
    assert constraint_table("relaxed")["C"] == 5
    # a carbon with five single-bonded neighbours: strict SELFIES caps it, relaxed keeps it (invalid)
    selfies = "[C][Branch1][C][C][Branch1][C][C][Branch1][C][C][Branch1][C][C][C]"
    assert selfies_to_smiles(selfies, "strict") is not None
    assert selfies_to_smiles(selfies, "relaxed") is None
    use_constraints("strict")


def test_unknown_constraint_name_is_a_user_error():
    with pytest.raises(MolgenError, match="unknown SELFIES constraints"):
        SelfiesTokenizer(["<pad>", "<bos>", "<eos>"], "loose")
