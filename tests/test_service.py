"""The BentoML service, `seqtune bento import`, `seqtune predict` and the built bento.

    .venv/bin/python -m pytest -q tests/test_service.py            # add -m "not slow" to skip the server

One real server per module (module-scoped `stack`): tiny champions registered in a temp MLflow
store, imported into a temp BentoML home, served on a free loopback port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from seqtune.config import load_params
from tests.service_stack import PARAMS, REPO, bento_server, free_port, running_service, seqtune_cli, tiny_champion

INPUTS = {
    "smiles2iupac": ["CCO", "c1ccccc1", "CC(=O)O", "CCN"],
    "smiles2formula": ["CCO", "c1ccccc1", "CC(=O)O", "CCN"],
    "iupac2smiles": ["ethanol", "benzene", "acetic acid"],
}
FIELD = {"smiles2iupac": "smiles", "smiles2formula": "smiles", "iupac2smiles": "names"}
SERVER_TIMEOUT = pytest.mark.timeout(420)  # includes the module's server start (first test)


def _post(url: str, route: str, body, **kw) -> requests.Response:
    return requests.post(f"{url}/{route}", json=body, timeout=120, **kw)


def _expected(folder: Path, inputs: list[str], task: str) -> list[str]:
    """The model's own answers, decoded as the service decodes `task` (serve.decoding)."""
    from seqtune.inference.loader import load_generator

    from seqtune.tasks import get_task

    serve = load_params(PARAMS).serve
    decoding = get_task(task).decoding_for(serve.decoding_for(task))  # verified only where it is fair
    gen = load_generator(folder, max_new_tokens=serve.max_new_tokens)
    return [p.output for p in gen.predict(inputs, decoding=decoding, num_beams=serve.num_beams)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir, empty_mlflow_db):
    with running_service(tmp_path_factory.mktemp("service"), tiny_model_dir, empty_mlflow_db) as s:
        yield s


# ---------------------------------------------------------------------------------------
# fast: no server


def test_predict_items_isolates_bad_items(tmp_path, tiny_model_dir):
    from seqtune.inference.loader import load_generator
    from seqtune.serving.predict import predict_items

    gen = load_generator(tiny_champion(tiny_model_dir, tmp_path / "m", "smiles2formula"))
    items = ["CCO", "xx((", "", "c1ccccc1", "C" * 20]
    res = predict_items(gen, items, max_input_length=10)
    assert [r["input"] for r in res] == items
    assert [r["valid"] for r in res] == [True, False, False, True, False]
    assert "RDKit" in res[1]["error"] and "empty" in res[2]["error"] and "too long" in res[4]["error"]
    assert all(r["output"] is None for r in res if not r["valid"])
    good = [res[0]["output"], res[3]["output"]]
    assert good == [p.output for p in gen.predict(["CCO", "c1ccccc1"])]
    assert all(good) and good[0] != good[1]  # non-trivial, input-dependent outputs
    # smiles2formula's check is exact: the random model's answers are not the formula.
    assert res[0]["verified"] is False and res[0]["error"] is None


def test_verified_decoding_degrades_to_unverified_top_beams_when_opsin_fails(tmp_path, tiny_model_dir, monkeypatch):
    """OPSIN down during verified decoding (fault injected where smiles2iupac calls it): every
    item still gets its top beam, `verified` null, no error, after ONE beam search (not the
    N + 1 of a failed batch retried item by item)."""
    import seqtune.tasks.smiles2iupac as s2i
    from seqtune.inference.loader import load_generator
    from seqtune.serving.predict import predict_items

    gen = load_generator(tiny_champion(tiny_model_dir, tmp_path / "n", "smiles2iupac"), max_new_tokens=12)
    items = ["CCO", "c1ccccc1", "CC(=O)O"]
    top = [c[0] for c in gen.generate(items, num_beams=3, num_return_sequences=3)]
    calls: list[int] = []
    searched = gen.generate
    monkeypatch.setattr(gen, "generate", lambda sources, **kw: calls.append(len(sources)) or searched(sources, **kw))

    def opsin_down(names):
        raise RuntimeError("OPSIN returned exit code 1 (injected)")

    monkeypatch.setattr(s2i, "opsin_canonical", opsin_down)
    res = predict_items(gen, items, decoding="verified", num_beams=3)
    assert calls == [3]  # one batched beam search, no retries
    assert [r["output"] for r in res] == top
    assert all(r["verified"] is None and r["error"] is None and r["valid"] for r in res)


