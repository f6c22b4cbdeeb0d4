"""Typed, validated configuration: one model per `params.yaml` section.

    seqtune config            # validates ./params.yaml and prints it resolved

Every stage loads only its own section with `load_section("train")`. Unknown keys and bad
values raise `ConfigError` whose message names the offending key (`train.epochs: ...`), so a
typo in `dvc exp run -S trian.epochs=3` fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from seqtune.tasks import TASK_NAMES

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml problem a user can fix; the message names the key."""


class Section(BaseModel):
    """Base for every section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class MoleculesConfig(Section):
    source: Literal["moses", "rdkit-samples", "file", "pubchem", "chedl"] = "moses"
    """Where molecules come from (seqtune.pipeline.molecule_sources)."""
    path: str | None = None
    """`file`: a .smi/.csv path. `pubchem`: a local CID-SMILES file (downloaded when null)."""
    smiles_column: str = "SMILES"
    """Column holding SMILES in a .csv file."""
    max_raw: int = Field(15000, gt=0)
    """Read at most this many raw records, in file order."""
    min_heavy_atoms: int = Field(3, ge=1)
    max_heavy_atoms: int = Field(12, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of the hash space that is test; a molecule's split never depends on sizes."""
    val_fraction: float = Field(0.05, ge=0, lt=1)
    """Share of the hash space after the test share that is validation: the per-epoch curves
    and lever decisions use it, so the test split is scored once per reported run. 0: no
    validation split (validation is then the head of the test split)."""
    split_level: Literal["fragment", "parent"] = "parent"
    """With `fragments: brics`, what the hash splits. `fragment`: each fragment by its own key,
    so siblings and sub-fragments of one parent land on both sides
    and the test split measures near-analogues. `parent`: each source record by its own key,
    its fragments following it; a fragment that also comes from a train parent is train."""
    split_by: Literal["inchikey", "scaffold"] = "inchikey"
    fragments: Literal["none", "brics"] = "brics"
    """`brics`: replace each record by its BRICS fragments (capped with H) in the size range:
    many more small molecules from a corpus of large ones (seqtune.pipeline.fragments)."""
    simple_organics: int = Field(0, ge=0)
    """Add at most this many enumerated whole molecules of the functional-group classes
    (seqtune.pipeline.simple_organics) in the size range to the source's: real small
    molecules that BRICS fragments of drug-like molecules lack. 0: none. Each is its own
    parent under `split_level: parent`."""
    simple_organics_seed: int = 0
    """Seed of that enumeration: another seed, other molecules."""
    max_record_chars: int = Field(2000, gt=0)
    """Longer records are dropped unread (`record_too_long`): RDKit took minutes on one
    10 MB line, and no molecule a name is learned for is that long."""
    workers: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> MoleculesConfig:
        if self.min_heavy_atoms > self.max_heavy_atoms:
            raise ValueError("min_heavy_atoms must be <= max_heavy_atoms")
        if self.source == "file" and not self.path:
            raise ValueError("path is required when source is 'file'")
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError("test_fraction + val_fraction must leave a train share (< 1)")
        return self


class RealMoleculesConfig(Section):
    """Stage `real_molecules`: real, unfragmented molecules no training drew from, scored by
    heavy-atom band: what a chemist brings, not near-analogues of the training fragments."""

    source: Literal["chedl", "nci", "file", "none"] = "chedl"
    """`chedl`: the PubChem compounds with CAS numbers that the `chemicals` package (ChEDL)
    ships (~73,000 solvents, reagents, monomers, metabolites, drugs); `nci`: the first 5,000
    compounds of the NCI Open Database that RDKit ships (a catalogue `molecules.source: chedl`
    never draws from); `file`: a .smi/.csv/.tsv
    (`path`, `smiles_column`); `none`: no real-molecule evaluation."""
    path: str | None = None
    smiles_column: str = "SMILES"
    band_edges: list[int] = Field(default_factory=lambda: [3, 13, 16, 21, 31, 61])
    """Heavy-atom band edges: [3, 13, 16, 21, 31, 61] gives 3-12, 13-15, 16-20, 21-30, 31-60."""
    per_band: int = Field(60, gt=0)
    """Molecules kept per band, in InChIKey-hash order, after removing every InChIKey of the
    molecules stage's train split (a few more than evaluate.n_real_per_band: labelling drops some)."""
    max_raw: int = Field(20000, gt=0)
    """Rows standardised at most (in hash order) to fill the bands."""
    workers: int = Field(2, ge=1)

    @field_validator("band_edges")
    @classmethod
    def _edges(cls, v: list[int]) -> list[int]:
        if len(v) < 2 or v != sorted(set(v)) or v[0] < 1:
            raise ValueError("must be >= 2 strictly increasing heavy-atom counts (>= 1)")
        return v

    @model_validator(mode="after")
    def _check(self) -> RealMoleculesConfig:
        if self.source == "file" and not self.path:
            raise ValueError("path is required when source is 'file'")
        return self


