"""The seqtune HTTP service: every task's champion behind one batched endpoint per task.

    seqtune bento import && bentoml serve service.service:Seqtune     # or: make serve
    curl -s 127.0.0.1:3000/smiles2iupac -H 'content-type: application/json' -d '{"smiles": ["CCO", "c1ccccc1"]}'

Layout (BentoML >= 1.4, class-style):
- `POST /<task>` (one per task in params.yaml): `{"smiles": [...]}` (`{"names": [...]}` for
  name inputs) -> one result per input: input, output, valid, verified, model, version, error.
  The endpoint is `batchable`: BentoML's adaptive batcher concatenates the lists of concurrent
  requests into one model call (at most `serve.max_batch_size` items, waiting at most
  `serve.max_latency_ms`) and splits the results back. Request limits (`serve.max_items`,
  `serve.max_input_length`, list of strings) live in the request model, which BentoML
  validates per request *before* batching: a malformed request is a 400 and never reaches
  the batch. A bad item (unparsable SMILES) gets its own `error` and never fails the batch.
  `serve.max_batch_size: 1` turns batching off (a plain endpoint, one request per model call).
- `/livez`, `/healthz`, `/readyz` (BentoML's probes; ready once every model is loaded),
  `GET` or `POST /metadata` (per task: model, MLflow version, base model, metrics, data hash)
  and `POST /stats` (batch-size counters: what the batcher actually did).
- Every request passes `seqtune.serving.guard.RequestGuard` (docs/security.md): a trusted Host
  header (400), the bearer token when one is set (401; `SEQTUNE_API_TOKEN` or
  `SEQTUNE_API_TOKEN_FILE`, required to bind beyond loopback), and on POST routes
  `Content-Type: application/json` only (415) and a body cap (413). The probes stay open.
- `GET /`: a page for chemists (service/web/: paste or upload inputs, answers with verified
  badges and 2D depictions), calling the JSON API above from the same origin; its assets are
  under `/ui/`, nothing loads from elsewhere. `POST /depict` draws structures for it:
  `{"smiles": [...]}` or `{"names": [...]}` (read by OPSIN) -> one {input, smiles, svg, error}
  each. BentoML's own API page, which `/` used to be, is at `/docs`.
Models are BentoML models (`seqtune bento import`) referenced with `BentoModel`, so
`bentoml build` packages them; nothing here imports MLflow. `serve.runtime` picks what
generates: `torch` (seqtune.inference's `Generator`, `serve.precision`) or `ctranslate2` (the
conversion `seqtune bento import` stored in each model, `serve.ct2_compute_type`:
seqtune.serving.ct2); `/metadata` says which, per task. Settings come from params.yaml
(`serve`, `tasks`, `register.model_prefix`): `$SEQTUNE_PARAMS`, else the params.yaml next to
this folder (the repository's, or the copy inside a bento).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, create_model, model_validator
from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seqtune.config import load_params
from seqtune.serving import security
from seqtune.serving.bento import HF_SUBDIR, ct2_folder
from seqtune.serving.depict import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE, depict_items
from seqtune.serving.guard import RequestGuard
from seqtune.serving.predict import input_field, predict_items
from seqtune.tasks import get_task

# BentoML routes its own logger to the server output; a child of it logs there too.
log = logging.getLogger("bentoml.seqtune")

PARAMS_PATH = Path(os.environ.get("SEQTUNE_PARAMS") or Path(__file__).resolve().parents[1] / "params.yaml")
PARAMS = load_params(PARAMS_PATH)
SERVE = PARAMS.serve
TASKS: list[str] = list(PARAMS.tasks)
BATCHING = SERVE.max_batch_size > 1  # BentoML requires max_batch_size > 1 for a batchable API
# Largest sensible body: every item at full length, each character escaped (\uXXXX\uXXXX).
MAX_BODY = SERVE.max_items * (SERVE.max_input_length * 12 + 8) + 4096
# Seconds a client is told to wait after a 503: the batcher sheds a request once it has queued
# serve.max_latency_ms, so by then the queue it met has been answered or shed too.
RETRY_AFTER_S = math.ceil(SERVE.max_latency_ms / 1000)  # >= 1: max_latency_ms > 0


def _auth_settings() -> tuple[str | None, str | None]:
    """(token, bound host), checked here, at import: in the `bentoml serve` process that is
    before anything binds, and `SystemExit` prints one line and exits (an exception in a
    worker would be restarted forever). Each worker checks again against its real socket."""
    try:
        token = security.load_token()
        host = security.bound_host(SERVE.host)
        if host is not None:
            security.check_bind(host, token)
    except security.SecurityConfigError as e:
        raise SystemExit(f"error: {e}") from None
    return token, host


TOKEN, BOUND_HOST = _auth_settings()
TRUSTED_HOSTS = security.trusted_host_names([SERVE.host, BOUND_HOST], SERVE.trusted_hosts)


class ItemResult(BaseModel):
    """The result for one input."""

    input: str
    output: str | None = None
    """The model's answer (None when the input was invalid)."""
    valid: bool
    """Whether the input parsed (e.g. RDKit could read the SMILES)."""
    verified: bool | None = None
    """Whether the task proved the output right (smiles2iupac: the name parses back to the
    input structure with OPSIN); None when it could not check."""
    model: str
    version: str
    """MLflow registered model version of the champion that answered."""
    error: str | None = None
    """Why this input got no answer (None when it did)."""


