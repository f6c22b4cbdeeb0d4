"""The page at `/` in a real browser, and `POST /depict`, against a real `bentoml serve`.

    .venv/bin/python -m pytest -q tests/test_webpage.py      # needs Debian's chromium and chromium-driver

Headless Chromium driven by Selenium (the system chromium-driver: nothing is downloaded) loads
the page from a server of tiny champions (tests.service_stack, one per module) and submits
inputs; what it shows must be what the JSON API answers for the same inputs. The tiny models
are untrained, so no answer of theirs ever checks out: to see a *verified* answer drawn, one
test has the page's fetch of `/smiles2iupac` hand back the API's own answer for CCO with the
name replaced by "ethanol" and `verified: true` (everything else, OPSIN's reading of the name
included, is the real server). That state is saved as docs/webpage.png for the README.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.service_stack import REPO, running_service
from tests.test_service_fuzz import CONTENT_TYPES, bodies

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = REPO / "docs" / "webpage.png"
SERVER_TIMEOUT = pytest.mark.timeout(420)  # includes the module's server start (first test)
REAL_BANDS = {"3-12": {"structure_match": 0.25, "n": 4}, "13-15": {"structure_match": 0.125, "n": 8}}
METRICS = {"smiles2iupac": {"structure_match": 0.0, "exact_match": 0.0, "real": REAL_BANDS}}
"""smiles2iupac's champion is registered with real-molecule band scores (as evaluate logs
them): /metadata then carries `real.3-12.structure_match`, which the page shows."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir, empty_mlflow_db):
    with running_service(tmp_path_factory.mktemp("webpage"), tiny_model_dir, empty_mlflow_db, metrics=METRICS) as s:
        yield s


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium: apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1180,1240",
                "--force-device-scale-factor=1", "--hide-scrollbars", "--lang=en-US", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


# ---------------------------------------------------------------------------------------
# fast: no server


def test_depict_items_draws_and_isolates_bad_items():
    from seqtune.serving.depict import depict_items

    items = ["CCO", "C1CC", "", "C" * 17, "C[C@H](N)C(=O)O"]
    res = depict_items(items, max_input_length=16)
    assert [r["input"] for r in res] == items
    assert [r["svg"] is not None for r in res] == [True, False, False, False, True]
    assert res[0]["svg"].lstrip().startswith("<?xml") and "<svg" in res[0]["svg"] and res[0]["smiles"] == "CCO"
    assert "RDKit" in res[1]["error"] and "empty" in res[2]["error"] and "too long" in res[3]["error"]
    assert res[4]["smiles"] == "C[C@H](N)C(=O)O" and res[4]["svg"].count("<path") > 5
    named = depict_items(["ethanol", "not a chemical name"], kind="names")
    assert named[0]["smiles"] == "CCO" and "<svg" in named[0]["svg"]
    assert named[1]["svg"] is None and named[1]["error"] == "OPSIN could not read this name"
    with pytest.raises(ValueError):
        depict_items(["CCO"], size=5)


def test_the_bento_ships_the_page():
    # BentoML's own matcher over bentofile.yaml's include/exclude: every file of the page is in.
    import yaml
    from bentoml._internal.bento.build_config import BentoPathSpec

    config = yaml.safe_load((REPO / "service" / "bentofile.yaml").read_text())
    spec = BentoPathSpec(config["include"], config.get("exclude", []), str(REPO))
    files = [p.relative_to(REPO).as_posix() for p in (REPO / "service" / "web").iterdir() if p.is_file()]
    assert {"service/web/index.html", "service/web/app.js", "service/web/style.css"} <= set(files)
    assert [f for f in files if not spec.includes(f)] == []


# ---------------------------------------------------------------------------------------
# slow: the real server


def _post(url: str, route: str, body) -> requests.Response:
    return requests.post(f"{url}/{route}", json=body, timeout=120)


