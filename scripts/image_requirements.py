"""python scripts/image_requirements.py [--lock requirements.lock] [--bentofile service/bentofile.yaml] OUT
   python scripts/image_requirements.py --package torch OUT     # one package's entry only (image.sh's torch wheel)

The container image's requirements, hash-pinned, taken out of the project's hashed lock: the
bentofile's packages and BentoML, with everything they need, each entry exactly as the lock has it
(version and every sha256). scripts/image.sh installs the image's venv from OUT with
`uv pip install --require-hashes`, so the image gets the packages the tests ran with, and a file
whose hash the lock does not list is refused; BentoML's own install step then finds nothing left
to fetch (it runs offline).

Which packages a package needs is read from pip-compile's `# via` annotations (each entry names
the packages that pulled it in), so nothing is resolved again. A bentofile pin that the lock does
not have, at that version, is an error: the two must not drift apart.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.utils import canonicalize_name

ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")
VIA_ONE = re.compile(r"^\s+# via (?P<parent>.+)$")
VIA_MANY = re.compile(r"^\s+#\s{3}(?P<parent>.+)$")
# The image runs BentoML, which the bentofile does not list (BentoML adds it itself).
ALWAYS = ("bentoml",)


@dataclass
class LockEntry:
    name: str
    version: str
    lines: list[str] = field(default_factory=list)  # the entry's requirement and --hash lines
    parents: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, LockEntry]:
    entries: dict[str, LockEntry] = {}
    current: LockEntry | None = None
    in_via = False
    for line in path.read_text().splitlines():
        if m := ENTRY.match(line):
            current = LockEntry(m["name"], m["version"], [line])
            entries[canonicalize_name(m["name"])] = current
            in_via = False
        elif current is None:
            continue
        elif line.strip().startswith("--hash="):
            current.lines.append(line)
        elif m := VIA_ONE.match(line):
            current.parents.add(m["parent"].strip())
            in_via = False
        elif re.match(r"^\s+# via$", line):
            in_via = True
        elif in_via and (m := VIA_MANY.match(line)):
            current.parents.add(m["parent"].strip())
        else:
            in_via = False
    for entry in entries.values():
        # "seqtune (pyproject.toml)" and "-r ..." are roots of the lock, not packages.
        entry.parents = {canonicalize_name(p) for p in entry.parents if not p.startswith("-") and "(" not in p}
    return entries


def bentofile_pins(path: Path) -> dict[str, str]:
    packages = yaml.safe_load(path.read_text())["python"]["packages"]
    pins = {}
    for spec in packages:
        name, sep, version = spec.partition("==")
        if not sep:
            raise SystemExit(f"{path}: {spec!r} is not pinned with ==")
        pins[canonicalize_name(name)] = version.strip()
    return pins


def closure(entries: dict[str, LockEntry], roots: list[str]) -> list[str]:
    children: dict[str, set[str]] = {}
    for name, entry in entries.items():
        for parent in entry.parents:
            children.setdefault(parent, set()).add(name)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(children.get(name, ()))
    return sorted(seen)


def image_requirements(lock: Path, bentofile: Path) -> str:
    entries = read_lock(lock)
    pins = bentofile_pins(bentofile)
    for name, version in pins.items():
        entry = entries.get(name)
        if entry is None:
            raise SystemExit(f"{bentofile}: {name} is not in {lock}")
        # The lock may carry a local version label (torch 2.13.0+cpu) that the bentofile's pin omits.
        if entry.version.split("+")[0] != version.split("+")[0]:
            raise SystemExit(f"{bentofile} pins {name}=={version}, {lock} has {entry.version}")
    roots = sorted(set(pins) | set(ALWAYS))
    missing = [r for r in roots if r not in entries]
    if missing:
        raise SystemExit(f"{lock} has no entry for {', '.join(missing)}")
    names = closure(entries, roots)
    header = (
        f"# The image's requirements: {', '.join(roots)} and what they need, as {lock.name} pins them\n"
        f"# (scripts/image_requirements.py; {len(names)} packages). Install with --require-hashes.\n"
    )
    return header + "\n".join(requirement_text(entries[name]) for name in names) + "\n"


def requirement_text(entry: LockEntry) -> str:
    """The entry's requirement and --hash lines, as in the lock, without a trailing continuation."""
    return "\n".join([*entry.lines[:-1], entry.lines[-1].rstrip(" \\")])


def package_requirement(lock: Path, package: str) -> str:
    entry = read_lock(lock).get(canonicalize_name(package))
    if entry is None:
        raise SystemExit(f"{lock} has no entry for {package}")
    return requirement_text(entry) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"))
    parser.add_argument("--bentofile", type=Path, default=Path("service/bentofile.yaml"))
    parser.add_argument("--package", help="write only this package's entry of the lock")
    args = parser.parse_args(argv)
    if args.package:
        text = package_requirement(args.lock, args.package)
    else:
        text = image_requirements(args.lock, args.bentofile)
    args.out.write_text(text)
    print(f"{args.out}: {text.count('==')} pinned packages", file=sys.stderr)


if __name__ == "__main__":
    main()
