"""Every DVC stage depends on the code it runs, read statically from dvc.yaml and the source.

    python -m pytest -q tests/test_dvc_deps.py

A stage whose `deps` miss a module it imports stays "up to date" after that module changes:
editing the prompt format (then `pipeline/formats.py`) left `train` and `evaluate` cached. So for
every stage DVC resolves from dvc.yaml (`foreach` stages expanded, one per task, and any
stage added later):

- the stage's entry module is derived from its `cmd`: `seqtune <command>` -> the console
  script's Typer app in pyproject.toml -> the cli function of that command -> the module whose
  `main` it calls (`python -m <module>` names it directly). A command that reveals no module
  fails, asking for an entry in `ROOTS`;
- the closure of that module's imports inside src/seqtune is computed with `ast`: module-level
  and function-level imports alike (the code imports lazily inside functions, and those run
  too), the packages an import runs (`seqtune.tasks/__init__.py` for `seqtune.tasks.base`),
  and registries loaded with `importlib.import_module("seqtune.x:Class")` (the task
  plug-ins that `get_task` loads). `if TYPE_CHECKING:` and `if __name__ == "__main__":`
  blocks do not run on import and are skipped;
- every file of the closure must be covered by a dep (a directory covers its files), and every
  dep must exist or be an output of a stage.

`cli.py` is not a root: it dispatches to every stage (and to the report, the registry, the
service), so as a dep it would rerun the 40-minute pipeline for an edit to `seqtune report`.
What a stage computes starts at its module's `main`; the cli only parses the arguments.

Each check is a function of its inputs, and each is also run on a small fake input that
breaks it: a check that cannot fail would pass vacuously.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_architecture import _is_main_guard, _is_type_checking, module_name

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ROOTS: dict[str, str] = {}
"""dvc.yaml stage name (`train` for `train@smiles2iupac`) -> its entry module, for a stage
whose command the derivation cannot read (one that calls no `<module>.main`, or a script)."""

LAZY_TARGET = re.compile(r"^(\w+(?:\.\w+)*)(?::\w+)?$")
"""A string that may name a module for `import_module`: "seqtune.tasks.smiles2iupac:Smiles2Iupac"."""


@dataclass(frozen=True)
class Stage:
    """One resolved DVC stage (`train@smiles2iupac`), paths relative to the repository."""

    name: str
    cmds: tuple[str, ...]
    deps: tuple[str, ...]
    """Path dependencies (params are not files of the code)."""
    outs: tuple[str, ...]
    """outs, metrics and plots."""


@dataclass(frozen=True)
class Ref:
    """What one import statement names: `from seqtune.tasks import get_task` is
    Ref("seqtune.tasks", "get_task"); `import seqtune.files` is Ref("seqtune.files", None)."""

    module: str
    name: str | None


# --------------------------------------------------------------------------- the stages


def dvc_stages(root: Path = REPO) -> list[Stage]:
    """The stages as DVC itself resolves dvc.yaml (foreach/matrix expanded, vars filled in)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [
            Stage(
                name=s.name,
                cmds=tuple(s.cmd if isinstance(s.cmd, list) else [s.cmd]),
                deps=tuple(d.def_path for d in s.deps if not isinstance(d, ParamsDependency)),
                outs=tuple(o.def_path for o in s.outs),
            )
            for s in repo.index.stages
        ]


# ------------------------------------------------------------------ cmd -> entry module


def console_scripts(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """Console script name -> "module:attr", from [project.scripts]."""
    return tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})


def _kwarg(call: ast.Call, keyword: str) -> str | None:
    """The call's `keyword=` string argument."""
    return next((kw.value.value for kw in call.keywords if kw.arg == keyword and isinstance(kw.value, ast.Constant)), None)


def _str_arg(call: ast.Call, keyword: str) -> str | None:
    """The call's first positional string argument, or its `keyword=` one."""
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return _kwarg(call, keyword)


def typer_commands(tree: ast.Module, app: str) -> dict[tuple[str, ...], ast.FunctionDef]:
    """Command words -> the function, for Typer `app` and the sub-apps added to it
    (`app.add_typer(registry_app, name="registry")` -> ("registry", "list"))."""
    prefix = {app: ()}
    added = [
        (n.func.value.id, n.args[0].id, _kwarg(n, "name"))
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_typer"
        and isinstance(n.func.value, ast.Name) and n.args and isinstance(n.args[0], ast.Name)
    ]
    for _ in added:  # once per add_typer, so nested sub-apps resolve in any order
        for parent, child, name in added:
            if parent in prefix and name:
                prefix[child] = (*prefix[parent], name)
    commands = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in fn.decorator_list:
            if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "command"
                    and isinstance(dec.func.value, ast.Name) and dec.func.value.id in prefix):
                # Typer's default name is the function's, with dashes for underscores.
                word = _str_arg(dec, "name") or fn.name.replace("_", "-")
                commands[(*prefix[dec.func.value.id], word)] = fn
    return commands