class DataConfig(Section):
    n_train: int = Field(6000, gt=0)
    """Train molecules per task: a prefix in hash order, so growing it only adds (one example
    each, or `smiles_variants` for a SMILES-input task)."""
    n_test: int = Field(1000, gt=0)
    """Test examples per task; the same set for every n_train."""
    n_val: int = Field(200, ge=0)
    """Validation examples per task (from the molecules stage's validation split, when it has one)."""
    format: Literal["plain", "instruction", "chat", "atoms"] = "plain"
    sample: Literal["hash", "size_balanced"] = "hash"
    """Which train molecules: `hash`, the first in hash order (the source's own size mix);
    `size_balanced`, round-robin over heavy-atom counts, so every size gets an equal share
    until it runs out (a model trained on BRICS fragments, 93% of >= 9 heavy atoms, learned
    that prior and named no test molecule of <= 8 atoms). The test set is never resampled."""
    smiles_variants: int = Field(1, ge=1, le=16)
    """Train examples per molecule for tasks whose input is a SMILES: the canonical SMILES plus
    `smiles_variants - 1` randomized ones (RDKit, seeded by InChIKey), all with the same label,
    so the model must read the structure rather than one spelling of it. `n_train` still
    counts molecules; the test set stays canonical. Tasks with a name as input ignore it."""
    workers: int = Field(2, ge=1)
    chunk_size: int = Field(512, gt=0)


class BaseModelConfig(Section):
    name: str = "smollm2-135m"
    """`smollm2-135m`, `gemma3-270m`, `tiny`, any Hugging Face id or local path, or a
    registered model to warm-start from: `models:/<name>/<version>` or `models:/<name>@<alias>`."""


