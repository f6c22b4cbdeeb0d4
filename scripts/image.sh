#!/usr/bin/env bash
# scripts/image.sh [build|base|run|stop] — the seqtune bento as a container image, without a Docker engine.
#   scripts/image.sh            # = build (make image): base image (once), bento, bento image
#   scripts/image.sh run        # run the image detached on 127.0.0.1:$PORT (default 3000), wait for /readyz;
#                               # needs SEQTUNE_API_TOKEN (the container listens on 0.0.0.0: docs/security.md)
#   scripts/image.sh stop       # stop and remove the container
#   scripts/image.sh base       # only the base image (kept once built; `podman rmi` it to rebuild)
#
# Needs root and `apt-get install -y podman buildah mmdebstrap runc`, and the champions imported
# into $BENTOML_HOME (`seqtune bento import`; `make image` does it).
#
# base: no base image can be pulled, so it is built from Debian's packages: a bookworm root file
#   system (mmdebstrap, the machine's default mirror) with python3.11, the JRE that OPSIN needs, libXrender and libXext (RDKit's drawing, for /depict),
#   uv, and the torch wheel that this machine's pip gives for the bento's pin (CPU here; set
#   TORCH_WHEEL=path to choose) in /opt/wheels, where the bento's `uv pip install` finds it
#   (UV_FIND_LINKS) instead of the multi-GB CUDA build. Imported with `podman import`.
# build: the bento from service/bentofile.yaml with service/bentofile-image.yaml merged over it
#   (its base image), then `bentoml containerize --backend buildah`. RUN steps use
#   `--isolation chroot` (buildah's default OCI runtime, crun, cannot run here) and the host's CA
#   bundle is mounted read-only over the image's for the build only (pip/uv reach the package
#   index through it; nothing of it stays in the image).
# run: podman with runc (crun refuses hybrid cgroups: "cgroups in hybrid mode not supported")
#   and explicit ulimits no higher than this machine allows (podman's defaults, and `--ulimit
#   host`, ask for more and the runtime's setrlimit is refused).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
WORK=${SEQTUNE_IMAGE_WORK:-$ROOT/build/image}
IMAGE=${SEQTUNE_IMAGE:-localhost/seqtune:latest}
CONTAINER=${SEQTUNE_CONTAINER:-seqtune}
PORT=${PORT:-3000}
READY_TIMEOUT=${READY_TIMEOUT:-300}
OCI_RUNTIME=${SEQTUNE_OCI_RUNTIME:-runc}
UV_VERSION=0.13.9
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# The base image's name lives in the overlay; the torch pin in the bentofile.
BASE_IMAGE=$(sed -n 's/^ *base_image: *"\(.*\)"/\1/p' "$ROOT/service/bentofile-image.yaml")
TORCH=$(sed -n 's/^ *- *"torch==\([^"]*\)".*/\1/p' "$ROOT/service/bentofile.yaml")

base() {
    if podman image exists "$BASE_IMAGE"; then
        echo "base image $BASE_IMAGE exists"
        return
    fi
    local dir=$WORK/base
    rm -rf "$dir" && mkdir -p "$dir/wheels" "$dir/uv"
    if [[ -n ${TORCH_WHEEL:-} ]]; then
        cp "$TORCH_WHEEL" "$dir/wheels/"
    else
        "$PY" -m pip download -q --no-deps -d "$dir/wheels" "torch==$TORCH"
    fi
    "$PY" -m pip download -q --no-deps -d "$dir/uv" "uv==$UV_VERSION"
    # uv is one static binary: take it out of its wheel (the base has no pip).
    "$PY" - "$dir/uv" <<'EOF'
import pathlib, sys, zipfile
out = pathlib.Path(sys.argv[1])
(whl,) = out.glob("uv-*.whl")
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
    (out / "uv").write_bytes(z.read(name))
(out / "uv").chmod(0o755)
EOF
    mmdebstrap --variant=minbase --include=python3,ca-certificates,default-jre-headless,libxrender1,libxext6 \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="mkdir -p \"\$1/opt/wheels\" && cp $dir/wheels/*.whl \"\$1/opt/wheels/\" && install -m 755 $dir/uv/uv \"\$1/usr/local/bin/uv\"" \
        bookworm "$dir/rootfs.tar"
    podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV UV_FIND_LINKS=/opt/wheels' \
        --change 'ENV UV_PYTHON_DOWNLOADS=never' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["/bin/bash"]' \
        "$dir/rootfs.tar" "$BASE_IMAGE"
    rm -rf "$dir"  # the root file system tarball and the wheels are in the image now
}

build() {
    base
    mkdir -p "$WORK"
    # service/bentofile.yaml with the overlay merged over it (a null removes the key).
    "$PY" - "$ROOT/service/bentofile.yaml" "$ROOT/service/bentofile-image.yaml" "$WORK/bentofile.yaml" <<'EOF'
import sys, yaml
def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out
base, over = (yaml.safe_load(open(p)) for p in sys.argv[1:3])
yaml.safe_dump(merge(base, over), open(sys.argv[3], "w"), sort_keys=False)
EOF
    local tag
    tag=$(cd "$ROOT" && "$PY" -m bentoml build -f "$WORK/bentofile.yaml" -o tag . | sed -n 's/^__tag__://p')
    echo "bento $tag"
    # --isolation chroot: RUN steps without an OCI runtime; --layers: reuse the install layer.
    # BentoML copies the bento to $TMPDIR and refuses a Dockerfile template outside the working
    # directory ("Accessing file outside of current working directory is not allowed"), hence
    # both under $WORK.
    mkdir -p "$WORK/tmp"
    (cd "$WORK" && TMPDIR="$WORK/tmp" "$PY" -m bentoml containerize "$tag" --backend buildah -t "$IMAGE" \
        --opt isolation=chroot --opt layers \
        --opt "volume=$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    podman image inspect "$IMAGE" --format 'image {{.RepoTags}} size {{.Size}} entrypoint {{.Config.Entrypoint}} user {{.Config.User}}'
}

run() {
    # The container binds 0.0.0.0 (below), beyond its loopback: the service refuses to start
    # without an API token (docs/security.md). It reaches the container as an environment variable.
    : "${SEQTUNE_API_TOKEN:?set SEQTUNE_API_TOKEN to the token clients must send (Authorization: Bearer ...)}"
    # Limits no higher than ours: podman's defaults (and --ulimit host) ask for more and are refused.
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768  # higher is refused here (pid_max 32768)
    podman --runtime "$OCI_RUNTIME" run -d --replace --name "$CONTAINER" \
        -p "127.0.0.1:$PORT:3000" \
        --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
        -e OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" -e SEQTUNE_API_TOKEN \
        "$IMAGE" --host 0.0.0.0  # params.yaml's serve.host (127.0.0.1) is the container's own loopback
    local t=0
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
        if ! podman container exists "$CONTAINER" || [[ $(podman inspect -f '{{.State.Running}}' "$CONTAINER") != true ]] \
            || (( t >= READY_TIMEOUT )); then
            echo "the container did not get ready:" >&2
            podman logs "$CONTAINER" 2>&1 | tail -40 >&2
            exit 1
        fi
        sleep 2
        t=$((t + 2))
    done
    echo "ready on http://127.0.0.1:$PORT after ${t}s"
}

stop() {
    podman rm -f -t 10 "$CONTAINER" >/dev/null 2>&1 || true
}

case ${1:-build} in
    base) base ;;
    build) build ;;
    run) run ;;
    stop) stop ;;
    *) echo "usage: $0 [build|base|run|stop]" >&2; exit 2 ;;
esac
