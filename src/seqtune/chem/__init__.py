"""The chemistry layer: general RDKit and OPSIN helpers for molecule standardisation
(`seqtune.pipeline.molecules`) and the task plug-ins (`seqtune.tasks`): parsing, canonical
SMILES, exclusion reasons, SMILES validation, fingerprints (Tanimoto), string similarity and a
batched, process-safe OPSIN (name -> structure) call. A leaf: it imports RDKit and its own
`opsin_jvm` (the OPSIN Java process it runs), nothing else from seqtune.

    python -c "from seqtune.chem import opsin_to_smiles; print(opsin_to_smiles(['ethanol']))"

`opsin_to_smiles` asks this process's long-lived OPSIN and, should it fail, a one-off JVM
(`opsin_jvm`: starting a JVM per call would cost more than parsing thousands of names).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence

from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator

from seqtune.chem import opsin_jvm

log = logging.getLogger(__name__)

# RDKit prints every parse failure to stderr; failures are expected (model outputs) and
# counted by the callers, so silence the noise.
RDLogger.DisableLog("rdApp.*")

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

    openclatura fails on metals, drops isotopes and mis-names radicals (measured when the
    labelling was built: such molecules are dropped with this reason rather than mislabelled)."""
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


def _sanitise_name(name: object) -> str:
    # OPSIN reads one name per line: a newline inside a prediction would shift every later
    # result, so collapse all whitespace runs to single spaces.
    return " ".join(str(name).split()) if name is not None else ""


WARM_NAMES = ("ethanol", "2-methylpropan-1-ol", "N-(4-hydroxyphenyl)acetamide", "4-hydroxy-3-methoxybenzaldehyde",
              "1,3,7-trimethyl-3,7-dihydro-1H-purine-2,6-dione", "2-[4-(2-methylpropyl)phenyl]propanoic acid",
              "not a chemical name", "cyclohexanol")


def warm_opsin(rounds: int = 125) -> None:
    """Start this process's OPSIN and run it through ~1,000 names, so that a server's first
    request does not pay the JVM start and its memory is at its working size before serving
    (RSS ~105 MiB after one name, ~190 MiB after this, ~200 MiB after thousands more)."""
    opsin_to_smiles(list(WARM_NAMES) * rounds)


def opsin_to_smiles(names: Sequence[str | None]) -> list[str | None]:
    """Parse names with OPSIN: SMILES per name, None when unparsable.

    Through this process's long-lived OPSIN (`opsin_jvm.OpsinProcess`); should it fail,
    through one one-off JVM call over a temp file of its own (concurrent processes never share
    one), each with a timeout: a RuntimeError when both fail."""
    clean = [_sanitise_name(n) for n in names]
    todo = [i for i, n in enumerate(clean) if n]
    out: list[str | None] = [None] * len(clean)
    if not todo:
        return out
    opsin_jvm.require_java()
    try:
        result = opsin_jvm.shared_process().parse([clean[i] for i in todo], timeout=opsin_jvm.opsin_timeout(len(todo)))
    except (OSError, RuntimeError, TimeoutError) as e:
        log.warning("long-lived OPSIN failed (%s); parsing these %d names with a one-off JVM", e, len(todo))
        result = opsin_jvm.run_once([clean[i] for i in todo])
    for i, smi in zip(todo, result):
        out[i] = smi or None
    return out


def opsin_canonical(names: Sequence[str | None]) -> list[str | None]:
    """OPSIN, then RDKit canonical isomeric SMILES (None when either step fails)."""
    return [canonical_smiles(s) for s in opsin_to_smiles(names)]