class LoraConfig(Section):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class TrainConfig(Section):
    method: Literal["full", "lora"] = "full"
    freeze_layers: int = Field(0, ge=0)
    """Full fine-tuning with the embeddings and the first N decoder layers frozen: the backward
    pass stops at layer N (pipeline.frozen_layers; a tied LM head stays frozen). 0 = all train.
    Not with method lora, which freezes every base weight already."""
    epochs: float = Field(2.0, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_length: int = Field(128, gt=8)
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    group_by_length: bool = True
    completion_only_logits: bool = True
    """Run the LM head only on positions that predict a completion token (same loss, less
    compute: seqtune.pipeline.completion_loss). Off = the stock full-logits loss."""
    logging_steps: int = Field(5, gt=0)
    save_steps: int = Field(50, gt=0)
    val_size: int = Field(64, ge=0)
    """Validation items (a prefix) giving the eval loss and generation scores after every epoch
    (0 = off). Without a validation split (molecules.val_fraction 0) the head of the test split."""
    lora: LoraConfig = Field(default_factory=LoraConfig)

    @model_validator(mode="after")
    def _freeze_not_with_lora(self) -> TrainConfig:
        if self.freeze_layers and self.method == "lora":
            raise ValueError("train.freeze_layers is for method full: LoRA already freezes every base weight "
                             "(set freeze_layers: 0, or method: full)")
        return self


class EvaluateConfig(Section):
    n_eval: int = Field(200, gt=0)
    batch_size: int = Field(32, gt=0)
    max_new_tokens: int = Field(48, gt=0)
    decoding: Literal["greedy", "beam", "verified"] = "verified"
    num_beams: int = Field(4, ge=1)
    zero_shot_baseline: bool = True
    precision: Literal["auto", "bf16", "autocast", "fp32"] = "auto"
    """Weights the model generates with (inference.devices.resolve_precision): auto = bf16 where
    native, else fp32. Not a sweep-matching key: like train.precision it resolves per machine;
    the evaluation tags the precision that ran."""
    answer_vocab: bool = True
    """LM head over the tokens the model's training answers used (stored in its seqtune.json),
    outputs limited to them (inference.heads.AnswerHead); false: the full vocabulary. Not a
    sweep-matching key: greedy outputs were the full head's on 500 of 500 test items, and the
    evaluation tags the head that ran (a card may record no answer vocabulary)."""
    size_buckets: list[int] = Field(default_factory=lambda: [10, 15, 20, 25, 30, 40, 60])
    n_real_per_band: int = Field(50, ge=0)
    """Real molecules (stage real_molecules) scored per heavy-atom band with the same decoding
    (0 = off). Not a sweep-matching key: it adds scores, it changes none."""

    @field_validator("size_buckets")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if not v or v != sorted(set(v)):
            raise ValueError("must be a non-empty, strictly increasing list of heavy-atom counts")
        return v


class RegisterConfig(Section):
    model_prefix: str = "seqtune-"
    alias: str = "champion"
    lock_wait_s: float = Field(300.0, gt=0)
    """How long register/promote/rollback wait for another process changing the same model."""
    lock_stale_s: float = Field(600.0, gt=0)
    """A registry lock older than this is taken over (its holder died on another machine)."""


class MlflowConfig(Section):
    tracking_uri: str | None = None
    """None: sqlite:///<repo>/mlflow.db (absolute). MLFLOW_TRACKING_URI overrides."""
    experiment: str = "seqtune"


class ServeConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    max_batch_size: int = Field(32, gt=0)
    max_latency_ms: int = Field(30000, gt=0)
    max_items: int = Field(64, gt=0)
    max_input_length: int = Field(300, gt=0)
    precision: Literal["auto", "bf16", "autocast", "fp32"] = "auto"
    """As evaluate.precision: auto = bf16 weights where native (single request 1.3-1.95x faster than
    autocast), else fp32."""
    answer_vocab: bool = True
    """As evaluate.answer_vocab: the LM head over the tokens the model's training answers used."""
    runtime: Literal["torch", "ctranslate2"] = "torch"
    """What generates: the PyTorch `Generator` (with `precision`), or CTranslate2 (CPU, weights in
    `ct2_compute_type`; `seqtune bento import` converts each champion: seqtune.serving.ct2)."""
    ct2_compute_type: Literal["float32", "int8_float32"] = "float32"
    """With runtime ctranslate2: the weights' type. float32 answers as torch fp32 greedy does;
    int8_float32 (int8 weights, fp32 activations, a quarter of the bytes) may change answers."""
    max_new_tokens: int = Field(48, gt=0)
    """Generated tokens per answer at most: an answer still going then is cut there (a model
    that never emits EOS costs exactly this much per item, so it bounds every request)."""
    decoding: Literal["greedy", "verified"] | dict[str, Literal["greedy", "verified"]] = "verified"
    """One decoding for every task, or one per task (`{smiles2iupac: verified}`; a task not
    named decodes greedily). `verified`: the first of `num_beams` beams the task proves right
    (smiles2iupac: OPSIN parses the name back to the input), else the top beam; only where
    the task's check does not itself answer (`Task.verified_decoding`), else greedy."""
    num_beams: int = Field(4, ge=2)
    max_batch_seconds: float = Field(120.0, gt=0)
    """The longest one model call may take: `max_batch_size` items of `max_new_tokens` each
    (x `num_beams` for verified decoding) on the slowest CPU you serve on. A request waits at
    most `max_latency_ms` for a batch (then it is shed with 503 + Retry-After) and then one
    call, so the service's request timeout is `max_latency_ms` + this: an admitted request is
    never cut off by a 504 while its batch still runs (BentoML's implicit default was 60 s)."""
    trusted_hosts: list[str] = Field(default_factory=list)
    """Host names (or IP addresses) clients may reach the service by, beyond the ones always
    trusted: localhost, 127.0.0.1, ::1 and the bound host itself. Any other `Host` header gets
    a 400 (a DNS-rebinding page reaches a loopback service under its own domain). Names only,
    no ports (any port is accepted); `"*"` accepts every Host (the check off). A service behind
    a proxy or reached by a DNS name lists that name here."""

    @field_validator("trusted_hosts")
    @classmethod
    def _host_names(cls, v: list[str]) -> list[str]:
        import ipaddress

        out = []
        for raw in v:
            name = raw.strip().lower()
            bare = name.strip("[]")
            if name == "*":
                out.append(name)
                continue
            if not bare or any(c.isspace() or c in "/@\\" for c in bare):
                raise ValueError(f"{raw!r}: give a host name or IP address (or \"*\"), no scheme or path")
            if ":" in bare:
                try:
                    ipaddress.IPv6Address(bare)
                except ValueError:
                    raise ValueError(f"{raw!r}: give the name without a port (any port is accepted)") from None
            out.append(bare)
        return out

    @property
    def request_timeout_s(self) -> float:
        return self.max_latency_ms / 1000 + self.max_batch_seconds

    @field_validator("decoding")
    @classmethod
    def _known_tasks(cls, v: Any) -> Any:
        unknown = [t for t in v if t not in TASK_NAMES] if isinstance(v, dict) else []
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {list(TASK_NAMES)}")
        return v

    def decoding_for(self, task: str) -> str:
        return self.decoding.get(task, "greedy") if isinstance(self.decoding, dict) else self.decoding


class TrackingServerConfig(Section):
    """`seqtune tracking-server` (make tracking): mlflow server on a project-local PostgreSQL."""

    host: str = "127.0.0.1"
    port: int = Field(5000, gt=0, lt=65536)
    workers: int = Field(2, gt=0)
    dir: str = ".tracking"
    """Relative to the repository root: pgdata/ (the database cluster) and artifacts/."""
    database: str = Field("seqtune", pattern=r"^[a-z_][a-z0-9_]*$", max_length=58)
    """PostgreSQL keeps 63 bytes of a name: 58 leave room for `_auth`, the users' database."""
    start_timeout_s: float = Field(120.0, gt=0)
    auth: Literal["none", "basic"] = "none"
    """`basic`: HTTP basic authentication (MLflow's basic-auth app) on every route but /health;
    the admin's password from SEQTUNE_TRACKING_ADMIN_PASSWORD(_FILE), every other user READ on
    what they did not create (seqtune.tracking_server). `none`: whoever reaches host:port
    may write the registry."""


# `register` is a section name that shadows ABCMeta.register on the class; instances hold the
# field value in their __dict__, so attribute access is unaffected. Silence the warning.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Params(Section):
    tasks: list[str] = Field(default_factory=lambda: ["smiles2iupac"])
    molecules: MoleculesConfig = Field(default_factory=MoleculesConfig)
    real_molecules: RealMoleculesConfig = Field(default_factory=RealMoleculesConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    base_model: BaseModelConfig = Field(default_factory=BaseModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    register: RegisterConfig = Field(default_factory=RegisterConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    tracking_server: TrackingServerConfig = Field(default_factory=TrackingServerConfig)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {list(TASK_NAMES)}")
        if not v or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list without duplicates")
        return v


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation for name, field in Params.model_fields.items() if name != "tasks"  # type: ignore[misc]
}


def _format_error(err: ValidationError, source: Path | str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}")
    return f"{source}: invalid parameters\n" + "\n".join(lines)


def read_yaml(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the repository root, or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return raw


def parse_params(raw: dict[str, Any], source: Path | str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> Params:
    """Load and validate the whole file (every section, so a typo anywhere is caught)."""
    return parse_params(read_yaml(path), path)


def load_section(name: str, path: Path | str = DEFAULT_PARAMS) -> Any:
    """Load one stage's section, validated; the rest of the file is validated too."""
    if name not in SECTIONS and name != "tasks":
        raise ConfigError(f"no params section {name!r}; sections: {['tasks', *SECTIONS]}")
    return getattr(load_params(path), name)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys -> strings, as MLflow params are logged (`train.lora.r` -> "16"), so a
    logged run and a params file compare exactly."""
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else str(v)
    return out
