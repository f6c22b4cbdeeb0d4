#!/usr/bin/env bash
# bench/gpu_check.sh [--dry-run] — the whole lifecycle on one CUDA GPU in about 8 minutes, with figures.
#   bench/gpu_check.sh              # on a machine with one CUDA GPU and the package index
#   bench/gpu_check.sh --dry-run    # anywhere: takes the CUDA branches, prints what it would run
#
# In a scratch copy of the repository ($GPU_CHECK_WORK, default /tmp/seqtune-gpu-check) with its
# own MLflow store and BentoML home, so the checkout's data/ and mlflow.db are untouched:
#   1. install (make install: the pinned torch, which on a GPU machine is PyPI's CUDA build);
#   2. measure this GPU's bf16 matmul peak (8192^3, the mean of 10 after 3 warm-ups);
#   3. `dvc repro` of smiles2iupac at a paper-like scale for a GPU: $N_TRAIN BRICS fragments of
#      MOSES molecules (<= 15 heavy atoms), bf16, batch $BATCH, $EPOCHS epoch(s), data labelled on
#      every CPU core; then evaluate (greedy, $N_EVAL test items) and register;
#   4. serve the champion on CUDA and load it (bench/serve_load.py at 8, 32, 64 concurrent);
#   5. print tokens/s, MFU (6 x params x tokens/s over the measured peak),
#      the test-set scores, the stage times and the serving latencies; write them to
#      $GPU_CHECK_WORK/gpu_check.json.
# Sizes are environment variables (N_TRAIN, EPOCHS, BATCH, N_EVAL, LEVELS) so a run can be
# fitted to the time a lent machine has.
set -euo pipefail

DRY=0
[[ ${1:-} == --dry-run ]] && DRY=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${GPU_CHECK_WORK:-/tmp/seqtune-gpu-check}
N_TRAIN=${N_TRAIN:-50000}
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-128}
N_EVAL=${N_EVAL:-500}
LEVELS=${LEVELS:-8,32,64}
PY=$ROOT/.venv/bin/python
CORES=$(nproc)

step() { echo; echo "== $*"; }
# Every command goes through `run`: printed always, executed unless --dry-run.
run() {
    echo "+ $*"
    if [[ $DRY == 0 ]]; then "$@"; fi
}

step "device"
if [[ $DRY == 1 ]]; then
    DEVICE=cuda
    echo "dry run: assuming one CUDA GPU (nothing below is executed)"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L | grep -q GPU; then
    DEVICE=cuda
    nvidia-smi -L
else
    echo "no CUDA GPU here (nvidia-smi -L lists none): run with --dry-run to see the steps" >&2
    exit 2
fi
echo "device: $DEVICE, CPU cores: $CORES"

step "install"
if [[ -f $ROOT/.venv/.installed ]]; then
    echo "installed already ($ROOT/.venv)"
else
    run make -C "$ROOT" install
fi
if [[ $DRY == 0 ]]; then
    "$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('torch', torch.__version__, 'cuda', ok); sys.exit(0 if ok else 3)" \
        || { echo "the venv's torch does not see the GPU (a CPU build?): reinstall torch for CUDA" >&2; exit 3; }
fi

step "bf16 matmul peak"
PEAK_CODE='
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(10): a @ b
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 10
print(f"{2 * 8192**3 / dt / 1e12:.1f}")'
if [[ $DRY == 1 ]]; then
    echo "+ $PY -c <8192^3 bf16 matmul, mean of 10 after 3 warm-ups>"
    PEAK_TFLOPS=0
else
    PEAK_TFLOPS=$("$PY" -c "$PEAK_CODE")
fi
echo "peak_tflops: $PEAK_TFLOPS"

step "scratch repository $WORK"
run rm -rf "$WORK"
run mkdir -p "$WORK"
run rsync -a --exclude .venv --exclude data/datasets --exclude data/models --exclude data/molecules \
    --exclude data/checkpoints --exclude data/predictions --exclude mlflow.db --exclude mlartifacts \
    --exclude bentoml_home --exclude build --exclude .tracking "$ROOT/" "$WORK/repo/"
