"""The chemistry layer: general RDKit and OPSIN helpers for molecule standardisation
(`seqtune.pipeline.molecules`) and the task plug-ins (`seqtune.tasks`): parsing, canonical
SMILES, exclusion reasons, SMILES validation, fingerprints (Tanimoto), string similarity and a
batched, process-safe OPSIN (name -> structure) call. A leaf: it imports RDKit (and py2opsin),
nothing from seqtune.

    python -c "from seqtune.chem import opsin_to_smiles; print(opsin_to_smiles(['ethanol']))"

OPSIN is a Java program: every call starts a JVM (~1 s), so callers pass whole batches
(one call per chunk) rather than single names.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence

from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator

log = logging.getLogger(__name__)

# RDKit prints every parse failure to stderr; failures are expected (model outputs) and
# counted by the callers, so silence the noise.
RDLogger.DisableLog("rdApp.*")

# OPSIN runs once per batch, so JVM start-up dominates: C1-only JIT and the serial GC halve
# it and, measured here, run 2,000 names in 2.2 s instead of 6.5 s on a busy 2-core machine.
# Used only when the user has not set JAVA_TOOL_OPTIONS themselves.
OPSIN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

JAVA_HINT = (
    "OPSIN needs Java (8 or newer) on PATH, and `java` was not found. Install a Java runtime, "
    "e.g. `sudo apt-get install -y default-jre-headless` (Debian/Ubuntu), "
    "`brew install openjdk` (macOS) or `conda install -c conda-forge openjdk`."
)

# Elements an organic-name generator (and OPSIN round-trip) handles: H, He, B, C, N, O, F, Ne,
# Si, P, S, Cl, Ar, As, Se, Br, Kr, Te, I, Xe, At, Rn. Everything else counts as a metal.
NON_METALS: frozenset[int] = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 33, 34, 35, 36, 52, 53, 54, 85, 86})

_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def mol_from_smiles(smiles: str | None) -> Chem.Mol | None:
    """RDKit molecule, or None for anything RDKit cannot parse (never raises)."""
    if not smiles or not isinstance(smiles, str):
        return None
    try:
        return Chem.MolFromSmiles(smiles.strip())
    except Exception:  # RDKit raises on some pathological inputs instead of returning None
        return None


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit canonical isomeric SMILES, or None when unparsable."""
    mol = mol_from_smiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else None


def random_smiles(smiles: str, n: int, seed: int) -> list[str]:
    """`n` randomized SMILES spellings of one molecule (random atom order and branches), each
    unlike `smiles` and one another where the molecule has that many; repeats fill the rest so
    the count (and the compute it costs) is always `n`. Deterministic for a given `seed` in
    [0, 2**31): RDKit draws unseeded for larger ones."""
    if not 0 <= seed < 2**31:
        raise ValueError(f"seed must be in [0, 2**31), got {seed}")
    mol = mol_from_smiles(smiles)
    if mol is None:
        raise ValueError(f"not a SMILES RDKit can parse: {smiles!r}")
    if n <= 0:
        return []
    found = list(dict.fromkeys(s for s in Chem.MolToRandomSmilesVect(mol, 4 * n, randomSeed=seed) if s != smiles))
    pool = found[:n] or [smiles]  # e.g. a molecule with one spelling only
    return [pool[i % len(pool)] for i in range(n)]


def exclusion_reason(mol: Chem.Mol) -> str | None:
    """Why a molecule can't be named reliably (metal, radical, isotope, wildcard), else None.

    openclatura fails on metals, drops isotopes and mis-names radicals (DESIGN.md)."""
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        if z == 0:
            return "wildcard_atom"
        if z not in NON_METALS:
            return "metal"
        if atom.GetNumRadicalElectrons():
            return "radical"
        if atom.GetIsotope():
            return "isotope"
    return None


def smiles_problem(smiles: str) -> str | None:
    """A user-facing message for a SMILES that RDKit cannot use, or None when it parses."""
    if not isinstance(smiles, str) or not smiles.strip():
        return "empty input: expected a SMILES string such as 'CCO'"
    if any(c.isspace() for c in smiles.strip()):
        return f"not a valid SMILES: {smiles!r} contains whitespace"
    mol = mol_from_smiles(smiles)
    if mol is None:
        return f"not a valid SMILES: RDKit could not parse {smiles!r}"
    if mol.GetNumAtoms() == 0:
        return "not a valid SMILES: no atoms"
    return None


def tanimoto(a: str | None, b: str | None) -> float:
    """Tanimoto similarity of Morgan (r=2, 2048 bit) fingerprints; 0.0 when either is unparsable."""
    ma, mb = mol_from_smiles(a), mol_from_smiles(b)
    if ma is None or mb is None:
        return 0.0
    return float(DataStructs.TanimotoSimilarity(_MORGAN.GetFingerprint(ma), _MORGAN.GetFingerprint(mb)))


def char_similarity(a: str, b: str) -> float:
    """difflib ratio in [0, 1] (1 = identical strings)."""
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@functools.cache
def _java_ok() -> bool:
    java = shutil.which("java")
    if java is None:
        return False
    try:
        subprocess.run([java, "-version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def require_java() -> None:
    """Raise a RuntimeError that says how to install Java when `java` is unusable."""
    if not _java_ok():
        _java_ok.cache_clear()  # let a user who installs Java mid-session retry
        raise RuntimeError(JAVA_HINT)


def _sanitise_name(name: object) -> str:
    # OPSIN reads one name per line: a newline inside a prediction would shift every later
    # result, so collapse all whitespace runs to single spaces.
    return " ".join(str(name).split()) if name is not None else ""


def opsin_to_smiles(names: Sequence[str | None]) -> list[str | None]:
    """Parse names with OPSIN in ONE JVM call: SMILES per name, None when unparsable.

    Each call writes its input to its own temp file (py2opsin's default is a fixed relative
    path that concurrent processes would clobber)."""
    clean = [_sanitise_name(n) for n in names]
    todo = [i for i, n in enumerate(clean) if n]
    out: list[str | None] = [None] * len(clean)
    if not todo:
        return out
    require_java()
    with warnings.catch_warnings():
        # py2opsin warns at import when java is missing, and for every unparsable name.
        warnings.simplefilter("ignore")
        from py2opsin import py2opsin

        fd, tmp = tempfile.mkstemp(prefix=f"opsin-{os.getpid()}-", suffix=".txt")
        os.close(fd)
        # py2opsin passes no JVM flags, but the JVM reads this variable itself. Set once and
        # left set (seqtune starts no other JVM): toggling it would race between threads.
        os.environ.setdefault("JAVA_TOOL_OPTIONS", OPSIN_JVM_OPTIONS)
        try:
            result = py2opsin([clean[i] for i in todo], tmp_fpath=tmp)
        finally:
            if os.path.exists(tmp):  # py2opsin removes it itself on success
                os.unlink(tmp)
    if result is False or len(result) != len(todo):
        raise RuntimeError(
            f"OPSIN returned {'an error' if result is False else f'{len(result)} results for {len(todo)} names'}; "
            "check that `java -jar` works (Java 8+)"
        )
    for i, smi in zip(todo, result):
        out[i] = smi or None
    return out


def opsin_canonical(names: Sequence[str | None]) -> list[str | None]:
    """OPSIN, then RDKit canonical isomeric SMILES (None when either step fails)."""
    return [canonical_smiles(s) for s in opsin_to_smiles(names)]
