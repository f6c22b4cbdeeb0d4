#!/usr/bin/env bash
# scripts/image.sh [build|base|run|stop] — the seqtune bento as a container image, without a Docker engine.
#   scripts/image.sh            # = build (make image): base image (once), build tools, bento, bento image
#   scripts/image.sh run        # run the image detached and hardened on 127.0.0.1:$PORT (default 3000), wait
#                               # for /readyz; needs SEQTUNE_API_TOKEN (the container listens on 0.0.0.0:
#                               # docs/security.md)
#   scripts/image.sh stop       # stop and remove the container
#   scripts/image.sh base       # only the base image (kept once built; `podman rmi` it to rebuild)
#
# Needs root and `apt-get install -y podman buildah mmdebstrap runc`, and the champions imported
# into $BENTOML_HOME (`seqtune bento import`; `make image` does it).
#
# base: no base image can be pulled, so it is built from Debian's packages: a bookworm root file
#   system (mmdebstrap, the machine's default mirror) with python3.11, the JRE that OPSIN needs,
#   libXrender and libXext (RDKit's drawing, for /depict). Imported with `podman import`. It holds
#   no build tool.
# build: the build tools go into one folder, mounted read-only at /opt/build for the build only:
#   uv (a static binary out of its pinned wheel), the torch wheel that this machine's pip gives for
#   the bento's pin (CPU here; TORCH_WHEEL=path to choose), where the bento's `uv pip install`
#   finds it (UV_FIND_LINKS) instead of the multi-GB CUDA build, and the host's CA bundle (this
#   machine's outbound TLS goes through a CA Debian's bundle lacks), and the image's hashed
#   requirements (scripts/image_requirements.py: the bentofile's packages and BentoML with what
#   they need, as requirements.lock pins them). Then the bento from
#   service/bentofile.yaml with service/bentofile-image.yaml merged over it, then
#   `bentoml containerize --backend buildah` with service/Dockerfile-image.j2. RUN steps use
#   `--isolation chroot` (buildah's default OCI runtime, crun, cannot run here); the docker format
#   keeps the HEALTHCHECK (OCI images have none).
# run: podman with runc (crun refuses hybrid cgroups: "cgroups in hybrid mode not supported")
#   and explicit ulimits no higher than this machine allows (podman's defaults, and `--ulimit
#   host`, ask for more and the runtime's setrlimit is refused). Hardened: read-only root file
#   system (tmpfs for /tmp and BentoML's Prometheus directory), every capability dropped,
#   no-new-privileges.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
WORK=${SEQTUNE_IMAGE_WORK:-$ROOT/build/image}
IMAGE=${SEQTUNE_IMAGE:-localhost/seqtune:latest}
CONTAINER=${SEQTUNE_CONTAINER:-seqtune}
PORT=${PORT:-3000}
READY_TIMEOUT=${READY_TIMEOUT:-300}
OCI_RUNTIME=${SEQTUNE_OCI_RUNTIME:-runc}
# Every build tool is pinned by sha256: uv's wheel for this platform here, torch's from the hashed
# requirements.lock (image_requirements.py stops the build if the bentofile pins another).
UV_VERSION=0.13.9
UV_SHA256=d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19  # manylinux x86_64 wheel
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# The base image's name lives in the overlay.
BASE_IMAGE=$(sed -n 's/^ *base_image: *"\(.*\)"/\1/p' "$ROOT/service/bentofile-image.yaml")

base() {
    if podman image exists "$BASE_IMAGE"; then
        echo "base image $BASE_IMAGE exists"
        return
    fi
    local dir=$WORK/base
    rm -rf "$dir" && mkdir -p "$dir"
    mmdebstrap --variant=minbase --include=python3,ca-certificates,default-jre-headless,libxrender1,libxext6 \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        bookworm "$dir/rootfs.tar"
    podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$dir/rootfs.tar" "$BASE_IMAGE"
    rm -rf "$dir"  # the root file system tarball is in the image now
}

# The folder mounted read-only at /opt/build during the build, and nowhere in the image:
# uv, wheels/ (torch), ca-certificates.crt, requirements.lock (the image's share of the lock).
tools() {
    local dir=$WORK/build-tools
    rm -rf "$dir" && mkdir -p "$dir/wheels" "$WORK/downloads"
    if [[ -n ${TORCH_WHEEL:-} ]]; then
        cp "$TORCH_WHEEL" "$dir/wheels/"
    else
        # torch's entry of the hashed lock, so pip checks the wheel it gives against the lock.
        "$PY" "$ROOT/scripts/image_requirements.py" --lock "$ROOT/requirements.lock" --package torch \
            "$WORK/downloads/torch.txt"
        "$PY" -m pip download -q --no-deps --require-hashes -d "$dir/wheels" -r "$WORK/downloads/torch.txt"
    fi
    printf 'uv==%s --hash=sha256:%s\n' "$UV_VERSION" "$UV_SHA256" > "$WORK/downloads/uv.txt"
    "$PY" -m pip download -q --no-deps --require-hashes -d "$WORK/downloads" -r "$WORK/downloads/uv.txt"
    # uv is one static binary: take it out of its wheel (nothing in the image has pip).
    "$PY" - "$WORK/downloads" "$dir" <<'EOF'
import pathlib, sys, zipfile
src, out = (pathlib.Path(a) for a in sys.argv[1:3])
(whl,) = src.glob("uv-*.whl")
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/uv"))
    (out / "uv").write_bytes(z.read(name))
(out / "uv").chmod(0o755)
EOF
    cp "$CA_BUNDLE" "$dir/ca-certificates.crt"
    # The image's packages: the bentofile's and BentoML's closure out of the hashed lock.
    "$PY" "$ROOT/scripts/image_requirements.py" --lock "$ROOT/requirements.lock" \
        --bentofile "$ROOT/service/bentofile.yaml" "$dir/requirements.lock"
}

build() {
    base
    tools
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
    # The image's files belong to root and the runtime user only reads them; BentoML's stores
    # keep model files 0600, so the bento and the models it takes from the model store (at
    # containerize) are made readable to all first.
    "$PY" - "$tag" <<'EOF' | xargs -d '\n' chmod -R a+rX
import sys, bentoml
bento = bentoml.get(sys.argv[1])
print(bento.path)
for model in bento.info.all_models:
    if model.registry == "bentoml":
        print(bentoml.models.get(model.tag).path)
EOF
    (cd "$WORK" && TMPDIR="$WORK/tmp" "$PY" -m bentoml containerize "$tag" --backend buildah -t "$IMAGE" \
        --opt isolation=chroot --opt layers --opt format=docker \
        --opt "volume=$WORK/build-tools:/opt/build:ro" \
        --opt "build-arg=SEQTUNE_IMAGE_LOCK_SHA256=$(sha256sum "$WORK/build-tools/requirements.lock" | cut -d' ' -f1)")
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
        --read-only --tmpfs /tmp --tmpfs /home/bentoml/prometheus_multiproc_dir:rw,U \
        --cap-drop=all --security-opt=no-new-privileges \
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