@pytest.mark.slow
@SERVER_TIMEOUT
def test_depict_endpoint_and_page_routes(stack):
    url = stack.url
    res = _post(url, "depict", {"smiles": ["CCO", "C1CC", "c1ccccc1"]}).json()
    assert [r["smiles"] for r in res] == ["CCO", None, "c1ccccc1"]
    assert "<svg" in res[0]["svg"] and res[1]["svg"] is None and "RDKit" in res[1]["error"]
    res = _post(url, "depict", {"names": ["ethanol", "not a chemical name"], "size": 120}).json()
    assert res[0]["smiles"] == "CCO" and "width='120px'" in res[0]["svg"]
    assert res[1]["error"] == "OPSIN could not read this name"
    meta = _post(url, "metadata", {}).json()
    limit, length = meta["serve"]["max_items"], meta["serve"]["max_input_length"]
    for body in ({"smiles": ["CCO"], "names": ["ethanol"]}, {}, {"smiles": []}, {"smiles": ["C"] * (limit + 1)},
                 {"smiles": ["C" * (length + 1)]}, {"smiles": ["CCO"], "size": 5000}, {"smile": ["CCO"]}):
        r = _post(url, "depict", body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    r = requests.post(f"{url}/depict", data=b"{}", headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 415  # the request guard covers /depict like every POST route

    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/app.js"' in page.text and "http://" not in page.text and "https://" not in page.text
    for asset in ("app.js", "style.css"):
        assert requests.get(f"{url}/ui/{asset}", timeout=30).status_code == 200, asset
    assert requests.get(f"{url}/ui/nope.js", timeout=30).status_code == 404
    assert requests.get(f"{url}/docs", timeout=30).status_code == 200  # BentoML's API page, moved from /
    assert requests.get(f"{url}/readyz", timeout=30).status_code == 200  # BentoML's routes untouched


def _wait(driver, condition, timeout: float = 120, what: str = "the page"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception:
        logs = [e["message"] for e in driver.get_log("browser")]
        status = driver.execute_script("return document.getElementById('status').textContent")
        pytest.fail(f"{what}: timed out; status {status!r}; console {logs}")


def _open(driver, url: str, task: str) -> None:
    driver.get(f"{url}/?task={task}")
    _wait(driver, lambda d: d.execute_script(
        "const s = document.getElementById('task'); return !s.disabled && s.value === arguments[0]"
        " && document.getElementById('champion').dataset.task === arguments[0]", task), what="/metadata")


def _submit(driver, lines: list[str]) -> list[dict]:
    """Type `lines` into the page, run them, wait for the answers; what each card shows."""
    from selenium.webdriver.common.by import By

    before = driver.find_element(By.ID, "results").get_attribute("data-done")
    box = driver.find_element(By.ID, "inputs")
    box.clear()
    driver.execute_script("arguments[0].value = arguments[1]", box, "\n".join(lines))
    driver.find_element(By.ID, "submit").click()
    _wait(driver, lambda d: d.find_element(By.ID, "results").get_attribute("data-done") not in (None, before),
          what="the answers")
    # Depictions are <img> of data: URLs: decoded once complete (naturalWidth > 0 = rendered).
    _wait(driver, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete)"), 30, "the drawings")
    return driver.execute_script("""
        const text = (root, sel) => { const n = root.querySelector(sel); return n ? n.textContent : null; };
        const fig = (li, role) => {
          const f = li.querySelector(`figure[data-role="${role}"]`);
          if (!f) return null;
          const img = f.querySelector('img');
          return {src: img ? img.src : null, width: img ? img.naturalWidth : 0,
                  error: text(f, '.depict-error'), smiles: text(f, '.smiles')};
        };
        return [...document.querySelectorAll('#results li.result')].map(li => ({
          state: li.dataset.state, input: text(li, '.input'), output: text(li, '.output'),
          badge: text(li, '.badge'), error: text(li, '.error-text'), latency: text(li, '.latency'),
          input_fig: fig(li, 'input'), answer_fig: fig(li, 'answer')}));""")


def _svg(fig: dict) -> str:
    assert fig["src"].startswith("data:image/svg+xml"), fig["src"][:60]
    return unquote(fig["src"].split(",", 1)[1])


def _check_drawn(fig: dict, smiles: str) -> None:
    """An SVG the browser decoded (naturalWidth > 0) of the structure `smiles`."""
    assert fig and fig["width"] > 0, fig
    svg = _svg(fig)
    assert "<svg" in svg and "<path" in svg and len(svg) > 500
    assert fig["smiles"] == smiles


@pytest.mark.slow
@SERVER_TIMEOUT
def test_page_answers_what_the_api_answers(stack, browser):
    url = stack.url
    _open(browser, url, "smiles2iupac")
    # The champion: model, version, base model, test-set scores, real-molecule bands.
    champion = browser.execute_script("return document.getElementById('champion').innerText")
    assert "seqtune-smiles2iupac v1" in champion and "tiny" in champion and "structure_match" in champion
    bands = browser.execute_script("return [...document.querySelectorAll('#champion table')].at(-1).innerText")
    assert "3-12" in bands and "0.250" in bands and "13-15" in bands and "0.125" in bands

    meta = _post(url, "metadata", {}).json()["serve"]
    too_long = "C" * (meta["max_input_length"] + 1)
    lines = ["CCO", "C1CC", "c1ccccc1", too_long]
    shown = _submit(browser, lines)
    api = _post(url, "smiles2iupac", {"smiles": lines[:3]}).json()
    assert [s["input"] for s in shown] == lines
    for s, a in zip(shown[:3], api):
        assert s["output"] == a["output"] and s["error"] == a["error"], (s, a)
        assert s["state"] == ("error" if a["error"] else "verified" if a["verified"] else "unverified"), (s, a)
        assert s["latency"].endswith("ms (one request of 3)"), s["latency"]
    assert [s["badge"] for s in shown] == ["not verified", "error", "not verified", "error"]
    assert "RDKit could not parse 'C1CC'" in shown[1]["error"] and shown[1]["input_fig"] is None
    assert shown[3]["error"] == f"input too long ({len(too_long)} characters; at most {meta['max_input_length']})"
    assert shown[3]["latency"] == "not sent"
    # The input structures are drawn; each name's drawing is what /depict makes of it.
    _check_drawn(shown[0]["input_fig"], "CCO")
    _check_drawn(shown[2]["input_fig"], "c1ccccc1")
    read = _post(url, "depict", {"names": [api[0]["output"], api[2]["output"]]}).json()
    for s, d in zip((shown[0], shown[2]), read):
        if d["svg"]:
            _check_drawn(s["answer_fig"], d["smiles"])
        else:
            assert s["answer_fig"]["error"] == d["error"] and s["answer_fig"]["src"] is None

    # iupac2smiles: the input drawn is OPSIN's reading of the name (the real OPSIN, no model).
    _open(browser, url, "iupac2smiles")
    shown = _submit(browser, ["ethanol", "not a chemical name"])
    api = _post(url, "iupac2smiles", {"names": ["ethanol", "not a chemical name"]}).json()
    assert [s["output"] for s in shown] == [a["output"] for a in api]
    _check_drawn(shown[0]["input_fig"], "CCO")
    assert shown[1]["input_fig"]["error"] == "OPSIN could not read this name"

    # Nothing came from elsewhere, and nothing was refused (CSP) or failed.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(url) or r.startswith("data:") for r in resources), resources
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


@pytest.mark.slow
@SERVER_TIMEOUT
def test_page_verified_badge_and_both_drawings(stack, browser):
    url = stack.url
    _open(browser, url, "smiles2iupac")
    # The API's real answer for CCO, its name replaced by a right one (see the module docstring).
    browser.execute_script("""
        const real = window.fetch.bind(window);
        window.fetch = async (path, init) => {
          const resp = await real(path, init);
          if (path !== '/smiles2iupac') return resp;
          const items = await resp.json();
          items.forEach(r => { if (r.input === 'CCO') Object.assign(r, {output: 'ethanol', verified: true}); });
          return new Response(JSON.stringify(items), {status: resp.status, headers: resp.headers});
        };""")
    shown = _submit(browser, ["CCO", "c1ccccc1O", "C1CC"])
    assert shown[0]["state"] == "verified" and shown[0]["badge"] == "✓ verified" and shown[0]["output"] == "ethanol"
    _check_drawn(shown[0]["input_fig"], "CCO")
    _check_drawn(shown[0]["answer_fig"], "CCO")  # OPSIN's reading of "ethanol", drawn by the server
    assert [s["badge"] for s in shown[1:]] == ["not verified", "error"]
    browser.execute_script("window.scrollTo(0, 0)")
    _save_screenshot(browser)
    # The copy button puts the answer on the clipboard.
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": url, "permissions": ["clipboardReadWrite",
                                                                                     "clipboardSanitizedWrite"]})
    browser.find_element("css selector", "#results li.result .copy").click()
    _wait(browser, lambda d: d.find_element("css selector", "#results li.result .copy").text == "Copied", 10, "copy")
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0], e => arguments[0]('!' + e))")
    assert copied == "ethanol"


