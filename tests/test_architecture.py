"""The package's import direction (ARCHITECTURE.md), read statically from the source.

    python -m pytest -q tests/test_architecture.py

Every module under src/seqtune is parsed with `ast`; every static import is an edge,
function-level ones included (they run too, just later). The rules:

- `chem` imports nothing from seqtune outside itself; `tasks` only `chem`, shared
  infrastructure and tasks;
- `inference` only `tasks`, `chem`, shared infrastructure and itself (never the pipeline,
  experiments or serving); the pipeline, experiments and serving may import it;
- shared infrastructure (config, paths, files, log, tracking, downloads, secret_source) imports only itself,
  `chem` and the task registry `seqtune.tasks` (config validates task names against it);
- `pipeline` never imports `experiments` or `serving`, and one stage module never imports
  another stage module (stages talk through files under data/ and MLflow);
- `experiments` and `serving` may import the pipeline, not each other;
- nothing imports the entry points (cli, the `seqtune.train` launcher, the `seqtune.pyfunc`
  alias) but the launcher, which runs cli's `train` command; nothing imports `service`,
  `tests`, `bench`;
- no import cycle among modules at module level (what runs at import time), and none either
  through function-level imports: deferring an import hides a cycle, it does not break it.

Outside the package, service/*.py and bench/*.py are parsed the same way:

- `service/` imports from seqtune only `config`, `log`, `tasks` and `serving` (what it needs
  from the pipeline or chem comes through `seqtune.serving.runtime`), nothing from tests/bench;
- a bench script imports no other bench script: code two scripts share lives in
  `bench/common.py`, the molecule list in the data module `bench/known_molecules.py` (which
  imports nothing), and neither imports another bench module; bench imports any seqtune
  module but the entry points, and nothing from `tests` or `service`.

And every module under src/seqtune is named in ARCHITECTURE.md's table (by its short name in
its package's row, as the table names them, or by dotted name or path anywhere), so a new
module without a documented place fails.

The rules are functions of an import graph (or of the document's text), so each is also
checked on a small fake input that breaks it: a rule that cannot fail would pass vacuously.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

STAGES = frozenset(f"seqtune.pipeline.{m}" for m in ("molecules", "real_molecules", "base_model", "data", "train", "evaluate",
                                                          "register"))
"""The DVC stages' modules, each named as its stage."""
INFRA = frozenset(f"seqtune.{m}" for m in ("config", "paths", "files", "log", "tracking", "tracking_server", "downloads", "secret_source"))
ENTRY = frozenset({"seqtune.cli", "seqtune.train", "seqtune.pyfunc"})
"""Entry points and aliases for old names: they may import anything, nothing imports them
(but the one import in ENTRY_IMPORTS)."""
ENTRY_IMPORTS = frozenset({("seqtune.train", "seqtune.cli")})
"""(importer, entry point): the launcher `python -m seqtune.train` runs cli's `train` command."""
OUTSIDE = ("service", "tests", "bench")
REPO = SRC.parent
ARCHITECTURE = REPO / "ARCHITECTURE.md"
SERVICE_MAY_IMPORT = frozenset({"seqtune.config", "seqtune.log", "seqtune.tasks", "seqtune.serving"})
"""What service/ may import from seqtune (and every `seqtune.serving.*` module)."""
BENCH_SHARED = frozenset({"common", "known_molecules"})
"""The bench modules scripts may import: the helpers, and the data module."""
BENCH_DATA = frozenset({"known_molecules"})
"""Bench modules that only hold data: they import nothing."""


@dataclass(frozen=True)
class Import:
    target: str
    module_level: bool
    """Runs when the importing module is imported (not inside a function, an
    `if TYPE_CHECKING:` block or an `if __name__ == "__main__":` block)."""
    line: int