def _bindings(node: ast.AST, known: set[str]) -> dict[str, Ref]:
    """Local name -> what it was imported as, for every import under `node`."""
    names = {}
    for imp in ast.walk(node):
        if isinstance(imp, ast.Import):
            for a in imp.names:
                names[a.asname or a.name] = Ref(a.name, None)
        elif isinstance(imp, ast.ImportFrom) and imp.module and not imp.level:
            for a in imp.names:
                sub = f"{imp.module}.{a.name}"
                names[a.asname or a.name] = Ref(sub, None) if sub in known else Ref(imp.module, a.name)
    return names


def mains_called(fn: ast.FunctionDef, known: set[str]) -> set[str]:
    """The modules whose `main` the function uses: `stage.main` after
    `from seqtune.pipeline import data as stage`, or `main` after `from m import main`."""
    names = _bindings(fn, known)
    found = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.Attribute) and n.attr == "main" and isinstance(n.value, ast.Name):
            ref = names.get(n.value.id)
            if ref and ref.name is None and ref.module in known:
                found.add(ref.module)
        elif isinstance(n, ast.Name) and n.id in names and names[n.id].name == "main":
            found.add(names[n.id].module)
    return found


def entry_module(cmd: str, scripts: dict[str, str], src: Path, known: set[str]) -> str | None:
    """The module a stage command runs, or None when it cannot be read from the code."""
    words = shlex.split(cmd)
    if len(words) >= 3 and Path(words[0]).name.startswith("python") and words[1] == "-m":
        return words[2] if words[2] in known else None
    if not words or words[0] not in scripts:
        return None
    cli_module, _, app = scripts[words[0]].partition(":")
    tree = ast.parse((src / (cli_module.replace(".", "/") + ".py")).read_text())
    commands = typer_commands(tree, app)
    for n in range(len(words) - 1, 0, -1):  # the longest run of words that names a command
        fn = commands.get(tuple(words[1 : n + 1]))
        if fn is not None:
            mains = mains_called(fn, known)
            return mains.pop() if len(mains) == 1 else None
    return None


# ------------------------------------------------------------------------ the import closure


def is_inert(tree: ast.Module) -> bool:
    """A package __init__ holding only a docstring and constants: running it cannot change
    what a stage computes (listing it would rerun every stage for a docstring edit)."""
    for stmt in tree.body:
        value = getattr(stmt, "value", None)
        if not (isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) and isinstance(value, ast.Constant)):
            return False
    return True


def parse_refs(tree: ast.Module, module: str, *, is_package: bool, known: set[str]) -> list[Ref]:
    """Every import that runs when `module` is imported or its functions are called.

    Function-level imports count (they run, later); `if TYPE_CHECKING:` and
    `if __name__ == "__main__":` bodies do not (they never run on import)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Ref] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and (_is_type_checking(child.test) or _is_main_guard(child.test)):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                found.extend(Ref(a.name, None) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(Ref(sub, None) if sub in known else Ref(base, a.name))
            visit(child)

    visit(tree)
    return found


def lazy_loads(tree: ast.Module, known: set[str]) -> dict[str, set[str]]:
    """Function -> the modules it loads with `import_module` from the module's strings
    (the task registry: "seqtune.tasks.smiles2iupac:Smiles2Iupac"). Importing the function
    imports them, when it is called; ast cannot see which string, so all of them count."""
    targets = {
        m.group(1)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and (m := LAZY_TARGET.match(n.value))
        and m.group(1) in known
    }
    loaders = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and any(
            isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == "import_module"
            for n in ast.walk(fn)
        ):
            loaders[fn.name] = targets
    return loaders


def package_files(src: Path) -> dict[str, Path]:
    """Module name -> its file, for every module under `src` (the seqtune package)."""
    return {module_name(f, src): f for f in sorted(src.rglob("*.py"))}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package's modules that importing it (or calling its functions) runs."""
    files = package_files(src)
    known = set(files)
    trees = {m: ast.parse(f.read_text()) for m, f in files.items()}
    lazy = {m: lazy_loads(t, known) for m, t in trees.items()}
    inert = {m for m, f in files.items() if f.name == "__init__.py" and is_inert(trees[m])}
    graph = {}
    for module, tree in trees.items():
        edges = set()
        for ref in parse_refs(tree, module, is_package=files[module].name == "__init__.py", known=known):
            if ref.module not in known:
                continue
            edges.add(ref.module)
            # `import a.b.c` runs a/__init__ and a/b/__init__ first.
            parts = ref.module.split(".")
            edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p not in inert)
            loaders = lazy.get(ref.module, {})
            for fn in loaders if ref.name is None else [ref.name] if ref.name in loaders else []:
                edges.update(loaders[fn])
        graph[module] = edges - {module}
    return graph


