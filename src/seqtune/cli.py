"""The `seqtune` command line: one verb per stage, each calling the same `main()` that its
DVC stage runs, plus the registry (whose `list` and `show` tables are drawn here), the service
and the report.

    seqtune --help

Errors a user can fix (bad params, missing model, no champion, no Java) are printed as one
message with a non-zero exit, not a traceback; `--verbose` shows the traceback too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from seqtune.config import DEFAULT_PARAMS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune, track and serve small LMs for sequence tasks.")
registry_app = typer.Typer(no_args_is_help=True, help="MLflow registry: list, show, promote, roll back champions.")
bento_app = typer.Typer(no_args_is_help=True, help="BentoML: import champions into the model store.")
app.add_typer(registry_app, name="registry")
sweep_app = typer.Typer(no_args_is_help=True, help="Experiment sweeps from sweeps/*.yaml, queued as DVC experiments.")
app.add_typer(bento_app, name="bento")
app.add_typer(sweep_app, name="sweep")

log = logging.getLogger("seqtune")
_state = {"verbose": False}

ParamsOpt = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params.yaml to read.")


class UserError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def _run(fn, *args, **kwargs):
    from seqtune.config import ConfigError

    try:
        return fn(*args, **kwargs)
    except (ConfigError, UserError, FileNotFoundError, KeyError, RuntimeError, ValueError) as e:
        if _state["verbose"]:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs and full tracebacks.")):
    from seqtune.log import setup_logging

    _state["verbose"] = verbose
    setup_logging(verbose)


@app.command()
def config(params: Path = ParamsOpt):
    """Validate params.yaml and print it with defaults filled in."""
    import yaml

    from seqtune.config import load_params

    p = _run(load_params, params)
    typer.echo(yaml.safe_dump(p.model_dump(), sort_keys=False))


@app.command()
def molecules(params: Path = ParamsOpt):
    """Stage `molecules`: read, standardise, dedupe and split the molecule source."""
    from seqtune.pipeline import molecules as stage

    _run(stage.main, params=params)


@app.command("real-molecules")
def real_molecules(params: Path = ParamsOpt):
    """Stage `real_molecules`: real molecules never trained on, by heavy-atom band, for evaluation."""
    from seqtune.pipeline import real_molecules as stage

    _run(stage.main, params=params)


@app.command("base-model")
def base_model(params: Path = ParamsOpt):
    """Stage `base_model`: resolve the base model into data/base_model (safetensors)."""
    from seqtune.pipeline import base_model as stage

    _run(stage.main, params=params)


@app.command()
def data(task: str = typer.Argument(..., help="Task name, e.g. smiles2iupac."), params: Path = ParamsOpt):
    """Stage `data@TASK`: label molecules and write the instruction datasets."""
    from seqtune.pipeline import data as stage

    _run(stage.main, task, params=params)


@app.command()
def train(task: str = typer.Argument(...), params: Path = ParamsOpt):
    """Stage `train@TASK`: fine-tune the base model (resumes from the last checkpoint)."""
    from seqtune.pipeline import train as stage

    _run(stage.main, task, params=params)


@app.command()
def evaluate(task: str = typer.Argument(...), params: Path = ParamsOpt):
    """Stage `evaluate@TASK`: generate on the test set, score, compare with baselines."""
    from seqtune.pipeline import evaluate as stage

    _run(stage.main, task, params=params)


@app.command()
def register(params: Path = ParamsOpt):
    """Stage `register`: log each evaluated model to MLflow and move `champion` if it is better."""
    from seqtune.pipeline import register as stage

    _run(stage.main, params=params)


@app.command("tracking-server")
def tracking_server(params: Path = ParamsOpt):
    """A shared MLflow tracking server on a project-local PostgreSQL (params.yaml tracking_server)."""
    from seqtune import tracking_server as server

    _run(server.main, params=params)


@registry_app.command("list")
def registry_list(params: Path = ParamsOpt):
    """Every task's registered versions, metrics and aliases."""
    _run(_registry_list, params)


