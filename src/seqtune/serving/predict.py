"""Predict with a task's model: through a running service, or with the champion loaded here.

    seqtune predict smiles2iupac CCO c1ccccc1                                  # loads the champion
    seqtune predict smiles2iupac CCO c1ccccc1 --url http://127.0.0.1:3000     # asks the service

Either way each input gets one result {input, output, valid, verified, error} (plus model and
version), printed as one JSON line. `predict_items` is the single place that turns a batch of
raw inputs into those results: the BentoML service calls it too, so a bad item gets the same
error whether it is sent over HTTP or predicted locally, and it never fails its neighbours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtune.config import DEFAULT_PARAMS, load_params

if TYPE_CHECKING:
    from seqtune.inference.generator import Generator
    from seqtune.tasks.base import Task

log = logging.getLogger(__name__)


def input_field(task: Task | str) -> str:
    """JSON field holding a request's inputs: `smiles` for SMILES tasks, else `names`."""
    from seqtune.tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    return "smiles" if task.source_kind == "smiles" else "names"


def _problem(task: Task, item: Any, max_input_length: int | None) -> str | None:
    """Why `item` can't be predicted (a message for the user), or None when it can."""
    if not isinstance(item, str):
        return f"expected a string, got {type(item).__name__}"
    if max_input_length is not None and len(item) > max_input_length:
        return f"input too long ({len(item)} characters; at most {max_input_length})"
    try:  # JSON can carry lone surrogates ("\ud800"): the tokenizer can't encode them
        item.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"input is not valid Unicode text (a lone surrogate at character {e.start})"
    try:
        return task.validate_source(item)
    except Exception as e:  # noqa: BLE001 — a validator crash is this item's problem only
        log.warning("validating %r failed: %s", item[:80], e)
        return f"could not validate input: {e}"


def _verify(task: Task, sources: list[str], outputs: list[str]) -> list[bool | None]:
    """`task.verify`, degrading to None (unknown) when the checker itself fails (e.g. no Java)."""
    try:
        flags = task.verify(sources, outputs)
    except Exception as e:  # noqa: BLE001 — an answer without a proof is still an answer
        log.warning("%s: verification unavailable (%s); results carry verified=null", task.name, e)
        return [None] * len(outputs)
    return [None] * len(outputs) if flags is None else [bool(f) for f in flags]


def _generate(generator: Generator, sources: list[str], decoding: str,
              num_beams: int) -> list[tuple[str | None, bool | None, str | None]]:
    """(output, verified-by-decoding, error) per source. Generation runs batched; if the batch
    fails, each item is retried alone so one poisonous input can't fail the others."""
    try:
        return [(p.output, p.verified, None) for p in generator.predict(sources, decoding=decoding, num_beams=num_beams)]
    except Exception as e:  # noqa: BLE001
        if len(sources) == 1:
            log.exception("generation failed for %r", sources[0][:80])
            return [(None, None, f"generation failed: {e}")]
        log.warning("batch generation failed (%s); retrying %d items one by one", e, len(sources))
        return [r for s in sources for r in _generate(generator, [s], decoding, num_beams)]


def predict_items(
    generator: Generator,
    items: Sequence[Any],
    *,
    decoding: str = "greedy",
    num_beams: int = 4,
    max_input_length: int | None = None,
) -> list[dict[str, Any]]:
    """One result dict per item, same order: {input, output, valid, verified, error}.

    Invalid items get `valid=False` and an `error`; valid ones are generated in one batch
    (`Generator.predict`, left-padded) and checked with `task.verify` when it can."""
    task = generator.task
    decoding = task.decoding_for(decoding)  # verified only where it is fair (Task.verified_decoding)
    problems = [_problem(task, it, max_input_length) for it in items]
    good = [i for i, p in enumerate(problems) if p is None]
    results: list[dict[str, Any]] = [
        {"input": it if isinstance(it, str) else repr(it), "output": None, "valid": p is None, "verified": None, "error": p}
        for it, p in zip(items, problems)
    ]
    if not good:
        return results
    sources = [items[i] for i in good]
    generated = _generate(generator, sources, decoding, num_beams)
    ok = [j for j, (out, _, err) in enumerate(generated) if err is None]
    # `verified` decoding already checked its pick; otherwise check the greedy output.
    checks: list[bool | None] = [v for _, v, _ in generated]
    if decoding != "verified" and ok:
        flags = _verify(task, [sources[j] for j in ok], [generated[j][0] or "" for j in ok])
        for j, f in zip(ok, flags):
            checks[j] = f
    for j, i in enumerate(good):
        out, _, err = generated[j]
        results[i].update(output=out, verified=checks[j] if err is None else None, error=err)
    return results