def test_predict_items_verified_decoding_and_generation_failures(tmp_path, tiny_model_dir, monkeypatch):
    from seqtune.inference.loader import load_generator
    from seqtune.serving.predict import predict_items

    iupac = load_generator(tiny_champion(tiny_model_dir, tmp_path / "n", "smiles2iupac"), max_new_tokens=16)
    res = predict_items(iupac, ["CCO"], decoding="verified")
    assert res[0]["output"] == iupac.predict(["CCO"], decoding="verified")[0].output
    assert res[0]["verified"] is False  # no beam of the random model names ethanol
    # smiles2formula's check is RDKit's formula itself: keeping the beam that checks out would
    # be the rule-based tool answering, so `verified` decodes greedy there (and still checks).
    gen = load_generator(tiny_champion(tiny_model_dir, tmp_path / "m", "smiles2formula"), max_new_tokens=16)
    asked: list[str] = []
    spied = gen.predict
    monkeypatch.setattr(gen, "predict", lambda sources, **kw: asked.append(kw["decoding"]) or spied(sources, **kw))
    res = predict_items(gen, ["CCO"], decoding="verified")
    assert asked == ["greedy"] and res[0]["output"] == spied(["CCO"])[0].output
    assert res[0]["verified"] is False  # the random model's answer is not the formula
    monkeypatch.undo()
    # A generation crash on one input (fault injected around the real generator) fails that
    # item only: the batch is retried item by item.
    real = gen.predict

    def fragile(sources, **kw):
        if "CCCl" in sources:
            raise RuntimeError("boom")
        return real(sources, **kw)

    monkeypatch.setattr(gen, "predict", fragile)
    res = predict_items(gen, ["CCO", "CCCl", "CCN"])
    assert [r["error"] for r in res] == [None, "generation failed: boom", None]
    assert [res[0]["output"], res[2]["output"]] == [real([s])[0].output for s in ("CCO", "CCN")]


def test_import_without_champion_says_what_to_do():
    from seqtune.serving.bento import import_champions

    with pytest.raises(RuntimeError, match="dvc repro"):
        import_champions(params=PARAMS)


def test_predict_without_champion_says_what_to_do():
    from seqtune.serving.predict import main

    with pytest.raises(RuntimeError, match="dvc repro"):
        main("smiles2formula", ["CCO"], params=PARAMS)


# ---------------------------------------------------------------------------------------
# slow: the real server


