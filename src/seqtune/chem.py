"""The chemistry layer: general RDKit and OPSIN helpers for molecule standardisation
(`seqtune.pipeline.molecules`) and the task plug-ins (`seqtune.tasks`): parsing, canonical
SMILES, exclusion reasons, SMILES validation, fingerprints (Tanimoto), string similarity and a
batched, process-safe OPSIN (name -> structure) call. A leaf: it imports RDKit (and runs the
OPSIN jar that py2opsin ships), nothing from seqtune.

    python -c "from seqtune.chem import opsin_to_smiles; print(opsin_to_smiles(['ethanol']))"

OPSIN is a Java program and starting its JVM costs ~0.5 s, more than parsing thousands of
names, so each process keeps one OPSIN running (`OpsinProcess`: names in on stdin, one SMILES
line out per name) and reuses it: checking one name went from ~0.57 s to ~3 ms
(`bench/opsin_calls.py`). Should that process fail, a call falls back to a one-off JVM over a
temp file. Both run the OPSIN jar that py2opsin ships, and both have a timeout (py2opsin's own
call has none, so seqtune runs the jar itself).
"""

from __future__ import annotations

import atexit
import difflib
import functools
import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

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
    """Raise a RuntimeError that says how to install Java when `java` is unusable; else set
    OPSIN's JVM options for every OPSIN this process starts."""
    if not _java_ok():
        _java_ok.cache_clear()  # let a user who installs Java mid-session retry
        raise RuntimeError(JAVA_HINT)
    # Neither OPSIN path passes JVM flags, but the JVM reads this variable itself. Set once and
    # left set (seqtune starts no other JVM): toggling it would race between threads.
    os.environ.setdefault("JAVA_TOOL_OPTIONS", OPSIN_JVM_OPTIONS)


def _sanitise_name(name: object) -> str:
    # OPSIN reads one name per line: a newline inside a prediction would shift every later
    # result, so collapse all whitespace runs to single spaces.
    return " ".join(str(name).split()) if name is not None else ""


def _opsin_jar() -> str:
    """The OPSIN jar py2opsin ships (both OPSIN paths run it), found without importing py2opsin:
    its import starts a JVM (`java -version`, with no timeout) only to warn."""
    import importlib.util

    spec = importlib.util.find_spec("py2opsin")
    folders = spec.submodule_search_locations if spec is not None else None
    jars = sorted(jar for folder in folders or () for jar in Path(folder).glob("opsin-cli-*-jar-with-dependencies.jar"))
    if not jars:
        raise RuntimeError("py2opsin (which ships the OPSIN jar) is not installed, or ships no OPSIN jar")
    return str(jars[-1])


def opsin_timeout(n_names: int) -> float:
    """Seconds one OPSIN call may take for `n_names`: generous, as a hang is what it is for (a
    JVM starts in ~0.5-1 s; a warm OPSIN parses ~5,000 names/s, a one-off JVM 2,000 in ~2 s)."""
    return 60 + 0.01 * n_names


