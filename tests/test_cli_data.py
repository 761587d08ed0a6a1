import pytest

from molgen.cli import main

from conftest import SMALL_SMILES


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for verb in ("train", "sample", "score", "evaluate", "data"):
        assert verb in out


def test_data_stats_prints_counts(small_csv, capsys):
    assert main(["data", "stats", str(small_csv)]) == 0
    out = capsys.readouterr().out
    assert f"rows: {len(SMALL_SMILES)}" in out
    assert "invalid: 0" in out
    assert "vocabulary_size" in out


def test_user_error_is_one_line_exit_code_2(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert main(["data", "stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "empty file" in err and "Traceback" not in err


def test_data_roundtrip_reports_rate(small_csv, capsys):
    assert main(["data", "roundtrip", str(small_csv)]) == 0
    assert "rate: 1.000" in capsys.readouterr().out