def _request_model(task: str) -> type[BaseModel]:
    """`{"<field>": [str, ...]}` with the per-request limits, validated before batching."""
    field = input_field(task)
    item = Annotated[str, StringConstraints(max_length=SERVE.max_input_length)]
    items = Annotated[
        list[item],
        Field(
            min_length=1,
            max_length=SERVE.max_items,
            description=f"1 to {SERVE.max_items} inputs of at most {SERVE.max_input_length} characters",
        ),
    ]
    return create_model(
        f"{task.capitalize()}Request", __config__=ConfigDict(extra="forbid"), **{field: (items, ...)}
    )


_Item = Annotated[str, StringConstraints(max_length=SERVE.max_input_length)]
_Items = Annotated[list[_Item], Field(min_length=1, max_length=SERVE.max_items)]


class DepictRequest(BaseModel):
    """`{"smiles": [...]}` or `{"names": [...]}` (read by OPSIN), the request limits of the
    task endpoints, and an optional drawing size in pixels."""

    model_config = ConfigDict(extra="forbid")
    smiles: _Items | None = None
    names: _Items | None = None
    size: int = Field(DEFAULT_SIZE, ge=MIN_SIZE, le=MAX_SIZE)

    @model_validator(mode="after")
    def _one_kind(self) -> DepictRequest:
        if (self.smiles is None) == (self.names is None):
            raise ValueError('send either "smiles" or "names", not both and not neither')
        return self


class Depiction(BaseModel):
    """The drawing of one input."""

    input: str
    smiles: str | None = None
    """RDKit canonical SMILES of what was drawn (for a name: OPSIN's reading of it)."""
    svg: str | None = None
    error: str | None = None


def _endpoint(task: str):
    """The API method of `task`: a list of inputs in, a list of ItemResult out."""

    def endpoint(self, *args: Any, **kwargs: Any) -> list[ItemResult]:
        # Batched, BentoML passes the concatenated list positionally; unbatched, by field name.
        (items,) = (*args, *kwargs.values())
        return self._predict(task, items)

    endpoint.__name__ = endpoint.__qualname__ = task
    endpoint.__doc__ = f"{task}: a list of inputs in, one result per input out."
    return bentoml.api(
        route=f"/{task}",
        input_spec=_request_model(task),
        batchable=BATCHING,
        max_batch_size=SERVE.max_batch_size if BATCHING else 2,  # unused when not batchable
        max_latency_ms=SERVE.max_latency_ms,
    )(endpoint)


