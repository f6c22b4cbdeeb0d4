"""Property test: random bytes, text and JSON at every endpoint never get a 5xx, and the
service stays up.

    .venv/bin/python -m pytest -q tests/test_service_fuzz.py
"""

from __future__ import annotations

import json

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.service_stack import running_service

ROUTES = ["smiles2iupac", "smiles2formula", "iupac2smiles", "metadata", "stats"]
CONTENT_TYPES = [
    None, "application/json", "application/json; charset=utf-8", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "application/vnd.bentoml+pickle",
    "application/octet-stream",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
# Well-formed requests with random strings reach the model; broken ones mix in wrong types,
# oversize strings and wrong or extra fields.
smilesish = st.text(alphabet="CNOSPFclnos()[]=#@+-1234567890/\\%. ", max_size=30)
well_formed = st.builds(
    lambda field, xs: {field: xs},
    st.sampled_from(["smiles", "names"]),
    st.lists(st.one_of(smilesish, st.text(max_size=30)), min_size=1, max_size=6),
)
broken = st.builds(
    lambda field, xs, extra: {field: xs, **extra},
    st.sampled_from(["smiles", "names", "smile", ""]),
    st.lists(st.one_of(smilesish, st.integers(), st.none(), st.just("C" * 301)), max_size=6),
    st.dictionaries(st.sampled_from(["extra", "decoding"]), json_values, max_size=1),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    well_formed.map(lambda v: json.dumps(v).encode()),
    broken.map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model_dir, empty_mlflow_db):
    with running_service(tmp_path_factory.mktemp("fuzz"), tiny_model_dir, empty_mlflow_db) as s:
        yield s


@pytest.mark.slow
@pytest.mark.timeout(900)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(route=st.sampled_from(ROUTES), body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
@example(route="smiles2iupac", body=b'{"smiles": ["CCO", "((", ""]}', content_type="application/json")  # reaches the model
def test_random_requests_never_get_5xx(stack, route, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(f"{stack.url}/{route}", data=body, headers=headers, timeout=120)
    assert r.status_code < 500, (route, body[:200], content_type, r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert "error" in r.text  # a message, not an empty 4xx
    elif route not in ("metadata", "stats"):
        results = r.json()
        assert isinstance(results, list) and all({"input", "valid", "error"} <= set(x) for x in results)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_service_still_up_after_fuzzing(stack):
    assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200
    r = requests.post(f"{stack.url}/smiles2formula", json={"smiles": ["CCO", "(("]}, timeout=60)
    assert r.status_code == 200 and [x["valid"] for x in r.json()] == [True, False]
