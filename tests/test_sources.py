"""Molecule sources: moses (the real molsets wheel), rdkit-samples, user files, PubChem's
CID-SMILES format (on a fixture), and bad input.

    .venv/bin/python -m pytest -q tests/test_sources.py
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from rdkit import Chem

from seqtune import paths
from seqtune.config import MoleculesConfig
from seqtune.pipeline.molecule_sources import MOSES_DIST, SOURCES, iter_smiles, open_source, read_file, read_smi

FIXTURES = Path(__file__).parent / "fixtures"
LOCAL_WHEELS = Path("/tmp/wheels")


def cfg(**kw) -> MoleculesConfig:
    return MoleculesConfig(**kw)


def test_every_configured_source_has_an_implementation():
    from typing import get_args

    assert set(get_args(MoleculesConfig.model_fields["source"].annotation)) == set(SOURCES)


def test_smi_file_reads_first_token_skipping_header_comments_blanks():
    got = list(iter_smiles(cfg(source="file", path=str(FIXTURES / "molecules.smi"))))
    assert got[:4] == ["CCO", "OCC", "c1ccccc1", "CC(=O)[O-].[Na+]"]
    assert "SMILES" not in got and not any(s.startswith("#") for s in got)
    assert len(got) == 16
    assert list(read_smi(["smiles\n", "CCO x\n"])) == ["CCO"]  # lower-case header too


def test_csv_file_uses_the_configured_column_and_keeps_bad_rows_for_counting():
    got = list(iter_smiles(cfg(source="file", path=str(FIXTURES / "molecules.csv"), smiles_column="structure")))
    # Quoted commas don't shift columns; an empty cell is a record to count, not skip silently.
    assert got == ["CCO", "Oc1ccccc1", "C1CC", "", "CC(=O)Nc1ccccc1", "c1ccncc1"]


def test_csv_wrong_column_is_a_clear_error():
    src = open_source(cfg(source="file", path=str(FIXTURES / "molecules.csv"), smiles_column="SMILES"))
    with pytest.raises(ValueError, match=r"no column 'SMILES'.*\['id', 'name', 'structure'\].*smiles_column"):
        list(src.records())


def test_file_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a file"):
        list(iter_smiles(cfg(source="file", path=str(tmp_path / "missing.smi"))))
    (tmp_path / "x.xlsx").write_text("nope")
    with pytest.raises(ValueError, match="unknown molecule file type"):
        list(iter_smiles(cfg(source="file", path=str(tmp_path / "x.xlsx"))))
    (tmp_path / "empty.smi").write_text("")
    assert list(iter_smiles(cfg(source="file", path=str(tmp_path / "empty.smi")))) == []


def test_gzipped_and_sdf_files(tmp_path):
    gz = tmp_path / "mols.smi.gz"
    with gzip.open(gz, "wt") as f:
        f.write("CCO a\nc1ccccc1 b\n")
    assert list(read_file(gz, "SMILES")) == ["CCO", "c1ccccc1"]
    sdf = tmp_path / "mols.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        for s in ["CCO", "c1ccncc1"]:
            w.write(Chem.MolFromSmiles(s))
    assert list(read_file(sdf, "SMILES")) == ["CCO", "c1ccncc1"]


def test_pubchem_parser_on_fixture():
    got = list(iter_smiles(cfg(source="pubchem", path=str(FIXTURES / "CID-SMILES-sample.gz"))))
    assert len(got) == 21
    assert got[0] == "CC(=O)OC(CC(=O)[O-])C[N+](C)(C)C" and got[-1] == "Nc1ccccc1"
    assert got[10] == ""  # the malformed line (no CID) is kept as an empty record to count
    assert got[9] == "this-is-not-a-smiles"  # well-formed line, bad SMILES: standardisation drops it
    # max_raw stops early, in file order.
    assert list(iter_smiles(cfg(source="pubchem", path=str(FIXTURES / "CID-SMILES-sample.gz"), max_raw=3))) == got[:3]


def test_rdkit_samples_need_no_download():
    got = list(iter_smiles(cfg(source="rdkit-samples", max_raw=100_000)))
    assert len(got) > 15_000  # ~15k molecules ship inside the rdkit wheel
    parsed = sum(Chem.MolFromSmiles(s) is not None for s in got[:500])
    assert parsed >= 490
    assert list(iter_smiles(cfg(source="rdkit-samples", max_raw=7))) == got[:7]


@pytest.fixture
def moses_downloads(tmp_path, monkeypatch) -> Path:
    """A fresh data/downloads; pre-seeded with a local copy of the wheel when one exists,
    otherwise the source downloads it with pip (as `make run` does)."""
    monkeypatch.chdir(tmp_path)
    wheel = LOCAL_WHEELS / f"{MOSES_DIST[0]}-{MOSES_DIST[1]}-py3-none-any.whl"
    if wheel.exists():
        paths.DOWNLOADS.mkdir(parents=True)
        shutil.copy(wheel, paths.DOWNLOADS)
    return tmp_path / paths.DOWNLOADS


@pytest.mark.slow
def test_moses_reads_the_real_molsets_wheel(moses_downloads):
    got = list(iter_smiles(cfg(source="moses", max_raw=200)))
    assert len(got) == 200
    assert got[0] == "CCCS(=O)c1ccc2[nH]c(=NC(=O)OC)[nH]c2c1"  # first row of train.csv.gz
    assert all(Chem.MolFromSmiles(s) is not None for s in got)
    assert [p.name for p in moses_downloads.glob("molsets-*.whl")] == ["molsets-0.3.1-py3-none-any.whl"]
