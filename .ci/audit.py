"""CI's vulnerability audit of requirements.lock: runs pip-audit, then says what its answer means.

    python .ci/audit.py PIP_AUDIT requirements.lock      # exit 1 only for a known vulnerability

pip-audit asks an advisory database about every pinned package. Where that database cannot
be reached, or answers "not found" for every package (a mirror without the vulnerability
API), pip-audit still prints "No known vulnerabilities found" and exits 0: here that is
reported as "advisory database not reachable: audit not run", never as a clean audit.
Unreachability does not fail CI (this machine may reach only the package index); a
vulnerability in a package that was audited does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 900
NOT_RUN = "advisory database not reachable: audit not run"


def verdict(report: dict | None, why: str = "") -> tuple[int, str]:
    """(exit status, message) for pip-audit's JSON report; None: pip-audit gave none."""
    if report is None:
        return 0, f"{NOT_RUN} ({why})" if why else NOT_RUN
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    if not audited:
        reason = skipped[0]["skip_reason"] if skipped else "no package in the report"
        return 0, f"{NOT_RUN} (0 of {len(deps)} packages audited; e.g. {reason})"
    found = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]
    lines = [f"{n}=={ver}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})"
             for n, ver, v in found]
    head = f"audited {len(audited)} of {len(deps)} packages"
    if skipped:
        head += f"; not audited: {', '.join(sorted(d['name'] for d in skipped))}"
    if found:
        return 1, f"{head}\n{len(found)} known vulnerabilities:\n  " + "\n  ".join(lines)
    return 0, f"{head}: no known vulnerabilities"


def pins(lock_text: str) -> list[str]:
    """The `name==version` of every entry of a hashed lock, its --hash options dropped: the
    lock pins every package, so pip-audit needs no resolution (--no-deps). Given the hashes,
    pip-audit would instead resolve and download every file in a scratch venv to check them."""
    out = []
    for line in re.sub(r"\\\n", " ", lock_text).splitlines():
        spec = line.split("#", 1)[0].split()
        if spec and "==" in spec[0] and not spec[0].startswith("-"):
            out.append(spec[0].split("+", 1)[0])  # torch 2.13.0+cpu: advisories name 2.13.0
    return out


def main(pip_audit: str, lock: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        req = Path(tmp) / "pins.txt"
        req.write_text("".join(f"{p}\n" for p in pins(Path(lock).read_text())))
        cmd = [pip_audit, "-r", str(req), "--no-deps", "--progress-spinner", "off", "--timeout", "30",
               "-f", "json", "-o", str(out)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code, msg = verdict(None, f"pip-audit did not finish within {TIMEOUT_S} s")
        else:
            try:
                report = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
            except ValueError:  # a report cut short
                report = None
            # pip-audit exits 1 for vulnerabilities (the report says which) and for its own
            # errors, e.g. a connection refused (no report then).
            tail = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            code, msg = verdict(report, f"pip-audit: {tail}")
    print(f"pip-audit of {lock}: {msg}")
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
