"""Property-based fuzzing (issue 9, part 7): whatever bytes or strings arrive, only MolgenError escapes.

Random bytes and random text go to the SMILES file reader (CSV, TSV, .smi, gzipped or not), the
tokenizing loader, the SELFIES tokenizer, the vocabulary loader, the YAML config loader and the
model-file loader. Each property runs a few hundred examples with no deadline, so the suite stays fast.
"""
from __future__ import annotations

import gzip
import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from molgen.checkpoint import load_model
from molgen.config import load_config
from molgen.chemistry import canonicalize
from molgen.errors import MolgenError
from molgen.readers import read_rows, read_smiles
from molgen.token_cache import load_tokenized
from molgen.tokenizer import SelfiesTokenizer, selfies_to_smiles, smiles_to_tokens

from conftest import SMALL_SMILES

EXAMPLES = int(os.environ.get("MOLGEN_FUZZ_EXAMPLES", "200"))  # raise it for a longer hunt
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a shared 2-core machine makes timings meaningless
    database=None,
    print_blob=True,  # a failure prints the @reproduce_failure line to replay it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

SMILES_ALPHABET = "CNOSPFIBrcnos()[]=#@+-\\/%0123456789.*:Hl ,\t\"'\r"
smiles_like = st.text(alphabet=SMILES_ALPHABET, max_size=60)
any_text = st.text(max_size=60)  # any unicode, surrogates excluded by hypothesis' default
cells = st.one_of(smiles_like, any_text, st.sampled_from(SMALL_SMILES))
SUFFIXES = [".csv", ".tsv", ".smi", ".txt", ".csv.gz", ".smi.gz"]
_counter = itertools.count()


@st.composite
def smiles_files(draw) -> tuple[str, bytes]:
    """(file suffix, content): raw bytes, or a header and rows of SMILES-like and arbitrary text."""
    suffix = draw(st.sampled_from(SUFFIXES))
    if draw(st.booleans()):
        content = draw(st.binary(max_size=400))
    else:
        header = draw(st.sampled_from(["SMILES", "smiles", "id,SMILES", "SMILES\tname", "name", ""]))
        rows = draw(st.lists(st.lists(cells, min_size=1, max_size=3), max_size=8))
        sep = draw(st.sampled_from([",", "\t", " "]))
        newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        text = newline.join([header, *(sep.join(r) for r in rows)])
        content = text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")
    if suffix.endswith(".gz") and draw(st.booleans()):
        content = gzip.compress(content)
        if draw(st.booleans()):  # cut short
            content = content[: draw(st.integers(0, max(0, len(content) - 1)))]
    return suffix, content


def _write(folder: Path, suffix: str, content: bytes) -> Path:
    path = folder / f"fuzz{next(_counter)}{suffix}"
    path.write_bytes(content)
    return path


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="molgen-fuzz-") as name:
        yield Path(name)


@FUZZ
@given(file=smiles_files(), on_invalid=st.sampled_from(["error", "skip"]), column=st.sampled_from([None, "SMILES", "x"]))
@example(file=(".csv", b"\xef\xbb\xbfSMILES\nCCO\n"), on_invalid="error", column=None)
@example(file=(".csv.gz", b"\x1f\x8b\x08\x00"), on_invalid="error", column=None)
@example(file=(".smi", b"C\x00C\n"), on_invalid="skip", column=None)
def test_smiles_reader_raises_only_molgen_errors(folder, file, on_invalid, column):
    path = _write(folder, *file)
    try:
        strings, lines = read_rows(path, column)
        assert len(strings) == len(lines) > 0 and all(isinstance(s, str) for s in strings)
        smiles = read_smiles(path, column, on_invalid=on_invalid, rejects_path=folder / "rejects.csv")
        assert all(canonicalize(s) == s for s in smiles)
    except MolgenError as err:
        assert str(err)