@pytest.mark.slow
@SERVER_TIMEOUT
def test_service_module_does_not_import_mlflow(stack):
    # A container serves from the BentoML store alone: the service must not need MLflow.
    # (The module checks its models on import, hence the stack's BentoML home.)
    code = "import sys; import service.service; print('mlflow' in sys.modules, service.service.TASKS)"
    env = {**os.environ, "BENTOML_HOME": str(stack.bentoml_home)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "False", out.stdout


def test_importing_the_service_without_models_says_what_to_run(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "empty")}
    out = subprocess.run([sys.executable, "-c", "import service.service"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "not found in the local store: run `seqtune bento import`" in out.stderr, out.stderr


@pytest.mark.slow
@SERVER_TIMEOUT
@pytest.mark.parametrize("task", list(INPUTS))
def test_outputs_match_the_champion_folder(stack, task):
    inputs = INPUTS[task]
    r = _post(stack.url, task, {FIELD[task]: inputs})
    assert r.status_code == 200, r.text
    res = r.json()
    assert [x["input"] for x in res] == inputs
    assert all(x["valid"] and x["error"] is None for x in res), res
    assert all(x["output"] for x in res)  # non-empty: the comparison below means something
    assert [x["output"] for x in res] == _expected(stack.folders[task], inputs, task)
    assert {(x["model"], x["version"]) for x in res} == {(f"seqtune-{task}", "1")}
    # Every task can check its outputs; the random model's answers never check out.
    assert all(x["verified"] is False for x in res), res


@pytest.mark.slow
@SERVER_TIMEOUT
def test_python_client(stack):
    import bentoml

    with bentoml.SyncHTTPClient(stack.url) as client:
        res = client.smiles2formula(smiles=["CCO", "c1ccccc1"])
    res = [x if isinstance(x, dict) else x.model_dump() for x in res]
    assert [x["output"] for x in res] == _expected(stack.folders["smiles2formula"], ["CCO", "c1ccccc1"], "smiles2formula")


@pytest.mark.slow
@SERVER_TIMEOUT
def test_bad_items_get_their_own_error(stack):
    items = ["CCO", "C1CC", "", "c1ccccc1", "   "]
    res = _post(stack.url, "smiles2iupac", {"smiles": items}).json()
    assert [x["valid"] for x in res] == [True, False, False, True, False]
    assert "RDKit" in res[1]["error"] and "empty" in res[2]["error"]
    assert all(x["output"] is None and x["verified"] is None for x in res if not x["valid"])
    good = [res[0]["output"], res[3]["output"]]
    assert good == _expected(stack.folders["smiles2iupac"], ["CCO", "c1ccccc1"], "smiles2iupac")
    # All bad: still a 200 with one error each.
    res = _post(stack.url, "smiles2formula", {"smiles": ["((", "Xx"]}).json()
    assert [x["valid"] for x in res] == [False, False] and all(x["error"] for x in res)


@pytest.mark.slow
@SERVER_TIMEOUT
def test_concurrent_requests_are_batched(stack):
    def stats() -> Counter:
        s = requests.post(f"{stack.url}/stats", json={}, timeout=30).json()
        return Counter({int(k): v for k, v in s["tasks"]["smiles2formula"]["batch_sizes"].items()})

    inputs = ["C" * n for n in range(1, 25)] + ["c1ccccc1", "CCO", "CCN", "CC(=O)O"]
    before = stats()
    with ThreadPoolExecutor(len(inputs)) as pool:
        answers = list(pool.map(lambda s: _post(stack.url, "smiles2formula", {"smiles": [s]}), inputs))
    after = stats()
    assert all(a.status_code == 200 for a in answers)
    # Each request gets back exactly its own result, though they were computed together.
    assert [a.json()[0]["input"] for a in answers] == inputs
    assert all(len(a.json()) == 1 and a.json()[0]["valid"] for a in answers)
    calls = after - before
    assert sum(size * n for size, n in calls.items()) == len(inputs)
    assert max(calls) > 1, f"no batching: model calls by batch size {dict(calls)}"
    assert sum(calls.values()) < len(inputs)


@pytest.mark.slow
@SERVER_TIMEOUT
@pytest.mark.parametrize(
    "body, status",
    [
        ('{"smiles": "CCO"}', 400),  # a string, not a list
        ('{"smiles": [1, 2]}', 400),  # not strings
        ('{"smiles": [null]}', 400),
        ('{"smile": ["CCO"]}', 400),  # misspelt field
        ('{"smiles": ["CCO"], "extra": 1}', 400),
        ('{"names": ["ethanol"]}', 400),  # the other task's field
        ('["CCO"]', 400),
        ('{"smiles": []}', 400),
        (json.dumps({"smiles": ["C"] * 65}), 400),  # > serve.max_items
        (json.dumps({"smiles": ["C" * 301]}), 400),  # > serve.max_input_length
        ('{"smiles": ["CCO"', 400),  # bad JSON
        ("", 400),
        (b"\xff\xfe\x00garbage", 400),
        (json.dumps({"smiles": ["C" * 300] * 2000}), 413),  # far over any valid request
    ],
)
def test_malformed_requests_get_4xx(stack, body, status):
    r = requests.post(f"{stack.url}/smiles2formula", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    assert "error" in json.dumps(r.json())


@pytest.mark.slow
@SERVER_TIMEOUT
def test_content_types(stack):
    # JSON only. text/plain, form-urlencoded and no Content-Type are what a page on any site
    # may POST here without a CORS preflight: 415, like every other type (pickle included).
    body = json.dumps({"smiles": ["CCO"]})
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        r = requests.post(f"{stack.url}/smiles2formula", data=body, headers={"Content-Type": ctype}, timeout=60)
        assert r.status_code == 200 and r.json()[0]["valid"], (ctype, r.text)
    for ctype in (None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/vnd.bentoml+pickle", "image/png", "application/jsonx"):
        headers = {"Content-Type": ctype} if ctype else {}  # None: requests sends no Content-Type for bytes
        for route in ("smiles2formula", "metadata", "depict"):
            r = requests.post(f"{stack.url}/{route}", data=body, headers=headers, timeout=60)
            assert r.status_code == 415, (route, ctype, r.status_code, r.text)
            assert r.json()["accepted"] == ["application/json"] and "application/json" in r.json()["error"], r.text


@pytest.mark.slow
@SERVER_TIMEOUT
def test_untrusted_host_gets_400(stack):
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches this
    # port with `Host: evil.example`. Only this service's own names get through.
    port = stack.url.rsplit(":", 1)[1]
    body = {"smiles": ["CCO"]}
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "0.0.0.0"):
        for method, route in (("post", "smiles2formula"), ("get", "metadata"), ("get", ""), ("get", "docs")):
            r = getattr(requests, method)(f"{stack.url}/{route}", json=body, headers={"Host": host}, timeout=60)
            assert r.status_code == 400 and "untrusted Host" in r.json()["error"], (host, route, r.status_code, r.text)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"[::1]:{port}"):
        r = _post(stack.url, "smiles2formula", body, headers={"Host": host})
        assert r.status_code == 200 and r.json()[0]["valid"], (host, r.text)
    for probe in ("livez", "readyz", "healthz"):  # orchestrators probe by pod IP: any Host
        assert requests.get(f"{stack.url}/{probe}", headers={"Host": "10.1.2.3:3000"}, timeout=10).status_code == 200


@pytest.mark.slow
@SERVER_TIMEOUT
def test_health_ready_metadata(stack):
    from seqtune.tasks import get_task

    for probe in ("livez", "healthz", "readyz"):
        assert requests.get(f"{stack.url}/{probe}", timeout=10).status_code == 200, probe
    posted = requests.post(f"{stack.url}/metadata", json={}, timeout=10)
    got = requests.get(f"{stack.url}/metadata", timeout=10)  # GET too: it only reads
    assert posted.status_code == got.status_code == 200, (posted.text, got.text)
    assert got.headers["content-type"].startswith("application/json")
    meta = posted.json()
    assert got.json() == meta
    assert set(meta["tasks"]) == set(INPUTS)
    for task, info in meta["tasks"].items():
        assert info["model"] == f"seqtune-{task}" and info["version"] == "1"
        assert info["base_model"] == "tiny" and info["data_hash"] == "x" and info["test_hash"] == "y"
        assert info["primary_metric"] in info["metrics"]
        # the decoding that runs: verified only where it is fair (smiles2iupac), else greedy
        assert info["decoding"] == get_task(task).decoding_for(load_params(PARAMS).serve.decoding_for(task))
        # the weights' precision and why (serve.precision auto: the CPU's bf16 verdict)
        assert info["precision"] in ("bf16", "fp32") and f" -> {info['precision']}: " in info["precision_reason"]
    assert meta["tasks"]["smiles2iupac"]["decoding"] == "verified" and meta["tasks"]["smiles2formula"]["decoding"] == "greedy"
    assert meta["serve"]["batching"] is True and meta["serve"]["input_fields"] == FIELD


@pytest.mark.slow
@SERVER_TIMEOUT
def test_predict_cli_remote_and_local(stack, monkeypatch, capsys):
    from seqtune.serving.predict import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
    inputs = ["CCO", "nope(", "c1ccccc1"]
    remote = main("smiles2formula", inputs, url=stack.url, params=PARAMS)
    local = main("smiles2formula", inputs, params=PARAMS)
    assert remote == local  # same champion, same per-item logic, over HTTP or not
    assert [r["valid"] for r in local] == [True, False, True]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == remote + local
    with pytest.raises(RuntimeError, match="make serve"):
        main("smiles2formula", ["CCO"], url=f"http://127.0.0.1:{free_port()}", params=PARAMS)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_built_bento_carries_its_models_and_serves(stack, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
    monkeypatch.setenv("BENTOML_HOME", str(stack.bentoml_home))
    # Re-importing unchanged champions is a no-op.
    again = seqtune_cli("bento", "import", "--params", str(PARAMS))
    assert again.returncode == 0 and again.stdout.count("already imported") == 3, again.stdout + again.stderr

    env = dict(os.environ)
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "service/bentofile.yaml", "-o", "tag", "."],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    tag = next(line for line in built.stdout.splitlines() if line.startswith("__tag__:"))[len("__tag__:") :]
    name, version = tag.split(":")
    bento = stack.bentoml_home / "bentos" / name / version
    dockerfile = (bento / "env/docker/Dockerfile").read_text()
    assert "default-jre-headless" in dockerfile
    reqs = (bento / "env/python/requirements.txt").read_text()
    assert "torch==2.13.0" in reqs.splitlines()  # the tested pin, never re-resolved
    assert not (bento / "env/python/requirements.lock.txt").exists()  # lock_packages: false
    for f in ("params.yaml", "service/service.py", "seqtune/inference/generator.py"):
        assert (bento / "src" / f).exists(), f

    # The exported bento carries every champion.
    archive = tmp_path / "seqtune.bento"
    exported = subprocess.run([sys.executable, "-m", "bentoml", "export", tag, str(archive)],
                              env=env, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0 and archive.exists(), exported.stderr
    with tarfile.open(archive) as tar:
        names = [n.removeprefix("./") for n in tar.getnames()]
    for task in INPUTS:
        assert any(n.startswith(f"models/seqtune-{task}/") and n.endswith("hf/model.safetensors") for n in names), task

    # A better smiles2formula model becomes champion v2; importing it adds a newer BentoML model.
    from seqtune.pipeline.register import register_model

    v2 = tiny_champion(tiny_model_dir, tmp_path / "v2", "smiles2formula", seed=2)
    assert register_model("smiles2formula", v2, {"exact_match": 0.5}, params=PARAMS).promoted
    again = seqtune_cli("bento", "import", "--params", str(PARAMS))
    assert again.returncode == 0, again.stderr
    assert "smiles2formula v2 imported as" in again.stdout and again.stdout.count("already imported") == 2, again.stdout
    v2_model = tmp_path / "v2.bentomodel"
    subprocess.run([sys.executable, "-m", "bentoml", "models", "export", "seqtune-smiles2formula:latest", str(v2_model)],
                   env=env, check=True, timeout=300, capture_output=True)

    # A fresh BentoML home (no MLflow store at all) with the bento and, newer, champion v2:
    # the bento serves the models it was built with.
    fresh = dict(env, BENTOML_HOME=str(tmp_path / "fresh"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'none.db'}")
    for cmd in (["import", str(archive)], ["models", "import", str(v2_model)]):
        subprocess.run([sys.executable, "-m", "bentoml", *cmd], env=fresh, check=True, timeout=300, capture_output=True)
    import bentoml

    inputs = ["CCO", "c1ccccc1"]
    with bento_server(tag, fresh, port=free_port(), log=tmp_path / "bento.log") as url:
        try:
            bentoml.SyncHTTPClient(url, server_ready_timeout=240).close()
        except Exception:
            pytest.fail("the bento did not come up:\n" + (tmp_path / "bento.log").read_text()[-3000:])
        res = _post(url, "smiles2formula", {"smiles": [*inputs, "(("]}).json()
    v1_out, v2_out = _expected(stack.folders["smiles2formula"], inputs, "smiles2formula"), _expected(v2, inputs, "smiles2formula")
    assert v1_out != v2_out  # else this check could not tell them apart
    assert [x["output"] for x in res[:2]] == v1_out and res[0]["version"] == "1"
    assert res[2]["valid"] is False