class OpsinProcess:
    """One long-lived `java -jar opsin.jar -osmi` that reads names on stdin and writes one
    line per name (SMILES, empty when unparsable), as it does for a file, flushing each line.

    Every batch ends with a sentinel name of known answer: a reply that does not end with it
    means the lines went out of step, and the process is killed rather than trusted. Thread-safe
    (one batch at a time); a forked child never touches its parent's process (`_opsin_process`)."""

    SENTINEL = ("methane", "C")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen:
        # stderr to /dev/null: OPSIN explains every unparsable name there, and an unread pipe
        # would fill and stall it.
        self._buffer = b""
        return subprocess.Popen([shutil.which("java") or "java", "-jar", _opsin_jar(), "-osmi"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and self.pid == os.getpid() and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def _readline(self, deadline: float) -> bytes:
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("OPSIN did not answer in time")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"OPSIN exited (code {self._proc.poll()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def parse(self, names: Sequence[str], timeout: float) -> list[str]:
        """One output line per (single-line, non-empty) name; raises, and kills the process,
        on a timeout, an exit or lines out of step."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            payload = ("\n".join([*names, self.SENTINEL[0]]) + "\n").encode()

            def write() -> None:  # a thread: a large batch would fill both pipes and deadlock
                try:
                    proc.stdin.write(payload)
                    proc.stdin.flush()
                except (BrokenPipeError, ValueError):
                    pass  # the reader sees the exit

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            deadline = time.monotonic() + timeout
            try:
                lines = [self._readline(deadline).decode() for _ in range(len(names) + 1)]
                if lines[-1] != self.SENTINEL[1]:
                    raise RuntimeError(f"OPSIN's replies went out of step (sentinel answered {lines[-1]!r})")
            except BaseException:
                self.close()
                raise
            writer.join()
            return lines[:-1]


_OPSIN: OpsinProcess | None = None
_OPSIN_LOCK = threading.Lock()


def _opsin_process() -> OpsinProcess:
    """This process's OPSIN (a forked child starts its own: pipes cannot be shared)."""
    global _OPSIN
    with _OPSIN_LOCK:
        if _OPSIN is None or _OPSIN.pid != os.getpid():
            _OPSIN = OpsinProcess()
        return _OPSIN


@atexit.register
def _close_opsin() -> None:
    if _OPSIN is not None:
        _OPSIN.close()


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

    Through this process's long-lived OPSIN (`OpsinProcess`); should it fail, through one
    one-off JVM call over a temp file of its own (concurrent processes never share one), each
    with a timeout: a RuntimeError when both fail."""
    clean = [_sanitise_name(n) for n in names]
    todo = [i for i, n in enumerate(clean) if n]
    out: list[str | None] = [None] * len(clean)
    if not todo:
        return out
    require_java()
    try:
        result = _opsin_process().parse([clean[i] for i in todo], timeout=opsin_timeout(len(todo)))
    except (OSError, RuntimeError, TimeoutError) as e:
        log.warning("long-lived OPSIN failed (%s); parsing these %d names with a one-off JVM", e, len(todo))
        result = _opsin_once([clean[i] for i in todo])
    for i, smi in zip(todo, result):
        out[i] = smi or None
    return out


def _opsin_once(names: list[str], timeout: float | None = None) -> list[str]:
    """One JVM for `names` (single-line, non-empty) over a temp file of its own: OPSIN's jar
    run as py2opsin runs it (`java -jar opsin.jar -osmi FILE`, one output line per name, empty
    when unparsable), but killed after `timeout` s (default `opsin_timeout`), which py2opsin
    (1.2) cannot do: a RuntimeError then says so."""
    timeout = opsin_timeout(len(names)) if timeout is None else timeout
    fd, tmp = tempfile.mkstemp(prefix=f"opsin-{os.getpid()}-", suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{n}\n" for n in names))
        cmd = [shutil.which("java") or "java", "-jar", _opsin_jar(), "-osmi", tmp]
        try:
            # stderr captured, not shown: OPSIN explains every unparsable name there.
            res = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"OPSIN (a one-off JVM) did not finish {len(names)} names within {timeout:g} s "
                               "and was killed") from e
    finally:
        os.unlink(tmp)
    lines = res.stdout.decode(errors="replace").replace("\r", "").split("\n")[:-1]
    if res.returncode != 0 or len(lines) != len(names):
        got = f"exit code {res.returncode}" if res.returncode else f"{len(lines)} results for {len(names)} names"
        raise RuntimeError(f"OPSIN returned {got}; check that `java -jar` works (Java 8+): "
                           f"{res.stderr.decode(errors='replace')[-500:]}")
    return lines


def opsin_canonical(names: Sequence[str | None]) -> list[str | None]:
    """OPSIN, then RDKit canonical isomeric SMILES (None when either step fails)."""
    return [canonical_smiles(s) for s in opsin_to_smiles(names)]