class Seqtune:
    """Serves the champion of every task in params.yaml (models from the BentoML store)."""

    def __init__(self) -> None:
        from bentoml.exceptions import NotFound

        # Here, in the worker: BOUND_HOST is its real socket's address.
        log.info("listening on %s: %s; trusted Host names %s", BOUND_HOST,
                 "bearer token required" if TOKEN else "no token (loopback only)", sorted(TRUSTED_HOSTS))
        self.generators: dict[str, Any] = {}  # task -> Generator or CT2Generator (serve.runtime)
        self.info: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._batches: dict[str, Counter[int]] = {t: Counter() for t in TASKS}
        # Served from a bento: exactly the model versions it was built with, not whatever
        # was imported into the local store since.
        built = Seqtune.bento.info.all_models if Seqtune.bento is not None else []
        pinned = {m.tag.name: m.tag for m in built}
        for task in TASKS:
            ref = getattr(type(self), _model_attr(task))
            tag = pinned.get(ref.tag.name, ref.tag)
            try:
                stored = bentoml.models.get(tag)  # local store only: no remote lookups
            except NotFound:
                raise RuntimeError(
                    f"BentoML model {tag} not found: run `seqtune bento import` "
                    "(it copies each task's MLflow champion into the BentoML store)"
                ) from None
            gen = _load_generator(Path(stored.path))
            self.generators[task] = gen
            meta = dict(stored.info.metadata)
            self.info[task] = {
                "model": meta.get("mlflow_model", stored.tag.name),
                "version": str(meta.get("mlflow_version", "")),
                "bento_model": str(stored.tag),
                "base_model": meta.get("base_model"),
                "format": meta.get("format"),
                "method": meta.get("method"),
                "data_hash": meta.get("data_hash"),
                "test_hash": meta.get("test_hash"),
                "primary_metric": meta.get("primary_metric"),
                "metrics": meta.get("metrics", {}),
                "source": meta.get("source"),
                # What the service decodes with (params.yaml serve.decoding): the metrics above
                # are the evaluate stage's, scored with the decoding it names in them.
                "decoding": get_task(task).decoding_for(SERVE.decoding_for(task)),
                "runtime": SERVE.runtime,  # what generates: torch or ctranslate2
                # the weights it generates with (serve.precision resolved; ctranslate2: its compute type)
                "precision": gen.precision,
                "precision_reason": gen.precision_reason,  # why: CPU flags and the measured bf16 verdict
                # tokens its LM head computes (serve.answer_vocab and the model's card); None: all
                "answer_vocab": gen.answer_vocab,
            }
            log.info("%s: serving %s v%s (%s)", task, self.info[task]["model"], self.info[task]["version"], stored.tag)
        if any(get_task(t).uses_opsin for t in TASKS):
            # Checks parse names with this worker's long-lived OPSIN: start and warm it now, so
            # the first request does not wait ~0.5 s for a JVM (and memory is at working size).
            from seqtune.serving.runtime import warm_opsin

            try:
                warm_opsin()
            except RuntimeError as e:  # no Java: each check says so when it runs
                log.warning("OPSIN not warmed: %s", e)

    def __is_ready__(self) -> bool:
        """`/readyz`: ready once every task's model is loaded."""
        return set(self.generators) == set(TASKS)

    def _predict(self, task: str, items: list[str]) -> list[ItemResult]:
        start = time.perf_counter()
        info = self.info[task]
        results = predict_items(self.generators[task], items, decoding=SERVE.decoding_for(task),
                                num_beams=SERVE.num_beams, max_input_length=SERVE.max_input_length)
        with self._lock:
            self._batches[task][len(items)] += 1
        bad = sum(not r["valid"] for r in results)
        log.info("%s batch: %d items (%d invalid) in %.2fs", task, len(items), bad, time.perf_counter() - start)
        return [ItemResult(**r, model=info["model"], version=info["version"]) for r in results]

    @bentoml.api(route="/metadata")
    async def metadata(self) -> dict[str, Any]:
        """Per task: the served model, its MLflow version, base model, metrics and data hash
        (also `GET /metadata`)."""
        return self.metadata_body()

    def metadata_body(self) -> dict[str, Any]:
        """What `/metadata` answers, to POST (the API method) and GET (the page app's route)."""
        return {
            "tasks": self.info,
            "serve": {**SERVE.model_dump(), "batching": BATCHING, "input_fields": {t: input_field(t) for t in TASKS}},
        }

    @bentoml.api(route="/depict", input_spec=DepictRequest)
    async def depict(self, smiles: list[str] | None = None, names: list[str] | None = None,
                     size: int = DEFAULT_SIZE) -> list[Depiction]:
        """2D drawings (RDKit SVG) of SMILES, or of the structures OPSIN reads from names."""
        import anyio

        kind, items = ("smiles", smiles) if smiles is not None else ("names", names)
        # In a thread: drawing (and OPSIN) must not hold up the event loop, and not in the
        # service's one model thread either (a drawing never waits for a model call).
        results = await anyio.to_thread.run_sync(
            lambda: depict_items(items, kind=kind, max_input_length=SERVE.max_input_length, size=size))
        return [Depiction(**r) for r in results]

    @bentoml.api(route="/stats")
    async def stats(self) -> dict[str, Any]:
        """Batch sizes seen per task since start: `{size: number of model calls}`."""
        with self._lock:
            sizes = {t: dict(sorted(c.items())) for t, c in self._batches.items()}
        return {
            "batching": BATCHING,
            "max_batch_size": SERVE.max_batch_size,
            "request_timeout_s": SERVE.request_timeout_s,  # max_latency_ms + serve.max_batch_seconds
            "tasks": {
                t: {"calls": sum(s.values()), "items": sum(k * n for k, n in s.items()),
                    "max_batch": max(s, default=0), "batch_sizes": {str(k): n for k, n in s.items()}}
                for t, s in sizes.items()
            },
        }