@registry_app.command("show")
def registry_show(task: str, params: Path = ParamsOpt):
    """One task's versions, tags and alias history."""
    _run(_registry_show, task, params)


@registry_app.command("promote")
def registry_promote(
    task: str,
    version: int,
    force: bool = typer.Option(False, "--force", help="Promote even if worse or scored on another test set."),
    params: Path = ParamsOpt,
):
    """Move the champion alias to VERSION."""
    from seqtune.pipeline import registry

    typer.echo(_run(registry.promote, task, version, force=force, params=params))


@registry_app.command("rollback")
def registry_rollback(task: str, params: Path = ParamsOpt):
    """Move the champion alias back to the version that held it before."""
    from seqtune.pipeline import registry

    v = _run(registry.rollback, task, params=params)
    typer.echo(f"{registry.model_name(task, params=params)}: champion rolled back to v{v}")


# The registry's tables (rich), for `registry list` and `registry show`.

_COLUMNS = ["version", "primary metric (test)", "on real molecules, by heavy atoms", "test_hash", "data_hash", "base model",
            "method", "created (UTC)"]


def _table(title: str, columns: list[str], rows: list[list]):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    Console().print(table)


def _version_row(mv, champ: Optional[int]) -> list:
    from datetime import datetime, timezone

    from seqtune.pipeline import registry_store as store

    metric, value, _ = store.score(mv)
    tags = mv.tags or {}
    test = tags.get("test_hash")
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return [
        f"v{mv.version}{' ★' if champ == int(mv.version) else ''}",
        f"{metric}={value:.4f}" if value is not None else "",
        tags.get("real_bands", ""),
        (test or "")[:12],
        (tags.get("data_hash") or "")[:12],
        tags.get("base_model"),
        tags.get("method"),
        created,
    ]


def _registry_list(params: Path) -> None:
    from seqtune.pipeline import registry
    from seqtune.pipeline import registry_store as store

    tasks, rcfg, mcfg = registry.configs(params)
    _, client = registry.open_store(mcfg)
    rows = []
    for task in tasks:
        name = rcfg.model_prefix + task
        cur = store.get_alias(client, name, rcfg.alias)
        versions = store.versions(client, name)
        if not versions:
            rows.append([name, "not registered", *[""] * (len(_COLUMNS) - 1)])
        for mv in versions:
            rows.append([name, *_version_row(mv, int(cur.version) if cur else None)])
    _table(f"registered models (★ = {rcfg.alias})", ["model", *_COLUMNS], rows)


def _registry_show(task: str, params: Path) -> None:
    from seqtune.pipeline import registry
    from seqtune.pipeline import registry_store as store

    _, rcfg, mcfg = registry.configs(params)
    _, client = registry.open_store(mcfg)
    name = rcfg.model_prefix + task
    versions = store.versions(client, name)
    if not versions:
        raise RuntimeError(f"{name} is not registered yet: run `dvc repro` (or `seqtune register`) first")
    cur = store.get_alias(client, name, rcfg.alias)
    _table(name, _COLUMNS, [_version_row(mv, int(cur.version) if cur else None) for mv in versions])
    typer.echo(f"{rcfg.alias}: v{cur.version}" if cur else f"no {rcfg.alias} yet")
    history = store.alias_history(client, name)
    _table(
        f"{rcfg.alias} history",
        ["at", "version", "previous", "by", "reason"],
        [[h.get("at"), h.get("version"), h.get("previous"), h.get("by"), h.get("reason")] for h in history],
    )


@bento_app.command("import")
def bento_import(params: Path = ParamsOpt):
    """Import every task's champion from MLflow into the BentoML model store."""
    from seqtune.serving import bento

    _run(bento.import_champions, params=params)


@app.command()
def predict(
    task: str,
    inputs: list[str] = typer.Argument(..., help="Inputs, e.g. SMILES strings."),
    url: Optional[str] = typer.Option(None, help="A running service (http://127.0.0.1:3000); else load the champion."),
    params: Path = ParamsOpt,
):
    """Predict with a running service or with the task's champion loaded directly."""
    from seqtune.serving import predict as mod

    _run(mod.main, task, inputs, url=url, params=params)