def closure(graph: dict[str, set[str]], root: str) -> set[str]:
    """`root` and every module it reaches."""
    seen, todo = set(), [root]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


# ------------------------------------------------------------------------------- the checks


def covered(path: str, deps: Iterable[str]) -> bool:
    """Whether a dep names `path` or a directory above it."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def uncovered_modules(stage: Stage, root: str, graph: dict[str, set[str]], files: dict[str, Path], repo: Path) -> list[str]:
    """The files of `root`'s import closure that none of the stage's deps covers."""
    paths = sorted(files[m].relative_to(repo).as_posix() for m in closure(graph, root))
    return [p for p in paths if not covered(p, stage.deps)]


def missing_deps(stages: list[Stage], repo: Path) -> list[str]:
    """Deps that neither exist nor come from a stage (an output at, under or above them)."""
    outs = [o for s in stages for o in s.outs]
    bad = []
    for s in stages:
        for d in s.deps:
            made = any(covered(o, [d]) or covered(d, [o]) for o in outs)
            if not (repo / d).exists() and not made:
                bad.append(f"{s.name}: {d}")
    return bad


def dep_problems(stages: list[Stage], src: Path, repo: Path, scripts: dict[str, str]) -> list[str]:
    """Every stage's unmapped command and uncovered modules, as one line each."""
    files = package_files(src)
    graph = import_graph(src)
    problems = []
    for s in stages:
        for cmd in s.cmds:
            root = ROOTS.get(s.name.split("@")[0]) or entry_module(cmd, scripts, src, set(files))
            if root is None:
                problems.append(f"{s.name}: cannot tell which module `{cmd}` runs (no cli command that calls "
                                f"one `<module>.main`): add it to ROOTS in {Path(__file__).name}")
                continue
            for p in uncovered_modules(s, root, graph, files, repo):
                problems.append(f"{s.name}: runs {p} (from {root}), which no dep covers")
    return problems


# -------------------------------------------------------------------------- the real pipeline


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dvc_stages()


def test_every_stage_depends_on_the_code_it_runs(stages):
    problems = dep_problems(stages, SRC, REPO, console_scripts())
    assert problems == [], "dvc.yaml deps miss code the stages run:\n" + "\n".join(problems)


def test_every_dep_exists_or_is_made_by_a_stage(stages):
    assert missing_deps(stages, REPO) == []


def test_foreach_stages_are_expanded_for_every_task(stages):
    tasks = yaml.safe_load((REPO / "params.yaml").read_text())["tasks"]
    foreach = [k for k, v in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items() if "foreach" in v]
    names = {s.name for s in stages}
    assert foreach and {f"{k}@{t}" for k in foreach for t in tasks} <= names


def test_the_commands_map_to_the_stage_modules(stages):
    known = set(package_files(SRC))
    got = {s.name.split("@")[0]: entry_module(s.cmds[0], console_scripts(), SRC, known) for s in stages}
    assert {k: got.get(k) for k in ("molecules", "base_model", "train", "register")} == {
        "molecules": "seqtune.pipeline.molecules", "base_model": "seqtune.pipeline.base_model",
        "train": "seqtune.pipeline.train", "register": "seqtune.pipeline.register",
    }
    # The closures see lazy imports: train loads its task plug-in (and chem) through get_task.
    train = closure(import_graph(), "seqtune.pipeline.train")
    assert {"seqtune.inference.formats", "seqtune.tasks.smiles2iupac", "seqtune.chem", "seqtune.config"} <= train
    assert "seqtune.cli" not in train and "seqtune.tasks.base" in train


# ---------------------------------------------------------------- each check fails when broken


FAKE_CLI = '''
import typer
app = typer.Typer()
sub_app = typer.Typer()
app.add_typer(sub_app, name="sub")

@app.command()
def prep_data(task: str):
    from pkg.pipeline import prep as stage
    _run(stage.main, task)

@app.command("fit")
def whatever():
    from pkg.pipeline.fit import main
    main()

@sub_app.command("go")
def go():
    from pkg.pipeline import fit
    fit.main()

@app.command()
def report():
    from pkg import report
    report.write()
'''

