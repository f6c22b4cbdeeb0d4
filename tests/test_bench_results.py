"""Bench result files and the table docs/benchmarks.md generates from them (issue 32 item 8).

    .venv/bin/python -m pytest -q tests/test_bench_results.py

The real files in reports/bench/ must follow the schema of `seqtune.experiments.bench_results`,
and the generated table in docs/benchmarks.md must quote each headline figure exactly as its
file holds it and be current against the files; every bench script writes its figures through
`bench/common.py: write_result`. Each rule is also checked on a copy broken on purpose, so
that none passes vacuously.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from seqtune.experiments import bench_results as br

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import common  # noqa: E402  (bench/common.py: bench/ is not a package)


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    return br.read_results(REPO)


@pytest.fixture(scope="module")
def doc() -> str:
    return (REPO / br.DOC).read_text()


@pytest.fixture(scope="module")
def scripts() -> list[str]:
    return br.bench_scripts(REPO)


def _a_result() -> dict:
    """A valid result, as write_result would write it."""
    return {
        "schema": br.VERSION, "name": "demo", "script": "bench/demo.py", "measures": "what demo measures",
        "figures": {"items_per_s": {"median": 12.5, "min": 11.0, "max": 13.25, "runs": 3}, "same_outputs": 16,
                    "ratio": 1.1834},
        "headline": ["items_per_s", "ratio"], "config": {"batch": 32},
        "command": ["bench/demo.py", "--repeats", "3"],
        "cpu": {"model": "Some CPU", "kind": "AVX2 only",
                "flags": {"avx512_bf16": False, "amx_bf16": False, "avx512f": False, "avx2": True}},
        "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.5, 0.9, 0.4]}, "seconds": 12.0,
        "date": "2026-12-07T10:00:00+00:00", "commit": {"sha": "abc1234", "dirty": False},
        "python": "3.11.7", "torch": "2.13.0",
    }


# ------------------------------------------------------------------------------- the real files


def test_every_result_file_follows_the_schema(results):
    assert {"split_leakage", "mix_origin"} <= set(results)
    assert [p for name, r in results.items() for p in br.problems(r, name)] == []


def test_the_migrated_files_kept_their_figures(results):
    # what the files said before the schema (git show 52cd5d9 / ecd241d), now flat figures
    leak = results["split_leakage"]["figures"]
    assert leak["test_fragment_split.share_also_from_a_train_molecule"] == 0.858
    assert leak["test_parent_split.share_also_from_a_train_molecule"] == 0.0
    assert leak["test_fragment_split.nearest_train_tanimoto_mean"] == 0.572
    assert [leak[f"real_{b}.nearest_train_tanimoto_mean"] for b in ("3-12", "13-15", "16-20", "21-30", "31-60")] == \
        [0.391, 0.44, 0.385, 0.32, 0.279]
    mix = results["mix_origin"]["figures"]
    assert (mix["test_fragment.n"], mix["test_fragment.structure_match"], mix["test_fragment.se"]) == (69, 0.2319, 0.0508)
    assert (mix["test_enumerated.n"], mix["test_enumerated.structure_match"]) == (131, 0.2748)
    assert mix["real_3-12.structure_match"] == 0.02 and mix["real_13-15.structure_match"] == 0.04


def test_the_docs_table_is_current_and_quotes_every_headline_figure_as_its_file_says(doc, results, scripts):
    assert br.check(doc, results, scripts) == []
    quoted = br.quoted(doc)
    assert sorted((n, f) for n, f, _ in quoted) == sorted((n, f) for n, r in results.items() for f in r["headline"])
    for name, fig, cell in quoted:
        assert cell == br.value(results[name]["figures"][fig]), (name, fig)


def test_every_bench_script_writes_its_figures_through_write_result(scripts):
    """One `write_result(...)` call per script, in its own code (not only in a docstring)."""
    assert len(scripts) > 10
    calls = {}
    for script in scripts:
        tree = ast.parse((REPO / script).read_text())
        calls[script] = sum(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "write_result"
                            for n in ast.walk(tree))
    assert {s: n for s, n in calls.items() if n != 1} == {}


# ----------------------------------------------------------------------- each rule, broken on purpose


@pytest.mark.parametrize("key", sorted(br.SCHEMA))
def test_a_result_without_a_required_key_fails(key):
    r = _a_result()
    assert br.problems(r, "demo") == []
    del r[key]
    assert f"demo: lacks {key!r}" in br.problems(r, "demo")


@pytest.mark.parametrize(("breaks", "says"), [
    (lambda r: r["figures"].update(bad="12 items/s"), "figure 'bad' is neither"),
    (lambda r: r["figures"].update(bad=True), "figure 'bad' is neither"),
    (lambda r: r["figures"].update(bad=math.nan), "figure 'bad' is neither"),
    (lambda r: r["figures"].update(bad={}), "figure 'bad' is neither"),
    (lambda r: r["headline"].append("missing"), "headline 'missing' is not a figure"),
    (lambda r: r.update(headline=[]), "no headline figure"),
    (lambda r: r["cpu"].pop("flags"), "cpu lacks 'flags'"),
    (lambda r: r["cpu"]["flags"].pop("avx2"), "cpu flags"),
    (lambda r: r["load_average"].update(before=[1.0]), "load_average 'before'"),
    (lambda r: r["commit"].pop("dirty"), "commit lacks 'dirty'"),
    (lambda r: r.update(date="2026-12-07 10:00 UTC"), "is not UTC ISO 8601"),
    (lambda r: r.update(name="other"), "is not the file's"),
    (lambda r: r.update(script="demo.py"), "is not bench/<name>.py"),
    (lambda r: r.update(schema=0), "schema 0"),
    (lambda r: r.update(seconds=True), "'seconds' is bool"),
    (lambda r: r.update(extra=1), "unknown key 'extra'"),
])
def test_a_malformed_result_fails(breaks, says):
    r = _a_result()
    breaks(r)
    assert any(says in p for p in br.problems(r, "demo")), br.problems(r, "demo")


def test_a_figure_in_the_table_that_differs_from_its_file_fails(doc, results, scripts):
    name, fig, cell = br.quoted(doc)[0]
    wrong = doc.replace(f"| `{fig}` | {cell} |", f"| `{fig}` | {cell}1 |", 1)
    assert wrong != doc
    bad = br.check(wrong, results, scripts)
    assert f"the table says {name}.json {fig} = {cell + '1'!r}; the file says {cell!r}" in bad
    # and the other way round: the file changed, the table not
    changed = copy.deepcopy(results)
    changed[name]["figures"][fig] = 123.5
    bad = br.check(doc, changed, scripts)
    assert any(p.startswith(f"the table says {name}.json {fig} = ") for p in bad)
    assert any("is stale" in p for p in bad)


def test_a_stale_table_fails(doc, results, scripts):
    more = dict(results, demo=_a_result())
    assert any("is stale" in p for p in br.check(doc, more, scripts))
    fewer = {n: r for n, r in results.items() if n != "mix_origin"}
    bad = br.check(doc, fewer, scripts)
    assert "the table quotes mix_origin.json, which does not exist" in bad and any("is stale" in p for p in bad)
    assert any("is stale" in p for p in br.check(doc, results, [*scripts, "bench/new_one.py"]))
    # an invalid file is reported as such (the table can't be rendered from it)
    broken = copy.deepcopy(results)
    del broken["mix_origin"]["cpu"]
    assert br.check(doc, broken, scripts) == ["mix_origin: lacks 'cpu'"]
    with pytest.raises(ValueError, match="lacks 'cpu'"):
        br.update(doc, broken, scripts)


def test_update_regenerates_exactly_the_block(doc, results, scripts):
    stale = doc.replace(br.block(doc), br.render({}, scripts))
    assert br.check(stale, results, scripts) != []
    assert br.update(stale, results, scripts) == doc
    with pytest.raises(ValueError, match="no"):
        br.update("# no table here\n", results, scripts)


def test_a_section_must_say_whether_its_figures_have_a_file(doc, results, scripts):
    have = {r["script"] for r in results.values()}
    with_file = next(s for s in br._sections(doc) if s in have)
    without = next(s for s in br._sections(doc) if s not in have)
    stripped = re.sub(rf"(## `{re.escape(without)}`\n)\n\*Prose figures, [^\n]*\n", r"\1", doc)
    assert stripped != doc
    assert any(without in p and "does not say" in p for p in br.check(stripped, results, scripts))
    claimed = doc.replace(f"## `{with_file}`\n", f"## `{with_file}`\n\n{br.NOT_REMEASURED}.\n", 1)
    assert any(with_file in p and "but it has a result file" in p for p in br.check(claimed, results, scripts))


def test_the_command_checks_and_rewrites(tmp_path, doc, results):
    root = tmp_path
    (root / br.DOC).parent.mkdir(parents=True)
    (root / br.RESULTS).mkdir(parents=True)
    (root / br.BENCH).mkdir()
    (root / br.BENCH / "demo.py").write_text('if __name__ == "__main__":\n    pass\n')
    (root / br.BENCH / "common.py").write_text("X = 1\n")  # a library, not a script
    (root / br.RESULTS / "demo.json").write_text(json.dumps(_a_result()))
    (root / br.DOC).write_text(f"# Benchmarks\n\n{br.MARK_START}\n{br.MARK_END}\n\n## `bench/demo.py`\n\ntext\n")
    assert br.bench_scripts(root) == ["bench/demo.py"]
    assert br.main(["--check"], root) == 1
    assert br.main([], root) == 0
    assert br.main(["--check"], root) == 0
    md = (root / br.DOC).read_text()
    assert br.quoted(md) == [("demo", "items_per_s", "12.5 (11–13.25, 3 runs)"), ("demo", "ratio", "1.183")]
    assert "| 0.50 → 1.50 | 2026-12-07 | `abc1234` |" in md and "Some CPU, AVX2 only" in md


def test_figures_are_printed_to_four_significant_digits():
    assert [br.number(x) for x in (15000, 0.858, 123.94, 1471.23, 0.0, 2.0, -0.5, 12345.6, 0.00012)] == \
        ["15,000", "0.858", "123.9", "1,471", "0", "2", "-0.5", "12,346", "0.00012"]
    assert br.value({"median": 1.18, "min": 1.1, "max": 1.25, "runs": 3}) == "1.18 (1.1–1.25, 3 runs)"
    assert br.value({"p50": 0.65, "max": 1.2}) == "p50 0.65, max 1.2"


@pytest.mark.parametrize(("flags", "kind"), [
    ({"avx512_bf16": True, "amx_bf16": True, "avx512f": True, "avx2": True}, "AMX-BF16"),
    ({"avx512_bf16": True, "amx_bf16": False, "avx512f": True, "avx2": True}, "AVX512-BF16"),
    ({"avx512_bf16": False, "amx_bf16": False, "avx512f": True, "avx2": True}, "AVX512 without BF16"),
    ({"avx512_bf16": False, "amx_bf16": False, "avx512f": False, "avx2": True}, "AVX2 only"),
    (None, "flags unreadable"),
])
def test_cpu_kind(flags, kind):
    assert br.cpu_kind(flags) == kind


# ----------------------------------------------------------------------------- bench/common.py


def test_write_result_records_what_the_figures_hold_for(tmp_path):
    start = datetime.now(timezone.utc)
    path = common.write_result("demo", {"items_per_s": common.spread([3.0, 1.0, 2.0]), "same": 8}, config={"batch": 4},
                               headline=["items_per_s"], measures="a demo", note="same holds by construction",
                               script="bench/demo.py", out_dir=tmp_path)
    assert path == tmp_path / "demo.json"
    r = json.loads(path.read_text())
    assert br.problems(r, "demo") == []
    assert r["figures"] == {"items_per_s": {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}, "same": 8}
    assert (r["config"], r["headline"], r["measures"], r["script"], r["note"]) == \
        ({"batch": 4}, ["items_per_s"], "a demo", "bench/demo.py", "same holds by construction")
    assert len(r["command"]) == len(sys.argv)
    # the CPU's flags as /proc/cpuinfo gives them, read here independently
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((x for x in text.splitlines() if x.startswith("flags")), None)
    if line is None:
        assert r["cpu"]["flags"] is None
    else:
        have = set(line.partition(":")[2].split())
        assert r["cpu"]["flags"] == {f: f in have for f in br.CPU_FLAGS}
        assert r["cpu"]["kind"] == br.cpu_kind(r["cpu"]["flags"])
    assert r["load_average"]["after"] == pytest.approx(list(os.getloadavg()), abs=2.0)
    assert start - timedelta(seconds=2) <= datetime.fromisoformat(r["date"]) <= datetime.now(timezone.utc)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert r["commit"]["sha"] == (sha or None) and isinstance(r["commit"]["dirty"], (bool, type(None)))
    assert r["python"] == ".".join(map(str, sys.version_info[:3]))
    import torch

    assert r["torch"] == torch.__version__


def test_write_result_refuses_a_record_that_breaks_the_schema(tmp_path, capsys):
    with pytest.raises(ValueError, match="headline 'nope' is not a figure"):
        common.write_result("demo", {"x": 1.0}, headline=["nope"], script="bench/demo.py", out_dir=tmp_path)
    assert not (tmp_path / "demo.json").exists()
    assert '"x": 1.0' in capsys.readouterr().err  # the figures are not lost


def test_numpy_scalars_are_written_as_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    path = common.write_result("demo", {"x": np.float64(0.25), "n": np.int64(3)}, script="bench/demo.py", out_dir=tmp_path)
    assert json.loads(path.read_text())["figures"] == {"x": 0.25, "n": 3}


def test_alternate_takes_turns_and_spread_summarises():
    order = []
    times = common.alternate({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b"] * 3 and [len(v) for v in times.values()] == [3, 3]
    assert common.spread([0.123456, 5.0, 2.0]) == {"median": 2.0, "min": 0.1235, "max": 5.0, "runs": 3}
    with pytest.raises(ValueError):
        common.spread([])


def test_commit_sees_a_dirty_tree_but_not_result_files(tmp_path, monkeypatch):
    repo = tmp_path / "r"
    (repo / "reports" / "bench").mkdir(parents=True)
    (repo / "a.txt").write_text("a\n")
    (repo / "reports" / "bench" / "x.json").write_text("{}\n")
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    monkeypatch.setattr(common, "REPO", repo)
    assert common.commit()["dirty"] is False
    (repo / "reports" / "bench" / "x.json").write_text('{"a": 1}\n')
    assert common.commit()["dirty"] is False  # an earlier script's result, not code
    (repo / "a.txt").write_text("b\n")
    assert common.commit() == {"sha": subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                                                     text=True).stdout.strip(), "dirty": True}