def layer(module: str) -> str:
    """The subsystem a module belongs to (a new module must be placed in one)."""
    if module == "seqtune":
        return "root"
    if module in INFRA:
        return "infra"
    if module in ENTRY:
        return "entry"
    if module == "seqtune.chem" or module.startswith("seqtune.chem."):
        return "chem"
    for sub in ("tasks", "inference", "pipeline", "experiments", "serving"):
        if module == f"seqtune.{sub}" or module.startswith(f"seqtune.{sub}."):
            return sub
    if module.split(".")[0] in OUTSIDE:
        return "outside"
    if module == "seqtune" or module.startswith("seqtune."):
        return "unplaced"
    return "external"


# ------------------------------------------------------------------------ reading the source


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def parse_imports(source: str, module: str, *, is_package: bool, known: set[str]) -> list[Import]:
    """Every static import in `source` (the text of `module`), resolved to module names.

    `from a import b` is an edge to `a.b` when that is a module in `known`, else to `a`."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and (_is_type_checking(child.test) or _is_main_guard(child.test)):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, module_level, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(Import(sub if sub in known else base, module_level, child.lineno))
            visit(child, module_level)

    visit(ast.parse(source), True)
    return found


def package_graph(src: Path = SRC) -> dict[str, list[Import]]:
    """module -> its imports, for every module under src/seqtune."""
    files = sorted((src / "seqtune").rglob("*.py"))
    known = {module_name(f, src) for f in files}
    return {
        module_name(f, src): parse_imports(f.read_text(), module_name(f, src), is_package=f.name == "__init__.py", known=known)
        for f in files
    }


def folder_graph(folder: Path, prefix: str = "", src: Path = SRC) -> dict[str, list[Import]]:
    """module -> its imports, for the *.py files directly in `folder` (service/, bench/: not
    packages), named `prefix` + the file's stem as they are imported (`service.service`;
    `common`, with bench/ first on sys.path)."""
    files = sorted(folder.glob("*.py"))
    names = {f"{prefix}{f.stem}": f for f in files}
    known = {module_name(f, src) for f in (src / "seqtune").rglob("*.py")} | set(names)
    return {m: parse_imports(f.read_text(), m, is_package=False, known=known) for m, f in names.items()}


def has_main_guard(source: str) -> bool:
    """An `if __name__ == "__main__":` block at module level: a script, not a library."""
    return any(isinstance(n, ast.If) and _is_main_guard(n.test) for n in ast.parse(source).body)


# ------------------------------------------------------------------------------------ the rules


def direction_violations(graph: dict[str, list[Import]]) -> list[str]:
    """Imports against the layering, as 'module:line -> target (why)'."""
    allowed = {
        "root": set(),
        "chem": {"chem"},
        "infra": {"infra", "chem"},
        "tasks": {"tasks", "chem", "infra"},
        "inference": {"inference", "tasks", "chem", "infra"},
        "pipeline": {"pipeline", "inference", "tasks", "chem", "infra"},
        "experiments": {"experiments", "pipeline", "inference", "tasks", "chem", "infra"},
        "serving": {"serving", "pipeline", "inference", "tasks", "chem", "infra"},
        "entry": {"entry", "pipeline", "inference", "experiments", "serving", "tasks", "chem", "infra", "root"},
    }
    bad = []
    for module, imports in sorted(graph.items()):
        src_layer = layer(module)
        if src_layer == "unplaced":
            bad.append(f"{module}: not placed in a subsystem (add it to ARCHITECTURE.md and this test)")
            continue
        for imp in imports:
            dst = layer(imp.target)
            where = f"{module}:{imp.line} -> {imp.target}"
            if dst == "external":
                continue
            if dst == "outside":
                bad.append(f"{where} (nothing in src/seqtune imports {', '.join(OUTSIDE)})")
            elif dst == "entry" and imp.target != module and (module, imp.target) not in ENTRY_IMPORTS:
                bad.append(f"{where} (nothing imports an entry point)")
            elif dst == "unplaced":
                bad.append(f"{where} (not placed in a subsystem)")
            elif src_layer == "infra" and dst == "tasks" and imp.target == "seqtune.tasks":
                continue  # the task-name registry (imports nothing at import time)
            elif dst not in allowed[src_layer]:
                bad.append(f"{where} ({src_layer} may not import {dst})")
            elif module in STAGES and imp.target in STAGES and imp.target != module:
                bad.append(f"{where} (a stage imports another stage: share a helper module instead)")
    return bad


def import_cycles(graph: dict[str, list[Import]], *, module_level_only: bool = True) -> list[list[str]]:
    """Import cycles among the graph's modules (Tarjan's strongly connected components),
    counting only module-level imports unless `module_level_only` is False."""
    edges = {
        m: sorted({i.target for i in imps if (i.module_level or not module_level_only) and i.target in graph})
        for m, imps in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges[v]:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return cycles


def service_violations(graph: dict[str, list[Import]]) -> list[str]:
    """Imports of service/ against its rule, as 'module:line -> target (why)'."""
    bad = []
    for module, imports in sorted(graph.items()):
        for imp in imports:
            where, top = f"{module}:{imp.line} -> {imp.target}", imp.target.split(".")[0]
            if top == "seqtune" and not (imp.target in SERVICE_MAY_IMPORT or imp.target.startswith("seqtune.serving.")):
                bad.append(f"{where} (service/ imports from seqtune only config, log, tasks and serving)")
            elif top in ("tests", "bench"):
                bad.append(f"{where} (service/ imports nothing from tests or bench)")
    return bad


def bench_violations(graph: dict[str, list[Import]]) -> list[str]:
    """Imports of bench/ (modules named by file stem) against its rules."""
    bad = []
    for module, imports in sorted(graph.items()):
        for imp in imports:
            where, top = f"{module}:{imp.line} -> {imp.target}", imp.target.split(".")[0]
            if module in BENCH_DATA and top != "__future__":
                bad.append(f"{where} (a bench data module imports nothing)")
            elif top in graph and top != module:
                if module in BENCH_SHARED:
                    bad.append(f"{where} (common.py and known_molecules.py import no other bench module)")
                elif top not in BENCH_SHARED:
                    bad.append(f"{where} (a bench script imports another bench script: share the code through bench/common.py)")
            elif layer(imp.target) == "entry":
                bad.append(f"{where} (bench imports no entry point: run `python -m seqtune.cli` instead)")
            elif top in OUTSIDE:
                bad.append(f"{where} (bench imports nothing from service or tests, and bench/ is not a package)")
            elif layer(imp.target) == "unplaced":
                bad.append(f"{where} (not a module of the package)")
    return bad


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def undocumented(modules: set[str], doc: str) -> list[str]:
    """Modules of the package that ARCHITECTURE.md (`doc`) gives no place: named neither in
    its table's row for their package by short name (`bento` in the `serving/` row; a
    top-level module in the `top level` row or a row of its own, like `chem`; a subpackage by
    its row `tasks/`) nor anywhere by dotted name (`serving.bento`, `seqtune.serving.bento`)
    or path (`serving/bento.py`, `src/seqtune/serving/bento.py`)."""
    rows: dict[str, set[str]] = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2:
            rows[cells[0].strip("`")] = _backticked("|".join(cells[1:]))
    anywhere = _backticked(doc)
    missing = []
    for module in sorted(modules):
        parts = module.split(".")[1:]
        if not parts:  # the package itself: `src/seqtune/`
            placed = "src/seqtune/" in anywhere
        else:
            rel, path = ".".join(parts), "/".join(parts)
            names = {module, rel, f"{path}.py", f"src/seqtune/{path}.py", f"{path}/", f"src/seqtune/{path}/"}
            placed = bool(names & anywhere)
            if len(parts) == 1:
                placed |= parts[0] in rows or f"{parts[0]}/" in rows or parts[0] in rows.get("top level", set())
            else:
                placed |= ".".join(parts[1:]) in rows.get(f"{parts[0]}/", set())
        if not placed:
            missing.append(f"{module}: not named in ARCHITECTURE.md (add it to its package's row)")
    return missing


# ------------------------------------------------------------------------- the real package


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return package_graph()


def test_the_package_imports_in_the_documented_direction(graph):
    assert direction_violations(graph) == []


def test_no_import_cycle_at_module_level(graph):
    assert import_cycles(graph) == []


def test_no_import_cycle_through_function_level_imports_either(graph):
    assert import_cycles(graph, module_level_only=False) == []


def test_stages_are_the_pipeline_modules_with_a_main(graph):
    # A new stage module gets the stage rule: the list is what the code says it is.
    with_main = set()
    for module in graph:
        if layer(module) == "pipeline" and module != "seqtune.pipeline":
            path = SRC / (module.replace(".", "/") + ".py")
            tree = ast.parse(path.read_text())
            if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
                with_main.add(module)
    assert with_main == STAGES


def test_the_graph_sees_every_module_and_function_level_imports(graph):
    files = sorted((SRC / "seqtune").rglob("*.py"))
    assert set(graph) == {module_name(f) for f in files} and len(graph) > 40
    assert all(layer(m) not in ("unplaced", "external", "outside") for m in graph)
    # cli imports the stages inside its commands (`from seqtune.pipeline import molecules as stage`).
    cli = {(i.target, i.module_level) for i in graph["seqtune.cli"]}
    assert ("seqtune.pipeline.molecules", False) in cli and ("seqtune.config", True) in cli
    # the launcher imports cli (and sys, for its arguments) only under `if __name__ == "__main__":`.
    assert {(i.target, i.module_level) for i in graph["seqtune.train"]} == {("sys", False), ("seqtune.cli", False)}


@pytest.fixture(scope="module")
def service() -> dict[str, list[Import]]:
    return folder_graph(REPO / "service", "service.")


@pytest.fixture(scope="module")
def bench() -> dict[str, list[Import]]:
    return folder_graph(REPO / "bench")


def test_the_service_imports_only_config_log_tasks_and_serving(service):
    assert service_violations(service) == []


def test_the_service_graph_sees_its_function_level_imports(service):
    assert "service.service" in service
    got = {(i.target, i.module_level) for i in service["service.service"]}
    assert ("seqtune.serving.guard", True) in got and ("seqtune.serving.security", True) in got
    assert ("seqtune.serving.runtime", False) in got  # load_generator, check_weights, warm_opsin: lazily


def test_bench_scripts_share_code_only_through_common(bench):
    assert bench_violations(bench) == []


def test_bench_graph_sees_the_shared_modules_and_every_script_is_one(bench):
    assert BENCH_SHARED <= set(bench) and len(bench) > 10
    uses = {m for m, imps in bench.items() for i in imps if i.target == "common"}
    assert {"train_throughput", "serve_load", "champion_check", "loss_head", "generation_speed", "decode_paths",
            "request_latency", "train_step"} <= uses
    assert ("known_molecules", False) in {(i.target, i.module_level) for i in bench["request_latency"]}
    # a shared module is a library, every other bench module a script (`make bench` runs each)
    scripts = {m for m in bench if has_main_guard((REPO / "bench" / f"{m}.py").read_text())}
    assert scripts == set(bench) - BENCH_SHARED


def test_every_package_module_has_a_place_in_architecture_md(graph):
    assert undocumented(set(graph), ARCHITECTURE.read_text()) == []


# ----------------------------------------------------------- each rule fails on a broken graph


def _fake(**edges: list[str | tuple[str, bool]]) -> dict[str, list[Import]]:
    """A fake graph: module (dots as '__') -> targets; a (target, False) pair is function-level."""
    graph: dict[str, list[Import]] = {}
    for module, targets in edges.items():
        imps = []
        for t in targets:
            target, top = t if isinstance(t, tuple) else (t, True)
            imps.append(Import(target, top, 1))
        graph[module.replace("__", ".")] = imps
    return graph


CLEAN = dict(
    seqtune__chem=["rdkit"],
    seqtune__config=["seqtune.tasks", "pydantic"],
    seqtune__tasks=[],
    seqtune__tasks__smiles2formula=["seqtune.chem", "seqtune.tasks.base"],
    seqtune__tasks__base=[],
    seqtune__pipeline__molecules=["seqtune.chem", "seqtune.pipeline.molecule_sources", "seqtune.paths"],
    seqtune__pipeline__molecule_sources=["seqtune.downloads"],
    seqtune__pipeline__train=["seqtune.inference.devices", "seqtune.pipeline.cards", "seqtune.tracking"],
    seqtune__pipeline__evaluate=[("seqtune.inference.loader", False)],
    seqtune__inference__loader=["seqtune.inference.generator", "seqtune.inference.devices", "torch"],
    seqtune__inference__generator=["seqtune.tasks", "seqtune.inference.formats", "torch"],
    seqtune__inference__devices=["seqtune.inference.precision"],
    seqtune__inference__precision=["seqtune.files"],
    seqtune__inference__formats=[],
    seqtune__pipeline__cards=["seqtune.paths"],
    seqtune__experiments__runs=["seqtune.experiments.run_records", ("seqtune.tracking", False)],
    seqtune__experiments__run_records=["seqtune.files"],
    seqtune__experiments__sample_tokens=[("seqtune.pipeline.molecules", False)],
    seqtune__serving__bento=[("seqtune.pipeline.registry", False)],
    seqtune__serving__runtime=[("seqtune.inference.loader", False)],
    seqtune__cli=[("seqtune.pipeline.train", False), ("seqtune.serving.bento", False)],
    seqtune__train=[("seqtune.cli", False)],
)


def test_a_clean_fake_graph_passes():
    assert direction_violations(_fake(**CLEAN)) == []
    assert import_cycles(_fake(**CLEAN)) == [] and import_cycles(_fake(**CLEAN), module_level_only=False) == []


@pytest.mark.parametrize(
    ("module", "target", "why"),
    [
        ("seqtune__chem", "seqtune.tasks.base", "chem may not import tasks"),
        ("seqtune__chem", "seqtune.pipeline.molecules", "chem may not import pipeline"),
        ("seqtune__tasks__smiles2formula", "seqtune.pipeline.cards", "tasks may not import pipeline"),
        ("seqtune__tasks__smiles2formula", "seqtune.inference.generator", "tasks may not import inference"),
        ("seqtune__chem", "seqtune.inference.formats", "chem may not import inference"),
        ("seqtune__inference__generator", "seqtune.pipeline.cards", "inference may not import pipeline"),
        ("seqtune__inference__loader", "seqtune.pipeline.registry", "inference may not import pipeline"),
        ("seqtune__inference__generator", "seqtune.serving.ct2", "inference may not import serving"),
        ("seqtune__inference__devices", "seqtune.experiments.runs", "inference may not import experiments"),
        ("seqtune__inference__loader", "seqtune.cli", "nothing imports an entry point"),
        ("seqtune__config", "seqtune.inference.devices", "infra may not import inference"),
        ("seqtune__tasks__smiles2formula", "seqtune.experiments.runs", "tasks may not import experiments"),
        ("seqtune__tasks__base", "seqtune.serving.predict", "tasks may not import serving"),
        ("seqtune__pipeline__train", "seqtune.experiments.runs", "pipeline may not import experiments"),
        ("seqtune__pipeline__cards", "seqtune.serving.bento", "pipeline may not import serving"),
        ("seqtune__pipeline__train", "seqtune.pipeline.base_model", "a stage imports another stage"),
        ("seqtune__pipeline__molecules", "seqtune.pipeline.data", "a stage imports another stage"),
        ("seqtune__experiments__runs", "seqtune.serving.bento", "experiments may not import serving"),
        ("seqtune__serving__bento", "seqtune.experiments.report", "serving may not import experiments"),
        ("seqtune__config", "seqtune.pipeline.train", "infra may not import pipeline"),
        ("seqtune__config", "seqtune.tasks.smiles2formula", "infra may not import tasks"),
        ("seqtune__inference__generator", "service.service", "nothing in src/seqtune imports service"),
        ("seqtune__cli", "service", "nothing in src/seqtune imports service"),
        ("seqtune__pipeline__train", "seqtune.cli", "nothing imports an entry point"),
        ("seqtune__cli", "seqtune.train", "nothing imports an entry point"),
        ("seqtune__chem", "seqtune.config", "chem may not import infra"),
    ],
)
def test_each_direction_rule_can_fail(module, target, why):
    edges = {k: list(v) for k, v in CLEAN.items()}
    for function_level in (False, True):  # the rules hold for function-level imports too
        edges[module] = [*edges.get(module, []), (target, not function_level)]
        found = direction_violations(_fake(**edges))
        assert len(found) == 1 and why in found[0], found
        edges[module] = edges[module][:-1]


def test_a_module_outside_every_subsystem_fails():
    found = direction_violations(_fake(**CLEAN, seqtune__helpers=["json"]))
    assert found == ["seqtune.helpers: not placed in a subsystem (add it to ARCHITECTURE.md and this test)"]
    found = direction_violations(_fake(**{**CLEAN, "seqtune__chem": ["seqtune.helpers"]}))
    assert len(found) == 1 and "not placed in a subsystem" in found[0]


def test_cycles_fail_at_module_level_and_through_function_level_imports():
    pair = ["seqtune.experiments.run_records", "seqtune.experiments.runs"]
    edges = {k: list(v) for k, v in CLEAN.items()}
    edges["seqtune__experiments__run_records"] = ["seqtune.files", "seqtune.experiments.runs"]
    assert import_cycles(_fake(**edges)) == [pair]
    # The shape runs <-> run_records had before: module-level one way, function-level back.
    edges["seqtune__experiments__runs"] = [("seqtune.experiments.run_records", False)]
    assert import_cycles(_fake(**edges)) == []
    assert import_cycles(_fake(**edges), module_level_only=False) == [pair]
    # a longer cycle, and a module importing itself
    edges = {k: list(v) for k, v in CLEAN.items()}
    edges["seqtune__pipeline__cards"] = ["seqtune.pipeline.train"]
    assert import_cycles(_fake(**edges)) == [["seqtune.pipeline.cards", "seqtune.pipeline.train"]]
    assert import_cycles(_fake(seqtune__files=["seqtune.files"])) == [["seqtune.files"]]


def test_the_parser_resolves_what_the_rules_read():
    known = {"seqtune.pipeline", "seqtune.pipeline.register", "seqtune.pipeline.base_model", "seqtune.paths", "seqtune.tasks"}
    source = '''
from __future__ import annotations
from typing import TYPE_CHECKING
import json
from seqtune import paths
from seqtune.pipeline import register as stage, base_model
from . import base_model as m2
if TYPE_CHECKING:
    from seqtune.tasks.base import Task
def f():
    from seqtune.experiments.runs import collect_runs
    import service.service
if __name__ == "__main__":
    from seqtune.cli import app
'''
    got = [(i.target, i.module_level) for i in parse_imports(source, "seqtune.pipeline.x", is_package=False, known=known)]
    assert got == [
        ("__future__", True), ("typing", True), ("json", True), ("seqtune.paths", True),
        ("seqtune.pipeline.register", True), ("seqtune.pipeline.base_model", True), ("seqtune.pipeline.base_model", True),
        ("seqtune.tasks.base", False), ("seqtune.experiments.runs", False), ("service.service", False), ("seqtune.cli", False),
    ]



# ------------------------------------------- service/, bench/ and ARCHITECTURE.md, on fake inputs


def test_service_rule_passes_clean_and_fails_each_way():
    clean = _fake(service__service=["bentoml", "seqtune.config", "seqtune.serving", "seqtune.serving.guard",
                                    ("seqtune.serving.runtime", False), "seqtune.tasks", "seqtune.log"])
    assert service_violations(clean) == []
    for target, why in [
        ("seqtune.inference.loader", "only config, log, tasks and serving"),
        ("seqtune.inference.weights", "only config, log, tasks and serving"),
        ("seqtune.pipeline.model_files", "only config, log, tasks and serving"),
        ("seqtune.chem", "only config, log, tasks and serving"),
        ("seqtune.tasks.base", "only config, log, tasks and serving"),
        ("seqtune.experiments.report", "only config, log, tasks and serving"),
        ("seqtune.cli", "only config, log, tasks and serving"),
        ("seqtune", "only config, log, tasks and serving"),
        ("tests.service_stack", "nothing from tests or bench"),
    ]:
        for module_level in (True, False):
            broken = {m: [*imps, Import(target, module_level, 9)] for m, imps in clean.items()}
            found = service_violations(broken)
            assert len(found) == 1 and why in found[0] and target in found[0], (target, found)


BENCH_CLEAN = dict(
    common=["json", ("seqtune.pipeline.base_model", False), ("httpx", False)],
    known_molecules=["__future__"],
    train_throughput=["torch", "common", ("seqtune.pipeline.train", False)],
    serve_load=["httpx", "common", ("seqtune.config", False)],
    champion_check=["common", "known_molecules", ("seqtune.tasks", False)],
    opsin_calls=[("seqtune.chem", False)],
)


def test_a_clean_fake_bench_passes():
    assert bench_violations(_fake(**BENCH_CLEAN)) == []


@pytest.mark.parametrize(
    ("module", "target", "why"),
    [
        ("champion_check", "serve_load", "a bench script imports another bench script"),
        ("champion_check", "train_throughput", "a bench script imports another bench script"),
        ("opsin_calls", "train_throughput", "a bench script imports another bench script"),
        ("common", "train_throughput", "import no other bench module"),
        ("common", "known_molecules", "import no other bench module"),
        ("known_molecules", "common", "a bench data module imports nothing"),
        ("known_molecules", "seqtune.chem", "a bench data module imports nothing"),
        ("train_throughput", "seqtune.cli", "bench imports no entry point"),
        ("common", "seqtune.train", "bench imports no entry point"),
        ("opsin_calls", "tests.service_stack", "nothing from service or tests"),
        ("opsin_calls", "tests", "nothing from service or tests"),
        ("champion_check", "service.service", "nothing from service or tests"),
        ("champion_check", "bench.common", "bench/ is not a package"),
        ("opsin_calls", "seqtune.helpers", "not a module of the package"),
    ],
)
def test_each_bench_rule_can_fail(module, target, why):
    for module_level in (True, False):
        edges = {k: list(v) for k, v in BENCH_CLEAN.items()}
        edges[module] = [*edges[module], (target, module_level)]
        found = bench_violations(_fake(**edges))
        assert len(found) == 1 and why in found[0] and found[0].startswith(f"{module}:"), found


def test_has_main_guard_tells_a_script_from_a_library():
    assert has_main_guard('def main():\n    pass\n\nif __name__ == "__main__":\n    main()\n')
    assert not has_main_guard('KNOWN = [("ethanol", "CCO")]\n')


FAKE_DOC = """# Architecture

