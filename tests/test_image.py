"""The bento as a container image: built with scripts/image.sh (a local Debian base image,
`bentoml containerize --backend buildah`), run with podman, called over HTTP.

    .venv/bin/python -m pytest -q tests/test_image.py          # root, podman buildah mmdebstrap runc

Tiny champions (tests/service_stack.py) make the bento, so nothing is trained. The base image
(localhost/seqtune-base:...) and the test image (localhost/seqtune-test:latest, with its cached
layers) are kept between runs: the first run builds both, later runs reuse the base image and
the package-install layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
import requests
from packaging.utils import canonicalize_name

from tests.ci import in_ci
from tests.service_stack import PARAMS, REPO, free_port, seqtune_cli, tiny_champion
from tests.test_supply_chain import parse_lock  # the lock's own reader

SCRIPT = REPO / "scripts" / "image.sh"
TOOLS = ("podman", "buildah", "mmdebstrap", "runc")
APT = "apt-get install -y podman buildah mmdebstrap runc"


def _missing() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} ({APT})"
    if os.geteuid() != 0:
        return "needs root (rootful podman/buildah and mmdebstrap)"
    return None


def _sh(*args: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"image.sh {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(1800)
# Skipped without the tools, saying what to install — except in CI (`CI` set), where .ci/run
# installs them and a missing tool must fail.
@pytest.mark.skipif(_missing() is not None and not in_ci(), reason=_missing() or "")
def test_image_builds_runs_and_answers(tmp_path, tiny_model_dir, monkeypatch):
    from seqtune.config import load_params
    from seqtune.inference.loader import load_generator
    from seqtune.pipeline.register import register_model
    from seqtune.tasks import TASK_NAMES, get_task

    monkeypatch.chdir(tmp_path)  # MLflow's artifact folder follows the working directory
    monkeypatch.delenv("SEQTUNE_PARAMS", raising=False)
    folders = {}
    for task in TASK_NAMES:
        folders[task] = tiny_champion(tiny_model_dir, tmp_path / "models" / task, task)
        assert register_model(task, folders[task], {get_task(task).primary_metric: 0.0}, params=PARAMS).promoted
    done = seqtune_cli("bento", "import", "--params", str(PARAMS))
    assert done.returncode == 0, done.stderr

    port = free_port()
    env = dict(
        os.environ,
        PY=sys.executable,
        SEQTUNE_IMAGE="localhost/seqtune-test:latest",
        SEQTUNE_IMAGE_WORK=str(tmp_path / "work"),
        SEQTUNE_CONTAINER=f"seqtune-test-{os.getpid()}",
        PORT=str(port),
        SEQTUNE_API_TOKEN="image-test-token",  # the container binds 0.0.0.0: the service requires one
    )
    auth = {"Authorization": f"Bearer {env['SEQTUNE_API_TOKEN']}"}
    t0 = time.monotonic()
    built = _sh("build", env=env, timeout=1500)
    print(built.stdout[-800:], f"\nbuild {time.monotonic() - t0:.0f} s")
    inspect = subprocess.run(
        ["podman", "image", "inspect", env["SEQTUNE_IMAGE"], "--format", "{{.Size}} {{json .Config.Entrypoint}} {{.Config.User}}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    size, entrypoint, user = int(inspect[0]), inspect[1], inspect[2]
    assert "entrypoint.sh" in entrypoint and user == "bentoml", inspect
    assert size < 3_000_000_000, f"{size / 1e9:.1f} GB: is torch the CUDA build?"
    # The image's torch is the CPU build from the base image's wheel, not PyPI's CUDA one.
    torch = subprocess.run(
        ["podman", "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
         "--entrypoint", "/app/.venv/bin/python", env["SEQTUNE_IMAGE"], "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, timeout=300,
    )
    assert torch.stdout.strip() == "2.13.0+cpu", torch.stdout + torch.stderr
    # Hardening (issue 33 item 5): no build tool or wheel left in the image, and the runtime user
    # owns nothing but BentoML's Prometheus folder (BentoML's own template chowns the bento, the
    # venv and the home to it, so a compromised worker could rewrite the code it runs).
    probe = subprocess.run(
        ["podman", "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
         "--entrypoint", "/bin/sh", env["SEQTUNE_IMAGE"], "-c",
         # (/opt/build itself stays, empty: buildah leaves the volume's mount point)
         "id -un; echo ---; command -v uv pip pip3 || true; echo ---;"
         " find / -xdev \\( -name '*.whl' -o -path '/opt/build/*' \\) -print; echo ---;"
         " find / -xdev -user bentoml; echo ---;"
         " for f in /app/.venv/bin /app/.venv/lib/python3.11/site-packages/torch/__init__.py /home/bentoml"
         " /home/bentoml/bento /home/bentoml/bento/src/service/service.py; do [ -w $f ] && echo $f; done; echo ---;"
         " find /home/bentoml/bento ! -perm -o=r"],
        capture_output=True, text=True, timeout=300,
    )
    user_name, tools, wheels, owned, writable, unreadable = (part.split() for part in probe.stdout.split("---"))
    assert user_name == ["bentoml"], probe.stdout + probe.stderr
    assert tools == [] and wheels == [], probe.stdout
    assert owned == ["/home/bentoml/prometheus_multiproc_dir"], probe.stdout
    assert writable == [], f"the runtime user can write {writable}"
    assert unreadable == [], f"the runtime user cannot read {unreadable}"
    # The venv holds exactly the lock's versions of the bentofile's closure (scripts/image_requirements.py).
    dists = subprocess.run(
        ["podman", "--runtime", "runc", "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
         "--entrypoint", "/app/.venv/bin/python", env["SEQTUNE_IMAGE"], "-c",
         "import importlib.metadata as m; print(' '.join(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions()))"],
        capture_output=True, text=True, timeout=300,
    )
    installed = {canonicalize_name(d.split("==")[0]): d.split("==")[1] for d in dists.stdout.split()}
    locked = {name: version for name, (version, _) in
              parse_lock((tmp_path / "work" / "build-tools" / "requirements.lock").read_text()).items()}
    assert installed == locked, {k: (installed.get(k), locked.get(k)) for k in installed.keys() | locked.keys()
                                 if installed.get(k) != locked.get(k)}
    health = subprocess.run(["podman", "image", "inspect", env["SEQTUNE_IMAGE"], "--format", "{{json .HealthCheck}}"],
                            capture_output=True, text=True, check=True).stdout
    assert "/readyz" in health, f"no HEALTHCHECK on /readyz: {health}"

    try:
        t1 = time.monotonic()
        _sh("run", env=env, timeout=420)
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
        # It runs hardened: read-only root, no capabilities, no privilege gain; the image's
        # HEALTHCHECK passes once the service is ready.
        state = subprocess.run(
            ["podman", "inspect", env["SEQTUNE_CONTAINER"], "--format",
             "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.SecurityOpt}} {{json .EffectiveCaps}}"],
            capture_output=True, text=True, check=True,
        ).stdout
        assert state.startswith("true ") and "no-new-privileges" in state and state.rstrip().endswith(("[]", "null")), state
        denied = subprocess.run(["podman", "exec", env["SEQTUNE_CONTAINER"], "touch", "/home/bentoml/bento/x"],
                                capture_output=True, text=True)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
        checked = subprocess.run(["podman", "healthcheck", "run", env["SEQTUNE_CONTAINER"]], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        # The image serves the tasks of the params.yaml it carries (the shipped one: smiles2iupac).
        inputs = ["CCO", "c1ccccc1"]
        assert requests.post(f"{url}/smiles2iupac", json={"smiles": inputs}, timeout=60).status_code == 401
        res = requests.post(f"{url}/smiles2iupac", json={"smiles": [*inputs, "(("]}, headers=auth, timeout=300).json()
        serve = load_params(REPO / "params.yaml").serve
        expected = [p.output for p in load_generator(folders["smiles2iupac"], max_new_tokens=serve.max_new_tokens).predict(
            inputs, decoding=serve.decoding_for("smiles2iupac"), num_beams=serve.num_beams)]
        assert [r["output"] for r in res[:2]] == expected and res[0]["version"] == "1", res
        assert res[2]["valid"] is False and res[2]["error"], res
        # OPSIN runs on the image's JVM: `verified` is a bool (None would mean no Java).
        assert res[0]["valid"] is True and isinstance(res[0]["verified"], bool), res
        # RDKit draws in the image too (its drawing library links X11's libXrender).
        drawn = requests.post(f"{url}/depict", json={"smiles": ["CCO"]}, headers=auth, timeout=60)
        assert drawn.status_code == 200 and drawn.json()[0]["svg"].lstrip().startswith("<?xml"), drawn.text[:500]
        print(f"run + requests {time.monotonic() - t1:.0f} s")
    finally:
        _sh("stop", env=env, timeout=120)
    gone = subprocess.run(["podman", "container", "exists", env["SEQTUNE_CONTAINER"]], check=False)
    assert gone.returncode != 0

