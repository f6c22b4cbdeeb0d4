"""Molecule sources behind one interface: each yields raw SMILES strings in file order.

    python -c "from seqtune.pipeline.molecule_sources import open_source; from seqtune.config import load_section; \
print(next(open_source(load_section('molecules')).records()))"

Sources (`molecules.source`):
  moses          ZINC-derived SMILES inside the `molsets==0.3.1` distribution, fetched with
                 `pip download --no-deps` into data/downloads (never imported or installed)
  rdkit-samples  molecule files shipped inside the rdkit wheel (no download)
  file           a user's .smi / .csv / .tsv / .sdf (optionally .gz); `smiles_column` for tables
  pubchem        PubChem's bulk `CID-SMILES.gz` (CID<TAB>SMILES lines), a local copy or streamed
                 from NCBI, stopping after `max_raw` records
  chedl          the ~73,000 PubChem compounds with CAS numbers in ChEDL's identifier tables
                 (`chemicals==1.5.2`, fetched like molsets): real solvents, reagents, monomers,
                 metabolites and drugs, the commonest ~1,800 first

`read_chedl` reads the real-molecule evaluation set (stage real_molecules): the PubChem
identifier tables inside the `chemicals==1.5.2` distribution (ChEDL), fetched like molsets.

A malformed record yields "" so the molecules stage can count it instead of failing.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import ClassVar, TextIO

from tqdm.auto import tqdm

from seqtune import paths
from seqtune.config import MoleculesConfig
from seqtune.downloads import fetch_wheel

log = logging.getLogger(__name__)

MOSES_DIST = ("molsets", "0.3.1")
CHEDL_DIST = ("chemicals", "1.5.2")
CHEDL_MEMBERS = ("chemicals/Identifiers/chemical identifiers pubchem small.tsv",
                 "chemicals/Identifiers/chemical identifiers pubchem large.tsv")
"""ChEDL's PubChem identifier tables (CID, CAS, formula, MW, SMILES, InChI, InChIKey, IUPAC
name, synonyms...; no header): ~1,800 of the commonest chemicals, then ~71,000 more compounds
that have a CAS number: solvents, reagents, monomers, metabolites, drugs."""
MOSES_MEMBERS = ("moses/dataset/data/train.csv.gz", "moses/dataset/data/test.csv.gz")
PUBCHEM_URL = "https://ftp.ncbi.nlm.nih.gov/pubchem/Compound/Extras/CID-SMILES.gz"

# rdkit-samples: (path inside the rdkit package, reader). ~15k molecules, drug-like first.
RDKIT_SAMPLES: tuple[tuple[str, str], ...] = (
    ("Data/Pains/test_data/wehi_mols.csv", "csv0"),
    ("Data/NCI/first_5K.smi", "smi"),
    ("Contrib/FreeWilson/data/CHEMBL2321810.smi", "smi"),
    ("Contrib/PBF/testData/egfr.sdf", "sdf"),
    ("Contrib/fraggle/data/ChEMBL_11265_actives.smi", "smi"),
    ("Contrib/SA_Score/data/zim.100.txt", "smi"),
)

csv.field_size_limit(1 << 24)  # PubChem and user tables can hold very long SMILES


# ---------------------------------------------------------------- readers (text -> SMILES)


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_smi(lines: Iterable[str]) -> Iterator[str]:
    """First whitespace-separated token of each line; blank lines, `#` comments and a
    `smiles` header are skipped."""
    for i, line in enumerate(lines):
        tok = line.split(maxsplit=1)
        if not tok or tok[0].startswith("#"):
            continue
        if i == 0 and tok[0].lower() in {"smiles", "smi"}:
            continue
        yield tok[0]


def read_table(lines: Iterable[str], column: str | int, *, delimiter: str = ",", where: str = "") -> Iterator[str]:
    """The SMILES column of a delimited table (`column` is a header name, or an index for a
    header-less file). A missing column is a user error that lists the columns present."""
    reader = csv.reader(lines, delimiter=delimiter)
    if isinstance(column, str):
        header = next(reader, None)
        if header is None:
            return
        names = [h.strip() for h in header]
        if column not in names:
            raise ValueError(
                f"{where or 'table'}: no column {column!r}; columns are {names}. "
                "Set molecules.smiles_column to the one holding SMILES."
            )
        idx = names.index(column)
    else:
        idx = column
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield row[idx].strip() if idx < len(row) else ""


def read_sdf(path: Path) -> Iterator[str]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for mol in Chem.ForwardSDMolSupplier(f, sanitize=True):
            yield Chem.MolToSmiles(mol) if mol is not None else ""


def read_pubchem(lines: Iterable[str]) -> Iterator[str]:
    """PubChem `CID<TAB>SMILES` lines -> SMILES ("" for a malformed line)."""
    for line in lines:
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        yield parts[1].strip() if len(parts) >= 2 and parts[0].strip().isdigit() else ""


def read_file(path: Path, column: str) -> Iterator[str]:
    """Dispatch on the extension (ignoring a trailing .gz)."""
    suffixes = [s.lower() for s in path.suffixes]
    ext = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext in {".sdf", ".sd", ".mol"}:
        yield from read_sdf(path)
        return
    with _open_text(path) as f:
        if ext in {".csv", ".tsv"}:
            yield from read_table(f, column, delimiter="\t" if ext == ".tsv" else ",", where=str(path))
        elif ext in {".smi", ".smiles", ".txt", ""}:
            yield from read_smi(f)
        else:
            raise ValueError(f"{path}: unknown molecule file type {ext!r}; use .smi, .csv, .tsv or .sdf (optionally .gz)")


def read_chedl(wheel: Path) -> Iterator[tuple[str, str, str]]:
    """(SMILES, InChIKey, IUPAC name) of every row of ChEDL's PubChem tables in `wheel` (the
    `chemicals` distribution), in file order; a short row yields empty fields."""
    with zipfile.ZipFile(wheel) as zf:
        for member in CHEDL_MEMBERS:
            with zf.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as f:
                for line in f:
                    cols = line.rstrip("\n").split("\t")
                    yield (cols[4], cols[6], cols[7]) if len(cols) > 7 else ("", "", "")


def chedl_wheel() -> Path:
    return fetch_wheel(*CHEDL_DIST, hint="or set real_molecules.source to file (your own molecules) or none")


# ---------------------------------------------------------------- downloads


def _stream_pubchem(max_raw: int, cache: Path) -> None:
    """Stream the first `max_raw` records of PubChem's CID-SMILES.gz (GBs in full) into
    `cache`, stopping early instead of downloading the whole file."""
    import requests

    from seqtune.files import atomic_path

    log.info("streaming the first %d records of %s", max_raw, PUBCHEM_URL)
    try:
        resp = requests.get(PUBCHEM_URL, stream=True, timeout=60)
        resp.raise_for_status()
    except requests.RequestException as e:
        raise RuntimeError(
            f"could not download {PUBCHEM_URL}: {e}. Download CID-SMILES.gz yourself and set molecules.path to it."
        ) from e
    with resp, atomic_path(cache) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as out:
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=resp.raw), encoding="utf-8", errors="replace")
        for line in tqdm(islice(text, max_raw), total=max_raw, desc="pubchem", unit="mol"):
            out.write(line)


# ---------------------------------------------------------------- sources


class MoleculeSource(ABC):
    """One molecule corpus; `records()` yields raw SMILES in a fixed (file) order."""

    name: ClassVar[str]

    def __init__(self, cfg: MoleculesConfig):
        self.cfg = cfg

    @abstractmethod
    def records(self) -> Iterator[str]:
        """Every raw record as a SMILES string ("" for a malformed one), in file order."""

    def describe(self) -> str:
        return self.name


class MosesSource(MoleculeSource):
    name = "moses"

    def records(self) -> Iterator[str]:
        wheel = fetch_wheel(*MOSES_DIST, hint="choose another molecules.source (e.g. rdkit-samples, which needs no download)")
        with zipfile.ZipFile(wheel) as zf:
            for member in MOSES_MEMBERS:
                with zf.open(member) as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
                    yield from read_table(f, "SMILES", where=f"{wheel.name}:{member}")

    def describe(self) -> str:
        return f"moses ({MOSES_DIST[0]}=={MOSES_DIST[1]})"


class RdkitSamplesSource(MoleculeSource):
    name = "rdkit-samples"

    def records(self) -> Iterator[str]:
        import rdkit

        root = Path(rdkit.__file__).parent
        present = [(root / rel, kind) for rel, kind in RDKIT_SAMPLES if (root / rel).exists()]
        if not present:
            raise FileNotFoundError(f"no sample molecule files found under {root}; choose another molecules.source")
        for path, kind in present:
            if kind == "sdf":
                yield from read_sdf(path)
            else:
                with _open_text(path) as f:
                    yield from (read_table(f, 0) if kind == "csv0" else read_smi(f))


class FileSource(MoleculeSource):
    name = "file"

    def records(self) -> Iterator[str]:
        path = Path(self.cfg.path or "")
        if not path.is_file():
            raise FileNotFoundError(f"molecules.path {str(path)!r} is not a file; point it at a .smi/.csv/.sdf file")
        yield from read_file(path, self.cfg.smiles_column)

    def describe(self) -> str:
        return f"file {self.cfg.path}"


class PubchemSource(MoleculeSource):
    name = "pubchem"

    def records(self) -> Iterator[str]:
        if self.cfg.path:
            path = Path(self.cfg.path)
            if not path.is_file():
                raise FileNotFoundError(f"molecules.path {str(path)!r} is not a file; point it at CID-SMILES(.gz)")
        else:
            # PubChem changes weekly: keep the prefix we read so re-runs see the same molecules.
            path = paths.DOWNLOADS / f"pubchem-CID-SMILES-first{self.cfg.max_raw}.tsv.gz"
            if not path.exists():
                _stream_pubchem(self.cfg.max_raw, path)
        with _open_text(path) as f:
            yield from read_pubchem(f)

    def describe(self) -> str:
        return f"pubchem {self.cfg.path or PUBCHEM_URL}"


class ChedlSource(MoleculeSource):
    """Real compounds to train on. The real_molecules stage scores on the same catalogue by
    default; it removes every train InChIKey, and its hash order puts the test split's
    molecules first, so the two never share a molecule, though they share a catalogue (say so
    when reporting; `real_molecules.source: nci` is a set this source never drew from)."""

    name = "chedl"

    def records(self) -> Iterator[str]:
        for smiles, _key, _name in read_chedl(chedl_wheel()):
            yield smiles

    def describe(self) -> str:
        return f"chedl ({CHEDL_DIST[0]}=={CHEDL_DIST[1]}: PubChem compounds with CAS numbers)"


SOURCES: dict[str, type[MoleculeSource]] = {
    s.name: s for s in (MosesSource, RdkitSamplesSource, FileSource, PubchemSource, ChedlSource)
}


def open_source(cfg: MoleculesConfig) -> MoleculeSource:
    return SOURCES[cfg.source](cfg)


def iter_smiles(cfg: MoleculesConfig) -> Iterator[str]:
    """At most `cfg.max_raw` raw records of the configured source, in file order."""
    return islice(open_source(cfg).records(), cfg.max_raw)
