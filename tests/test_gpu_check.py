"""bench/gpu_check.sh without a GPU: `--dry-run` takes every CUDA branch and executes nothing.

    .venv/bin/python -m pytest -q tests/test_gpu_check.py

The script itself is for a machine with one CUDA GPU (none is lent here); this checks that
the path it would take there is whole: every step is reached, with the GPU settings.
"""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"


def test_gpu_check_dry_run_reaches_every_cuda_step(tmp_path):
    work = tmp_path / "work"
    env = {**os.environ, "GPU_CHECK_WORK": str(work), "N_TRAIN": "20000"}
    res = subprocess.run(["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    steps = ["== device", "== install", "== bf16 matmul peak", "== scratch repository", "== dvc repro (train on cuda, bf16)",
             "== serve on cuda", "== figures"]
    positions = [out.index(s) for s in steps]  # ValueError names a step never reached
    assert positions == sorted(positions)
    assert "device: cuda" in out and "precision: bf16" in out and "n_train: 20000" in out
    assert "dvc repro" in out and "bench/serve_load.py --task smiles2iupac --levels 8,32,64" in out
    assert "MFU" in out and "dry run done" in out
    assert not work.exists(), "a dry run must not execute anything"


def test_gpu_check_without_a_gpu_says_so(tmp_path):
    env = {**os.environ, "GPU_CHECK_WORK": str(tmp_path / "work"), "PATH": "/usr/bin:/bin"}  # no nvidia-smi
    res = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no CUDA GPU here" in res.stderr, (res.returncode, res.stderr)


def test_accelerate_configs_load():
    """The documented FSDP / DeepSpeed configs are configs accelerate accepts (keys and enums);
    running them needs GPUs, which no machine here has."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    fsdp = ClusterConfig.from_yaml_file(str(REPO / "configs" / "accelerate" / "fsdp.yaml"))
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.fsdp_config["fsdp_version"] == 2
    ds = ClusterConfig.from_yaml_file(str(REPO / "configs" / "accelerate" / "deepspeed_zero2.yaml"))
    assert ds.distributed_type == DistributedType.DEEPSPEED and ds.deepspeed_config["zero_stage"] == 2
    assert fsdp.mixed_precision == ds.mixed_precision == "bf16"