`src/seqtune/` has one folder per subsystem.

| package | holds |
|---|---|
| `chem` | chemistry |
| `pipeline/` | stages: `molecules`, `train` (the stage); helpers `cards` |
| `serving/` | `bento`, `security` + `guard` |
| top level | infrastructure (`config`, `paths`); entry points: `cli` |

`pipeline/model_files.py` opens model folders; `serving.predict` handles requests.
"""
FAKE_MODULES = {"seqtune", "seqtune.chem", "seqtune.config", "seqtune.paths", "seqtune.cli", "seqtune.pipeline",
                "seqtune.pipeline.molecules", "seqtune.pipeline.train", "seqtune.pipeline.cards",
                "seqtune.pipeline.model_files", "seqtune.serving", "seqtune.serving.bento", "seqtune.serving.security",
                "seqtune.serving.guard", "seqtune.serving.predict"}


def test_the_documented_fake_package_passes():
    assert undocumented(FAKE_MODULES, FAKE_DOC) == []


@pytest.mark.parametrize(
    "module",
    [
        "seqtune.pipeline.simple_organics",  # a new helper nobody wrote down
        "seqtune.serving.train",  # `train` is in the pipeline's row and the top level's, not serving's
        "seqtune.serving.chem",  # `chem` is a top-level row, not a serving module
        "seqtune.pipeline.predict",  # `serving.predict` is named, `pipeline.predict` is not
        "seqtune.helpers",  # a new top-level module
        "seqtune.tasks",  # a new subpackage without a row
        "seqtune.tasks.base",
        "seqtune.pipeline.sub.deep",  # a nested module: its package's row names `sub.deep` or nothing
    ],
)
def test_a_module_missing_from_architecture_md_fails(module):
    found = undocumented(FAKE_MODULES | {module}, FAKE_DOC)
    assert found == [f"{module}: not named in ARCHITECTURE.md (add it to its package's row)"]


def test_a_module_named_by_dotted_name_or_path_passes_and_the_root_needs_its_folder():
    for doc in (FAKE_DOC + "\n`seqtune.pipeline.simple_organics`", FAKE_DOC + "\n`pipeline.simple_organics`",
                FAKE_DOC + "\n`src/seqtune/pipeline/simple_organics.py`",
                FAKE_DOC.replace("helpers `cards`", "helpers `cards`, `simple_organics`")):
        assert undocumented(FAKE_MODULES | {"seqtune.pipeline.simple_organics"}, doc) == []
    assert undocumented(FAKE_MODULES, FAKE_DOC.replace("`src/seqtune/`", "src/seqtune/")) == [
        "seqtune: not named in ARCHITECTURE.md (add it to its package's row)"]
    # dropping a name from the real table's row is what fails
    assert undocumented(FAKE_MODULES, FAKE_DOC.replace(", `security` + `guard`", ", `security`")) == [
        "seqtune.serving.guard: not named in ARCHITECTURE.md (add it to its package's row)"]


def test_stage_and_report_functions_stay_split():
    """No function in the data, train and evaluate stages or in the findings report runs past
    60 lines (def line to last line, docstring included): their main()s and report's blocks
    were split into named steps (issue 32), and a new step gets its own function rather than
    growing one back. The rule is checked on a fake module too, so it can fail."""
    limit = 60
    modules = ("pipeline/train.py", "pipeline/evaluate.py", "pipeline/data.py", "experiments/report.py")

    def too_long(source: str, where: str) -> list[str]:
        return [f"{where}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines (limit {limit})"
                for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]

    found = [hit for m in modules for hit in too_long((SRC / "seqtune" / m).read_text(), m)]
    assert found == [], "split these into named steps:\n" + "\n".join(found)
    body = "".join(f"    x{i} = {i}\n" for i in range(limit - 1))
    assert too_long(f"def short():\n{body}", "fake.py") == []
    assert too_long(f"class C:\n    def long(self):\n{body.replace('    ', '        ')}        return 0\n", "fake.py") == [
        f"fake.py:2 long: {limit + 1} lines (limit {limit})"]


def test_the_pipeline_docstring_names_every_pipeline_module():
    """`seqtune.pipeline`'s docstring is the map a reader opens first: a new stage or helper
    missing from it passes every other check."""
    import seqtune.pipeline as pipeline

    names = {p.stem for p in Path(pipeline.__file__).parent.glob("*.py")} - {"__init__"}
    missing = sorted(n for n in names if f"`{n}`" not in (pipeline.__doc__ or ""))
    assert not missing, f"pipeline/__init__.py's docstring does not name {missing}"


def test_the_inference_docstring_names_every_inference_module():
    """`seqtune.inference`'s docstring names each of its modules and its job (the package is
    imported from everywhere above it: a reader starts there)."""
    import seqtune.inference as inference

    names = {p.stem for p in Path(inference.__file__).parent.glob("*.py")} - {"__init__"}
    missing = sorted(n for n in names if f"`{n}`" not in (inference.__doc__ or ""))
    assert len(names) >= 8 and not missing, f"inference/__init__.py's docstring does not name {missing}"