def _load_generator(model_path: Path):
    """The generator of the BentoML model at `model_path`, by serve.runtime. It batches whatever
    one model call gets: a whole adaptive batch, or a whole request when batching is off."""
    kw = dict(batch_size=max(SERVE.max_batch_size, SERVE.max_items), max_new_tokens=SERVE.max_new_tokens,
              answer_vocab=SERVE.answer_vocab)
    if SERVE.runtime == "ctranslate2":
        from seqtune.serving.ct2 import CT2Generator

        return CT2Generator.load(model_path / HF_SUBDIR, ct2_folder(model_path, SERVE.ct2_compute_type),
                                 compute_type=SERVE.ct2_compute_type, **kw)
    from seqtune.serving.runtime import load_generator

    return load_generator(model_path / HF_SUBDIR, precision=SERVE.precision, **kw)


def _model_attr(task: str) -> str:
    return f"model_{task}"


# One endpoint and one model reference per task, set before BentoML reads the class: the
# tasks come from params.yaml. `BentoModel` attributes are what `bentoml build` packages.
def _model_ref(task: str) -> bentoml.models.BentoModel:
    """The model reference of `task`, checked now: a missing model would otherwise fail at
    serve time with BentoML's "failed to fetch from remote because No cloud context", and a
    corrupt one would crash-loop the worker."""
    from bentoml.exceptions import NotFound

    from seqtune.serving.runtime import CorruptModelError, check_weights

    tag = f"{PARAMS.register.model_prefix}{task}:latest"
    try:
        stored = bentoml.models.get(tag)
        # Here, in the `bentoml serve` process: a worker failing to load would be restarted
        # by BentoML forever, never ready and never exiting.
        check_weights(Path(stored.path) / HF_SUBDIR)
        if SERVE.runtime == "ctranslate2" and not (ct2_folder(stored.path, SERVE.ct2_compute_type) / "model.bin").is_file():
            raise SystemExit(
                f"error: {stored.tag} holds no ctranslate2 conversion in {SERVE.ct2_compute_type} (serve.runtime: "
                "ctranslate2): run `seqtune bento import` with these params to convert it"
            )
    except CorruptModelError as e:
        raise SystemExit(
            f"error: the served model {stored.tag} is corrupt: {e}. Delete it (`bentoml models delete "
            f"{stored.tag}`) and run `seqtune bento import` again"
        ) from None
    except NotFound:
        # SystemExit, not an exception: `bentoml serve` then prints this one line, no traceback.
        raise SystemExit(
            f"error: BentoML model {tag} not found in the local store: run `seqtune bento import` "
            "(it copies each task's MLflow champion into the BentoML store)"
        ) from None
    return bentoml.models.BentoModel(tag)