# The paper-like profile for one GPU, over the shipped params.yaml.
OVERRIDES="
tasks: [smiles2iupac]
molecules: {source: moses, fragments: brics, max_raw: $((N_TRAIN * 3)), max_heavy_atoms: 15, workers: $CORES}
data: {n_train: $N_TRAIN, n_test: 1000, format: plain, workers: $CORES}
train: {epochs: $EPOCHS, batch_size: $BATCH, precision: bf16, save_steps: 2000, logging_steps: 20, val_size: 256}
evaluate: {n_eval: $N_EVAL, batch_size: 256, max_new_tokens: 64}
"
echo "params overrides (device $DEVICE):$OVERRIDES"
MERGE_CODE='
import sys, yaml
path, over = sys.argv[1], yaml.safe_load(sys.argv[2])
raw = yaml.safe_load(open(path))
for k, v in over.items():
    if isinstance(v, dict): raw[k].update(v)
    else: raw[k] = v
yaml.safe_dump(raw, open(path, "w"), sort_keys=False)'
run "$PY" -c "$MERGE_CODE" "$WORK/repo/params.yaml" "$OVERRIDES"

export MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db" BENTOML_HOME="$WORK/bentoml" PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 BENTOML_DO_NOT_TRACK=true TOKENIZERS_PARALLELISM=false
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-seqtune} GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-seqtune@localhost}
export GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-seqtune} GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-seqtune@localhost}

step "dvc repro (train on $DEVICE, bf16)"
T0=$SECONDS
if [[ $DRY == 1 ]]; then
    echo "+ (cd $WORK/repo && git init -q && dvc init -q -f && dvc repro)"
else
    (cd "$WORK/repo" && { [[ -d .git ]] || git init -q; } && dvc init -q -f && dvc repro)
fi
REPRO_S=$((SECONDS - T0))

step "serve on $DEVICE"
if [[ $DRY == 1 ]]; then
    echo "+ (cd $WORK/repo && seqtune bento import && $PY bench/serve_load.py --task smiles2iupac --levels $LEVELS)"
else
    (cd "$WORK/repo" && seqtune bento import && "$PY" bench/serve_load.py --task smiles2iupac --levels "$LEVELS") \
        | tee "$WORK/serve_load.txt"
fi

step "figures"
FIGURES_CODE='
import json, sys
from pathlib import Path
work, peak, repro_s = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
repo = work / "repo"
summary = json.loads((repo / "data/models/smiles2iupac/training_summary.json").read_text())
metrics = json.loads((repo / "metrics/smiles2iupac.json").read_text())
base = json.loads((repo / "data/base_model/base_model.json").read_text())
params = float(base["params"])
tps = float(summary["tokens_per_s"])
out = {
    "tokens_per_s": tps,
    "train_seconds": summary.get("train_seconds"),
    "achieved_tflops": round(6 * params * tps / 1e12, 2),
    "peak_bf16_tflops": peak,
    "mfu": round(6 * params * tps / 1e12 / peak, 4) if peak else None,
    "primary_metric": metrics.get("primary_metric"),
    "score": metrics.get(metrics.get("primary_metric", ""), None),
    "n_eval": metrics.get("n"),
    "dvc_repro_seconds": repro_s,
}
serve = work / "serve_load.txt"
if serve.exists():
    out["serve_load"] = serve.read_text().strip().splitlines()[-12:]
(work / "gpu_check.json").write_text(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))'
if [[ $DRY == 1 ]]; then
    echo "+ $PY -c <tokens/s, MFU = 6 x params x tokens/s / peak, scores, times> > $WORK/gpu_check.json"
    echo "dry run done: every step above takes the CUDA branch (device: $DEVICE, precision: bf16)"
else
    "$PY" -c "$FIGURES_CODE" "$WORK" "$PEAK_TFLOPS" "$REPRO_S"
fi