@FUZZ
@given(file=smiles_files(), on_invalid=st.sampled_from(["error", "skip"]), own_vocab=st.booleans())
def test_tokenizing_loader_raises_only_molgen_errors(folder, file, on_invalid, own_vocab):
    path = _write(folder, *file)
    tokenizer = SelfiesTokenizer.build(SMALL_SMILES) if own_vocab else None
    try:
        tok, data = load_tokenized(path, tokenizer, on_invalid=on_invalid, cache_dir=folder / "cache", max_tokens=40)
    except MolgenError as err:
        assert str(err)
        return
    assert len(data) > 0 and (data.lengths <= 40).all()
    assert int(data.ids.max()) < len(tok) and len(data.lines) == len(data)


@FUZZ
@given(text=st.one_of(smiles_like, any_text, st.sampled_from(SMALL_SMILES)), constraints=st.sampled_from(["strict", "relaxed"]))
def test_tokenizer_encode_raises_only_molgen_errors(text, constraints):
    tok = SelfiesTokenizer.build(SMALL_SMILES, constraints)
    canonical = canonicalize(text)
    assert canonical is None or isinstance(canonical, str)
    for smiles in {text, canonical} - {None}:
        try:
            ids = tok.encode(smiles)
        except MolgenError as err:
            assert str(err)
            continue
        assert ids[-1] == tok.eos_id and all(0 <= i < len(tok) for i in ids)
        selfies, back = tok.decode(ids)
        assert isinstance(selfies, str) and (back is None or isinstance(back, str))


@FUZZ
@given(data=st.data(), constraints=st.sampled_from(["strict", "relaxed"]))
def test_tokenizer_decode_of_any_id_sequence_never_raises(data, constraints):
    tok = SelfiesTokenizer.build(SMALL_SMILES, constraints)
    ids = data.draw(st.lists(st.integers(0, len(tok) - 1), max_size=50))
    selfies, smiles = tok.decode(ids)
    assert isinstance(selfies, str)
    if smiles is not None:
        assert canonicalize(smiles) == smiles


@FUZZ
@given(tokens=st.lists(st.one_of(st.text(max_size=8).map(lambda t: f"[{t}]"), st.text(max_size=8)), max_size=30),
       constraints=st.sampled_from(["strict", "relaxed"]))  # fmt: skip
def test_decoding_any_selfies_string_never_raises(tokens, constraints):
    smiles = selfies_to_smiles("".join(tokens), constraints)
    assert smiles is None or canonicalize(smiles) == smiles


@FUZZ
@given(text=st.one_of(smiles_like, any_text))
def test_smiles_to_tokens_raises_only_molgen_errors(text):
    try:
        tokens = smiles_to_tokens(text)
    except MolgenError as err:
        assert str(err)
        return
    assert all(isinstance(t, str) for t in tokens)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=20,
)


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), json_values.map(lambda v: __import__("json").dumps(v).encode())),
       shaped=st.booleans())  # fmt: skip
def test_vocabulary_loader_raises_only_molgen_errors(folder, content, shaped):
    if shaped:  # near misses of a real vocabulary file
        content = b'{"tokens": ["<pad>", "<bos>", "<eos>", ' + content[:50] + b'], "constraints": "strict"}'
    path = _write(folder, ".json", content)
    try:
        tok = SelfiesTokenizer.load(path)
    except MolgenError as err:
        assert str(err)
        return
    assert tok.tokens[:3] == ["<pad>", "<bos>", "<eos>"]


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                         json_values.map(lambda v: __import__("yaml").safe_dump({"model": v}).encode())))  # fmt: skip
def test_config_loader_raises_only_molgen_errors(folder, content):
    path = _write(folder, ".yaml", content)
    try:
        load_config(path)
    except MolgenError as err:
        assert str(err)


@settings(FUZZ, max_examples=max(1, EXAMPLES // 2))
@given(prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04"]), body=st.binary(max_size=400))
def test_model_loader_raises_only_molgen_errors(folder, prefix, body):
    assume(prefix or body)
    path = _write(folder, ".pt", prefix + body)
    with pytest.raises(MolgenError):
        load_model(path)