for _task in TASKS:
    setattr(Seqtune, _task, _endpoint(_task))
    setattr(Seqtune, _model_attr(_task), _model_ref(_task))

Seqtune = bentoml.service(
    name="seqtune",
    http={"host": SERVE.host, "port": SERVE.port},
    workers=1,
    # One model call at a time: the batcher (or, unbatched, the request queue) feeds it.
    threads=1,
    # A request waits at most max_latency_ms for a batch (else 503 + Retry-After), then one
    # model call: the timeout covers both, so an admitted request is never cut off with a 504
    # (BentoML's implicit 60 s did that to real-size batches on 2 AVX2 cores).
    traffic={"timeout": SERVE.request_timeout_s},
)(Seqtune)
Seqtune.add_asgi_middleware(
    RequestGuard,
    post_routes={f"/{t}" for t in TASKS} | {"/metadata", "/stats", "/depict"},
    max_body=MAX_BODY,
    too_large=f"send at most {SERVE.max_items} inputs of {SERVE.max_input_length} characters",
    retry_after_s=RETRY_AFTER_S,
    token=TOKEN,
    trusted_hosts=TRUSTED_HOSTS,
)


# ---------------------------------------------------------------------------------------
# the page: static files of service/web, served by the service itself (same origin, offline)

WEB = Path(__file__).resolve().parent / "web"
# Nothing but this origin: no CDN, no inline script; depictions are SVG images in data: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new bento's page shows at once
}


async def _index(request) -> Response:
    return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _bentoml_docs_page() -> Path | None:
    """The file BentoML serves at `/` (its OpenAPI UI) when nothing is mounted there."""
    try:
        import _bentoml_impl.server as impl
        from bentoml._internal.configuration.containers import BentoMLContainer

        page = Path(impl.__file__).parent / ("main-ui.html" if BentoMLContainer.new_index else "main-openapi.html")
    except Exception:  # noqa: BLE001 — a BentoML without it: no /docs, the rest still serves
        return None
    return page if page.is_file() else None


async def _metadata(request) -> Response:
    # BentoML API routes take POST only; a GET reaches this page-app route instead (the API's
    # POST route matches first, so POST never does). Same body: the same method builds it, and
    # pydantic serializes it, as BentoML does the API's (NaN -> null, where json.dumps fails).
    body = _METADATA_JSON.dump_json(bentoml.get_current_service().metadata_body())
    return Response(body, media_type="application/json")


_METADATA_JSON = TypeAdapter(dict[str, Any])


async def _docs(request) -> Response:
    page = _bentoml_docs_page()
    if page is None:
        return Response("BentoML's API page is not available in this version", status_code=404)
    return FileResponse(page, media_type="text/html; charset=utf-8")


# Mounted at `/`: BentoML mounts apps passively (only paths this app has a route for reach it)
# and before its own index route, so `/` is the page and every API route stays BentoML's.
PAGE_APP = Starlette(routes=[
    Route("/", _index, methods=["GET", "HEAD"]),
    Route("/docs", _docs, methods=["GET", "HEAD"]),
    Route("/metadata", _metadata, methods=["GET", "HEAD"]),
    Mount("/ui", StaticFiles(directory=WEB), name="ui"),
])
Seqtune.mount_asgi_app(PAGE_APP, path="/", name="page")
