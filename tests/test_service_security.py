"""The service's access rules (docs/security.md): the bearer token, the bind check, the trusted
Host names, JSON-only POSTs, as pure decisions and against a real server that has a token.

    .venv/bin/python -m pytest -q tests/test_service_security.py      # add -m "not slow" to skip the server

The real server (one per module, tests.service_stack): tiny champions served on a loopback
port with `SEQTUNE_API_TOKEN_FILE` set and `serve.trusted_hosts: [seqtune.example]`. The
token-less server's Host and Content-Type checks are in tests/test_service.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import click
import pytest
import requests

from seqtune.config import ConfigError, ServeConfig, load_params, parse_params
from seqtune.serving import security
from seqtune.serving.security import SecurityConfigError
from tests.service_stack import PARAMS, REPO, SERVICE, free_port, import_tiny_champions, serving, stop_serve
from tests.test_webpage import _submit, _wait, browser  # noqa: F401  (browser: the page tests' Chromium fixture)

TOKEN = "st-Zq8v_3kP-9xWm2Lr7TnC"
SERVER_TIMEOUT = pytest.mark.timeout(420)  # includes the module's server start (first test)


# ---------------------------------------------------------------------------------------
# fast: the decisions


def test_token_comes_from_the_variable_or_the_file(tmp_path):
    assert security.load_token({}) is None  # neither set: no authentication
    assert security.load_token({"SEQTUNE_API_TOKEN": f"  {TOKEN}\n"}) == TOKEN
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")  # `echo token > file`: the newline is not part of it
    assert security.load_token({"SEQTUNE_API_TOKEN_FILE": str(secret)}) == TOKEN


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SEQTUNE_API_TOKEN": "a", "SEQTUNE_API_TOKEN_FILE": "{file}"}, "both SEQTUNE_API_TOKEN and SEQTUNE_API_TOKEN_FILE"),
        ({"SEQTUNE_API_TOKEN": "  "}, "SEQTUNE_API_TOKEN: the token is empty"),
        ({"SEQTUNE_API_TOKEN_FILE": "{empty}"}, "the token is empty"),
        ({"SEQTUNE_API_TOKEN_FILE": "{missing}"}, "cannot read the token file"),
        ({"SEQTUNE_API_TOKEN_FILE": "{tmp}"}, "cannot read the token file"),  # a directory
        ({"SEQTUNE_API_TOKEN_FILE": ""}, "SEQTUNE_API_TOKEN_FILE is set but empty"),
        ({"SEQTUNE_API_TOKEN": "two words"}, "only visible ASCII"),
        ({"SEQTUNE_API_TOKEN": "jeton-é"}, "only visible ASCII"),
    ],
)
def test_a_token_set_wrong_is_an_error_not_no_auth(tmp_path, env, needle):
    (tmp_path / "file").write_text(TOKEN)
    (tmp_path / "empty").write_text("\n")
    paths = {"{file}": tmp_path / "file", "{empty}": tmp_path / "empty", "{missing}": tmp_path / "nope", "{tmp}": tmp_path}
    env = {k: str(paths.get(v, v)) for k, v in env.items()}
    with pytest.raises(SecurityConfigError, match=needle):
        security.load_token(env)


def test_binding_beyond_loopback_needs_a_token():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        security.check_bind(host, None)  # this machine only: a token is optional
    for host in ("0.0.0.0", "::", "", "192.168.1.20", "10.0.0.5", "seqtune.example", "2001:db8::1"):
        with pytest.raises(SecurityConfigError, match="without authentication: set SEQTUNE_API_TOKEN"):
            security.check_bind(host, None)
        security.check_bind(host, TOKEN)


def test_the_default_bind_is_loopback():
    # Shipped: 127.0.0.1 in the config class and in params.yaml, so no token is needed out of the box.
    assert ServeConfig().host == "127.0.0.1"
    assert load_params(REPO / "params.yaml").serve.host == "127.0.0.1"
    assert security.is_loopback(ServeConfig().host)


def test_the_bound_host_is_what_the_server_command_binds():
    # No BentoML command (an in-process `bentoml.serve`, a plain import): serve.host.
    assert security.bound_host("127.0.0.1") == "127.0.0.1"
    # `bentoml serve --host` (or BENTOML_HOST) overrides serve.host; without it, serve.host.
    for given, expected in (("0.0.0.0", "0.0.0.0"), (None, "127.0.0.1")):
        with click.Context(click.Command("serve"), info_name="serve") as ctx:
            ctx.params = {"host": given, "port": 3000}
            assert security.bound_host("127.0.0.1") == expected
    # `bentoml build` binds nothing: nothing to check.
    with click.Context(click.Command("build")) as ctx:
        ctx.params = {"bento_file": "bentofile.yaml"}
        assert security.bound_host("0.0.0.0") is None
    # A worker (`--fd`): its listening socket's real address, whatever chose it; the socket stays open.
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        with click.Context(click.Command("main")) as ctx:
            ctx.params = {"fd": sock.fileno()}
            assert security.bound_host("127.0.0.1") == "0.0.0.0"
        assert sock.getsockname()[0] == "0.0.0.0"


def test_trusted_host_names_and_the_host_header():
    allowed = security.trusted_host_names(["127.0.0.1", "0.0.0.0", None], ["Seqtune.Example."])
    assert allowed == {"localhost", "127.0.0.1", "::1", "seqtune.example"}  # 0.0.0.0 names no host
    ok = ["127.0.0.1:3000", "localhost", "LOCALHOST:8080", "[::1]:3000", "[::1]", "seqtune.example:443",
          "seqtune.example.", "localhost:"]
    bad = ["evil.example", "evil.example:3000", "127.0.0.1.evil.example", "0.0.0.0:3000", "::1", "localhost:abc",
           "[::1", "[::1]x", "", "seqtune.example.evil", "*"]
    for h in ok:
        assert security.host_allowed([h], allowed), h
    for h in bad:
        assert not security.host_allowed([h], allowed), h
    assert not security.host_allowed([], allowed)  # HTTP/1.0 without Host
    assert not security.host_allowed(["localhost", "localhost"], allowed)  # two Host headers
    assert security.host_allowed(["anything.example"], security.trusted_host_names([], ["*"]))


def test_trusted_hosts_in_params_are_names_without_ports():
    serve = parse_params({"serve": {"trusted_hosts": ["Seqtune.Example", "[::1]", "10.0.0.1", "*"]}}).serve
    assert serve.trusted_hosts == ["seqtune.example", "::1", "10.0.0.1", "*"]
    assert ServeConfig().trusted_hosts == []
    for bad, needle in ((["seqtune.example:8080"], "without a port"), (["http://seqtune.example"], "no scheme"),
                        ([""], "host name"), ("seqtune.example", "serve.trusted_hosts")):
        with pytest.raises(ConfigError, match=needle) as e:
            parse_params({"serve": {"trusted_hosts": bad}}, "params.yaml")
        assert "serve.trusted_hosts" in str(e.value)


def test_bearer_header_content_type_and_open_paths():
    assert security.bearer_ok(f"Bearer {TOKEN}".encode(), TOKEN)
    assert security.bearer_ok(f"bearer  {TOKEN} ".encode(), TOKEN)  # the scheme is case-insensitive
    for header in (None, b"", b"Bearer", b"Bearer ", TOKEN.encode(), f"Basic {TOKEN}".encode(),
                   f"Bearer {TOKEN}x".encode(), f"Bearer {TOKEN[:-1]}".encode(), b"Bearer \xff\xfe"):
        assert not security.bearer_ok(header, TOKEN), header
    for ctype in (b"application/json", b"application/json; charset=utf-8", b"Application/JSON ;charset=UTF-8"):
        assert security.is_json(ctype), ctype
    for ctype in (None, b"", b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                  b"application/vnd.bentoml+pickle", b"application/jsonp", b"application/ld+json", b"json"):
        assert not security.is_json(ctype), ctype
    assert [p for p in ("/livez", "/readyz", "/healthz", "/", "/ui/app.js") if security.needs_token(p)] == []
    assert all(security.needs_token(p) for p in ("/smiles2iupac", "/metadata", "/stats", "/depict", "/metrics",
                                                  "/docs", "/docs.json", "/schema.json", "/ui", "/uix", "/nope"))


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--host", "0.0.0.0"], {}, "would listen on 0.0.0.0, beyond this machine, without authentication"),
        ([], {"BENTOML_HOST": "0.0.0.0"}, "would listen on 0.0.0.0"),
        ([], {"SEQTUNE_API_TOKEN_FILE": "/nonexistent/token"}, "cannot read the token file"),
        # With a token the bind is allowed: the start then fails later, for want of models.
        (["--host", "0.0.0.0"], {"SEQTUNE_API_TOKEN": TOKEN}, "not found in the local store"),
    ],
)
def test_bentoml_serve_refuses_to_start(tmp_path, args, env, needle):
    full = {k: v for k, v in os.environ.items() if not k.startswith("SEQTUNE_API_TOKEN")}
    full.update(BENTOML_HOME=str(tmp_path / "empty"), SEQTUNE_PARAMS=str(PARAMS), **env)
    out = subprocess.run([sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(free_port()), *args],
                         cwd=REPO, env=full, capture_output=True, text=True, timeout=180)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert needle in out.stderr, out.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# slow: a real server with a token


@pytest.fixture(scope="module")
def secured(tmp_path_factory, tiny_model_dir, empty_mlflow_db):
    root = tmp_path_factory.mktemp("secured")
    secret = root / "api-token"
    secret.write_text(f"{TOKEN}\n")
    with serving(root, empty_mlflow_db, lambda r: import_tiny_champions(r, tiny_model_dir),
                 serve={"trusted_hosts": ["seqtune.example"]}, env={"SEQTUNE_API_TOKEN_FILE": str(secret)}) as running:
        url, _, log, folders, _ = running
        yield SimpleNamespace(url=url, log=log, folders=folders, bentoml_home=root / "bentoml")


def _call(url: str, method: str, route: str, auth: str | None = None, **kw) -> requests.Response:
    headers = {**kw.pop("headers", {}), **({"Authorization": auth} if auth is not None else {})}
    return requests.request(method, f"{url}/{route}", headers=headers, timeout=120, **kw)


# Every kind of route a token protects: task, BentoML's API and its own pages, metrics.
PROTECTED = [
    ("POST", "smiles2formula", {"smiles": ["CCO"]}),
    ("POST", "metadata", {}),
    ("GET", "metadata", None),
    ("POST", "stats", {}),
    ("POST", "depict", {"smiles": ["CCO"]}),
    ("GET", "metrics", None),
    ("GET", "docs", None),
    ("GET", "schema.json", None),
]


@pytest.mark.slow
@SERVER_TIMEOUT
@pytest.mark.parametrize(("method", "route", "body"), PROTECTED)
def test_token_required(secured, method, route, body):
    for auth in (None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN, "Bearer "):
        r = _call(secured.url, method, route, auth, json=body)
        assert r.status_code == 401, (auth, r.status_code, r.text[:300])
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer") and ("invalid_token" in challenge) == (auth is not None), challenge
        assert "Authorization: Bearer" in r.json()["error"]
    for auth in (f"Bearer {TOKEN}", f"bearer {TOKEN}"):
        r = _call(secured.url, method, route, auth, json=body)
        assert r.status_code == 200, (auth, r.status_code, r.text[:300])


@pytest.mark.slow
@SERVER_TIMEOUT
def test_probes_and_the_page_stay_open(secured):
    for route in ("livez", "readyz", "healthz", "", "ui/app.js", "ui/style.css"):
        assert _call(secured.url, "GET", route).status_code == 200, route
    # The token is checked before anything about the request is: no 415 hint without it.
    r = _call(secured.url, "POST", "smiles2formula", data=b'{"smiles": ["CCO"]}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 401
    r = _call(secured.url, "POST", "smiles2formula", f"Bearer {TOKEN}", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


@pytest.mark.slow
@SERVER_TIMEOUT
def test_trusted_hosts_from_params(secured):
    auth = f"Bearer {TOKEN}"
    for host in ("seqtune.example", "seqtune.example:8443", "Seqtune.Example.", "localhost"):
        r = _call(secured.url, "GET", "metadata", auth, headers={"Host": host})
        assert r.status_code == 200, (host, r.text[:300])
        assert r.json()["serve"]["trusted_hosts"] == ["seqtune.example"]
        assert TOKEN not in r.text  # the token is never part of what the service reports
    for host in ("evil.example", "seqtune.example.evil.example"):
        r = _call(secured.url, "GET", "metadata", auth, headers={"Host": host})
        assert r.status_code == 400, (host, r.text[:300])
    assert _call(secured.url, "GET", "readyz", headers={"Host": "10.1.2.3"}).status_code == 200


@pytest.mark.slow
@SERVER_TIMEOUT
def test_clients_send_the_token(secured, monkeypatch):
    import bentoml

    from seqtune.serving.predict import main

    with bentoml.SyncHTTPClient(secured.url, token=TOKEN) as client:
        res = client.smiles2formula(smiles=["CCO", "(("])
    res = [x if isinstance(x, dict) else x.model_dump() for x in res]
    assert [x["valid"] for x in res] == [True, False] and res[0]["output"]
    # `seqtune predict --url` sends the token of the service's own variables.
    monkeypatch.setenv("SEQTUNE_API_TOKEN", TOKEN)
    remote = main("smiles2formula", ["CCO", "(("], url=secured.url, params=PARAMS)
    assert [(r["output"], r["valid"]) for r in remote] == [(x["output"], x["valid"]) for x in res]
    monkeypatch.setenv("SEQTUNE_API_TOKEN", "not-the-token")
    with pytest.raises(ValueError, match="needs its API token.*was refused"):
        main("smiles2formula", ["CCO"], url=secured.url, params=PARAMS)
    monkeypatch.delenv("SEQTUNE_API_TOKEN")
    with pytest.raises(ValueError, match="needs its API token: set SEQTUNE_API_TOKEN"):
        main("smiles2formula", ["CCO"], url=secured.url, params=PARAMS)


@pytest.mark.slow
@SERVER_TIMEOUT
def test_page_asks_for_the_token_and_sends_it(secured, browser):
    from selenium.webdriver.common.by import By

    def enter(token: str) -> None:
        box = browser.find_element(By.ID, "token")
        box.clear()
        box.send_keys(token)
        browser.find_element(By.ID, "token-submit").click()

    form_shown = "return !document.getElementById('token-form').hidden"
    status = "return document.getElementById('status').textContent"
    browser.get(f"{secured.url}/?task=smiles2formula")
    _wait(browser, lambda d: d.execute_script(form_shown) and "needs its API token" in d.execute_script(status),
          60, "the token field")
    assert browser.find_element(By.ID, "task").get_attribute("disabled")  # nothing loaded without it
    enter("wrong-token")
    _wait(browser, lambda d: d.execute_script(form_shown) and "refused this API token" in d.execute_script(status),
          60, "the refusal")
    enter(TOKEN)
    _wait(browser, lambda d: d.execute_script(
        "const s = document.getElementById('task'); return !s.disabled && s.value === 'smiles2formula'"
        " && document.getElementById('token-form').hidden"), 60, "/metadata with the token")
    assert browser.execute_script("return sessionStorage.getItem('seqtune-api-token')") == TOKEN
    cards = _submit(browser, ["CCO", "C1CC"])
    assert [c["input"] for c in cards] == ["CCO", "C1CC"]
    assert cards[0]["state"] != "error" and cards[0]["output"], cards[0]
    assert cards[0]["input_fig"]["width"] > 0  # /depict got the token too
    assert cards[1]["state"] == "error"
    # A reload in the same tab keeps the token: no question asked.
    browser.refresh()
    _wait(browser, lambda d: d.execute_script("return !document.getElementById('task').disabled"), 60, "the reload")
    assert not browser.execute_script(form_shown)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_bound_beyond_loopback_without_a_token_serves_nothing(secured, tmp_path):
    # An in-process `bentoml.serve(host=...)` binds where the importing process cannot see
    # (serve.host says 127.0.0.1): each worker checks its own socket and exits before serving.
    # In a fresh process (its BentoML store the `secured` module's), with no token.
    port = free_port()
    code = f"import time, bentoml; bentoml.serve({SERVICE!r}, host='0.0.0.0', port={port}); time.sleep(600)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQTUNE_API_TOKEN")}
    env["BENTOML_HOME"] = str(secured.bentoml_home)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "would listen on 0.0.0.0" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        text = log.read_text(errors="replace")
        assert "error: the service would listen on 0.0.0.0, beyond this machine, without authentication" in text, text[-3000:]
        assert "listening on 0.0.0.0: no token" not in text  # no worker got as far as loading models
        with pytest.raises(requests.RequestException):  # the socket accepts; no worker answers
            requests.get(f"http://127.0.0.1:{port}/readyz", timeout=3)
    finally:
        stop_serve(proc)