# ---------------------------------------------------------------------------------------
# the CLI verb


def _remote(task: str, inputs: list[str], url: str, timeout: float) -> list[dict[str, Any]]:
    import requests

    from seqtune.serving.security import TOKEN_ENV, TOKEN_FILE_ENV, load_token

    endpoint = url.rstrip("/") + f"/{task}"
    # The service's own variables: whoever started it with a token has it in the environment.
    token = load_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = requests.post(endpoint, json={input_field(task): inputs}, headers=headers, timeout=timeout)
    except requests.RequestException as e:
        raise RuntimeError(f"no answer from {endpoint}: {e}\nStart the service with `make serve` (or check --url).") from e
    if resp.status_code == 401:
        raise ValueError(f"{endpoint} needs its API token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}) to it"
                         + (" (the one set was refused)" if token else ""))
    if resp.status_code == 404:
        raise ValueError(f"{url} has no /{task} endpoint; is it a seqtune service serving {task}?")
    if resp.status_code == 503:  # shed by the batcher: busy, not wrong; the service says when to retry
        raise RuntimeError(f"{endpoint} is busy (503: the request queued past serve.max_latency_ms); "
                           f"retry in {resp.headers.get('retry-after', 'a few')} s, or send fewer items at once")
    if resp.status_code >= 400:
        raise ValueError(f"the service refused the request ({resp.status_code}): {resp.text[:500]}")
    return resp.json()


def _local(task: str, inputs: list[str], params: Path | str) -> list[dict[str, Any]]:
    from seqtune.pipeline import pyfunc, registry

    uri = registry.champion_uri(task, params=params)  # RuntimeError with a hint when none
    mv = registry.champion(task, params=params)
    name = registry.model_name(task, params=params)

    cfg = load_params(params).serve
    log.info("loading %s (v%s, precision %s)", uri, mv.version, cfg.precision)
    # The service's precision and LM head, so `predict` without --url answers as the service would.
    # (A version whose logged model_config has no precision key: MLflow ignores the override
    # there, with a warning, and it loads `auto`.) The version read above, not the alias again: the
    # answers are labelled with it. seqtune's loader refuses a pickled version (docs/security.md).
    generator = pyfunc.load_model(f"models:/{name}/{mv.version}",
                                  model_config={"precision": cfg.precision, "answer_vocab": cfg.answer_vocab}
                                  ).unwrap_python_model().generator
    generator.max_new_tokens = cfg.max_new_tokens  # answer as the service would
    results = predict_items(generator, inputs, decoding=cfg.decoding_for(task), num_beams=cfg.num_beams,
                            max_input_length=cfg.max_input_length)
    return [{**r, "model": name, "version": str(mv.version)} for r in results]


def main(task: str, inputs: Sequence[str], *, url: str | None = None, params: Path = DEFAULT_PARAMS) -> list[dict[str, Any]]:
    """Predict `inputs` for `task` (service at `url`, else the champion) and print JSON lines."""
    import typer

    from seqtune.tasks import TASK_NAMES

    p = load_params(params)
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    if not inputs:
        raise ValueError("give at least one input, e.g. `seqtune predict smiles2iupac CCO`")
    if len(inputs) > p.serve.max_items and url:
        raise ValueError(f"at most {p.serve.max_items} inputs per request (serve.max_items)")
    # A first request can wait for the service's batch window plus a cold model.
    results = _remote(task, list(inputs), url, timeout=p.serve.max_latency_ms / 1000 + 60) if url else _local(task, list(inputs), params)
    for r in results:
        typer.echo(json.dumps(r, ensure_ascii=False))
    return results