FAKE_SOURCES = {
    "__init__.py": '"""The package."""\n__version__ = "1"\n',
    "cli.py": "",
    "config.py": "from pkg.plugins import NAMES\n",
    "chem.py": "",
    "pipeline/__init__.py": '"""Stages."""\n',
    "pipeline/prep.py": "from pkg import config\n\ndef main(task):\n    from pkg.plugins import load\n    load(task)\n",
    "pipeline/fit.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import report\n"
        "def main():\n    from . import helper\n"
    ),
    "pipeline/helper.py": "",
    "plugins/__init__.py": (
        "from importlib import import_module\nNAMES = {'a': 'pkg.plugins.a:A'}\n"
        "def load(name):\n    return import_module(NAMES[name].split(':')[0])\n"
    ),
    "plugins/a.py": "from pkg.chem import x\n",
    "report.py": "",
}


@pytest.fixture
def fake(tmp_path):
    """A fake package `pkg` under tmp_path/src, with a console script `pkg` = pkg.cli:app."""
    for rel, text in {**FAKE_SOURCES, "cli.py": FAKE_CLI}.items():
        f = tmp_path / "src" / "pkg" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_commands_map_to_the_module_whose_main_they_call(fake):
    src, scripts = fake / "src", {"pkg": "pkg.cli:app"}
    known = set(package_files(src))
    assert entry_module("pkg prep-data t1", scripts, src, known) == "pkg.pipeline.prep"  # default name
    assert entry_module("pkg fit", scripts, src, known) == "pkg.pipeline.fit"  # `from m import main`
    assert entry_module("pkg sub go", scripts, src, known) == "pkg.pipeline.fit"  # a sub-app
    assert entry_module("python -m pkg.pipeline.helper", scripts, src, known) == "pkg.pipeline.helper"
    # No main called, no such command, not the console script: unmapped.
    for cmd in ("pkg report", "pkg real-molecules", "bash run.sh"):
        assert entry_module(cmd, scripts, src, known) is None, cmd


def test_the_closure_follows_function_level_lazy_and_package_imports(fake):
    graph = import_graph(fake / "src")
    # config imports plugins' NAMES only: no plug-in; prep calls `load`, which loads them.
    assert closure(graph, "pkg.config") == {"pkg.config", "pkg.plugins"}
    assert closure(graph, "pkg.pipeline.prep") == {
        "pkg.pipeline.prep", "pkg.config", "pkg.plugins", "pkg.plugins.a", "pkg.chem",
    }
    # A relative, function-level import counts; a TYPE_CHECKING one and inert packages don't.
    assert closure(graph, "pkg.pipeline.fit") == {"pkg.pipeline.fit", "pkg.pipeline.helper"}


def test_an_uncovered_module_and_an_unmapped_stage_fail(fake, monkeypatch):
    src, scripts = fake / "src", {"pkg": "pkg.cli:app"}
    prep = Stage("prep@t1", ("pkg prep-data t1",), ("src/pkg/pipeline/prep.py", "src/pkg/plugins", "data/raw"), ("data/prep",))
    assert dep_problems([prep], src, fake, scripts) == [
        "prep@t1: runs src/pkg/chem.py (from pkg.pipeline.prep), which no dep covers",
        "prep@t1: runs src/pkg/config.py (from pkg.pipeline.prep), which no dep covers",
    ]
    full = Stage("prep@t1", prep.cmds, (*prep.deps, "src/pkg/chem.py", "src/pkg/config.py"), prep.outs)
    assert dep_problems([full], src, fake, scripts) == []
    new = Stage("real_molecules", ("pkg real-molecules",), (), ("data/real",))
    assert len(found := dep_problems([new], src, fake, scripts)) == 1 and "add it to ROOTS" in found[0]
    monkeypatch.setitem(ROOTS, "real_molecules", "pkg.pipeline.helper")  # the mapping table answers
    assert dep_problems([new], src, fake, scripts) == ["real_molecules: runs src/pkg/pipeline/helper.py "
                                                       "(from pkg.pipeline.helper), which no dep covers"]


def test_a_dep_that_does_not_exist_fails_unless_a_stage_makes_it(fake):
    a = Stage("a", ("pkg fit",), ("src/pkg/pipeline/fit.py", "src/pkg/gone.py"), ("data/x/one.json",))
    b = Stage("b", ("pkg fit",), ("data/x", "data/x/one.json", "data/y"), ())
    assert missing_deps([a, b], fake) == ["a: src/pkg/gone.py", "b: data/y"]
