"""The OPSIN JVM: one long-lived OPSIN per process, a timed one-off JVM as the fallback, the Java check.

    python -c "from seqtune.chem.opsin_jvm import shared_process; print(shared_process().parse(['ethanol'], 60))"

OPSIN is a Java program and starting its JVM costs ~0.5 s, more than parsing thousands of
names, so each process keeps one OPSIN running (`OpsinProcess`: names in on stdin, one SMILES
line out per name) and reuses it: checking one name went from ~0.57 s to ~3 ms
(`bench/opsin_calls.py`). Should that process fail, `seqtune.chem.opsin_to_smiles` falls back
to a one-off JVM over a temp file (`run_once`). Both run the OPSIN jar that py2opsin ships, and
both have a timeout (py2opsin's own call has none, so seqtune runs the jar itself). Imports
nothing from seqtune.
"""

from __future__ import annotations

import atexit
import functools
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# OPSIN runs once per batch, so JVM start-up dominates: C1-only JIT and the serial GC halve
# it and, measured here, run 2,000 names in 2.2 s instead of 6.5 s on a busy 2-core machine.
# Used only when the user has not set JAVA_TOOL_OPTIONS themselves.
OPSIN_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

JAVA_HINT = (
    "OPSIN needs Java (8 or newer) on PATH, and `java` was not found. Install a Java runtime, "
    "e.g. `sudo apt-get install -y default-jre-headless` (Debian/Ubuntu), "
    "`brew install openjdk` (macOS) or `conda install -c conda-forge openjdk`."
)

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
    (one batch at a time); a forked child never touches its parent's process (`shared_process`)."""

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


def shared_process() -> OpsinProcess:
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


def run_once(names: list[str], timeout: float | None = None) -> list[str]:
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