def _save_screenshot(driver) -> None:
    """docs/webpage.png, the README's picture: a 256-colour PNG (a few tens of kB)."""
    from PIL import Image

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1180, height + 160)  # the whole page, answers included (window chrome: ~140 px)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    driver.set_window_size(1180, 1240)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(SCREENSHOT, optimize=True)


@pytest.mark.slow
@SERVER_TIMEOUT
def test_page_csv_upload_download_and_limits(stack, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url = stack.url
    _open(browser, url, "smiles2formula")
    upload = tmp_path / "batch.csv"
    upload.write_text('note,SMILES\n"a, quoted ""note""",CCO\nx,"c1ccccc1"\ny,C1CC\n')
    browser.find_element(By.ID, "csv-file").send_keys(str(upload))
    _wait(browser, lambda d: d.find_element(By.ID, "inputs").get_attribute("value") == "CCO\nc1ccccc1\nC1CC", 10, "upload")
    shown = _submit(browser, ["CCO", "c1ccccc1", "C1CC"])
    api = _post(url, "smiles2formula", {"smiles": ["CCO", "c1ccccc1", "C1CC"]}).json()
    assert [s["output"] for s in shown] == [a["output"] for a in api]
    assert shown[0]["answer_fig"] is None and shown[0]["input_fig"]["width"] > 0  # formulas: input drawn only

    browser.find_element(By.ID, "download").click()
    target = browser.downloads / "seqtune-smiles2formula.csv"
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert [r["input"] for r in rows] == ["CCO", "c1ccccc1", "C1CC"]
    for r, a in zip(rows, api):
        assert r["output"] == (a["output"] or "") and r["error"] == (a["error"] or "")
        assert r["valid"] == json.dumps(a["valid"]) and r["version"] == a["version"] and r["task"] == "smiles2formula"
    assert rows[0]["latency_ms"].isdigit()

    # More inputs than serve.max_items: refused in the page, nothing sent.
    limit = _post(url, "metadata", {}).json()["serve"]["max_items"]
    done = browser.find_element(By.ID, "results").get_attribute("data-done")
    browser.execute_script("document.getElementById('inputs').value = arguments[0]", "\n".join(["CCO"] * (limit + 1)))
    browser.find_element(By.ID, "submit").click()
    status = browser.find_element(By.ID, "status")
    _wait(browser, lambda d: status.get_attribute("data-kind") == "error", 10, "the limit")
    assert f"at most {limit} per run" in status.text
    assert browser.find_element(By.ID, "results").get_attribute("data-done") == done


@pytest.mark.slow
@pytest.mark.timeout(600)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
@example(body=b'{"names": ["ethanol", "", "not a chemical name"], "size": 100}', content_type="application/json")
def test_random_depict_requests_never_get_5xx(stack, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(f"{stack.url}/depict", data=body, headers=headers, timeout=120)
    assert r.status_code < 500, (body[:200], content_type, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert "error" in r.text
    else:
        results = r.json()
        assert isinstance(results, list) and all({"input", "svg", "error"} <= set(x) for x in results)
        assert all((x["svg"] is None) != (x["error"] is None) for x in results), results