SweepsOpt = typer.Option(Path("sweeps/cpu.yaml"), "--sweeps", help="Sweep definitions.")
RecordsOpt = typer.Option(Path("reports/runs"), "--records", help="Run records (one JSON per run) the report keeps in git; "
                          "read beside the MLflow store.")


@sweep_app.command("list")
def sweep_list(sweeps: Path = SweepsOpt, params: Path = ParamsOpt):
    """Validate a sweep file; print each sweep's points and the experiments that run them."""
    from seqtune.experiments import sweeps as mod

    sf = _run(mod.load_sweeps, sweeps, params)
    for name, sweep in sf.sweeps.items():
        typer.echo(f"{name}: {sweep.finding}  (x: {sweep.x})")
        for i, point in enumerate(sweep.points):
            typer.echo(f"  [{i}] " + " ".join(f"{k}={v}" for k, v in point.items()))
    typer.echo("\nexperiments (a configuration shared by several points runs once):")
    for exp in _run(mod.plan, list(sf.sweeps), sweeps_path=sweeps, params=params):
        typer.echo(f"  {' '.join(exp.command())}\n      # {', '.join(exp.points)}")


@sweep_app.command("queue")
def sweep_queue(names: list[str] = typer.Argument(..., help="Sweep names, or `all`."),
                sweeps: Path = SweepsOpt, params: Path = ParamsOpt,
                rerun: bool = typer.Option(False, "--rerun", help="Queue points that already have a matching run too."),
                dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands only."),
                records: Path = RecordsOpt):
    """Queue the points of sweeps NAMES with `dvc exp run --queue` (then `dvc queue start -j 1`).

    A configuration shared by several points is queued once; one that already has a matching
    run (in the MLflow store or the run records) is skipped."""
    from seqtune.experiments import sweeps as mod

    if names == ["all"]:
        names = list(_run(mod.load_sweeps, sweeps, params).sweeps)
    _run(mod.queue, names, sweeps_path=sweeps, params=params, rerun=rerun, dry_run=dry_run, records=records)


@sweep_app.command("cost")
def sweep_cost(names: list[str] = typer.Argument(..., help="Sweep names, or `all`."),
               sweeps: Path = SweepsOpt, params: Path = ParamsOpt,
               gpu_tflops: float = typer.Option(150.0, help="Assumed effective bf16 TFLOP/s of one GPU."),
               sample: int = typer.Option(200, min=0, help="Raw molecule records per sample that tokens per example "
                                          "are counted on (0: take them from tracked runs only)."),
               records: Path = RecordsOpt):
    """Estimate the training cost of sweeps NAMES: tokens per example counted on a sample of
    each point's data, time from throughput measured in tracked runs (store and records)."""
    from seqtune.experiments import cost as mod
    from seqtune.experiments.runs import collect_runs
    from seqtune.experiments.sweeps import load_sweeps

    if names == ["all"]:
        names = list(_run(load_sweeps, sweeps, params).sweeps)
    runs = _run(collect_runs, params, records)
    estimates = _run(mod.estimate, names, sweeps_path=sweeps, params=params, runs=runs, sample=sample)
    typer.echo("\n".join(mod.table(estimates, mod.measured_flops_per_s(runs)[0], gpu_tflops) + [""] + mod.notes(estimates)))


@app.command()
def report(sweeps: Path = SweepsOpt, params: Path = ParamsOpt,
           out: Path = typer.Option(Path("reports"), help="Output folder."),
           paper: Optional[Path] = typer.Option(Path("sweeps/paper.yaml"), help="Sweeps whose cost the report estimates "
                                                "(skipped when the file does not exist)."),
           records: Path = RecordsOpt):
    """Write reports/findings.md and its PNG plots from the tracked runs (the MLflow store and
    the run records), and record every run it used."""
    from seqtune.experiments import report as mod

    md = _run(mod.main, params=params, sweeps_path=sweeps, out=out, paper_sweeps=paper, records=records)
    typer.echo(f"wrote {md}")


if __name__ == "__main__":
    app()
