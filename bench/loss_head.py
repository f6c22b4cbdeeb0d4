"""The LM head on completion positions only vs the stock full-logits loss: time per
training step, side by side in one process, same model, batch and weights; and a third loss
that is not used in training, the head restricted to the answer vocabulary.

    .venv/bin/python bench/loss_head.py                        # SmolLM2-135M (data/base_model), plain-format pairs
    .venv/bin/python bench/loss_head.py --model gemma3-270m    # the 262k-vocabulary head

Runs forward + backward + an AdamW step for `--steps` batches of real smiles2iupac-shaped
pairs (`data/datasets/smiles2iupac/train.parquet` when present, else synthetic SMILES =>
name pairs of the same shape), alternating the two losses step by step so drift in machine
load hits them alike. Prints ms per step for each, their ratio, both losses on the first
batch (equal up to bf16 rounding), and the load average.

The third, `answer vocab`: completion-only logits over only the tokens of the batches'
completions + EOS (softmax over that set; generation's `AnswerHead` decodes from the same set).
It changes the loss, so it is measured to say whether it would pay, and training does not use
it (see docs/benchmarks.md). Writes the figures (ms per step: median, min-max over the steps;
the ratios step by step) to reports/bench/loss_head.json (`common.write_result`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: shared code is in common.py
from common import REPO, model_label, resolve_base, spread, write_result  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

from seqtune.pipeline.completion_loss import completion_loss  # noqa: E402
from seqtune.inference.devices import native_bf16  # noqa: E402
from seqtune.pipeline.sft_data import Collator, encode_batch  # noqa: E402


def _pairs(n: int) -> tuple[list[str], list[str]]:
    import pandas as pd

    path = REPO / "data" / "datasets" / "smiles2iupac" / "train.parquet"
    if path.exists():
        df = pd.read_parquet(path).head(n)
        return df.prompt.tolist(), df.completion.tolist()
    smi = ["Nc1c(Cl)cnn(-c2ccccc2)c1=O", "CC(=O)Nc1ccc(O)cc1", "O=C(O)c1ccccc1O", "CCOC(=O)c1ccc(N)cc1"]
    name = ["4-amino-5-chloro-2-phenylpyridazin-3(2H)-one", "N-(4-hydroxyphenyl)acetamide",
            "2-hydroxybenzoic acid", "ethyl 4-aminobenzoate"]
    return [f"{smi[i % 4]} =>" for i in range(n)], [f" {name[i % 4]}" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a model folder or a seqtune base-model name (default: data/base_model)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per side (after one warm-up step each)")
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(a.model) if a.model and Path(a.model).is_dir() else REPO / "data" / "base_model"
    if a.model and not Path(a.model).is_dir():
        folder = resolve_base(a.model, Path(tempfile.mkdtemp()) / "base", card=False)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    prompts, completions = _pairs(a.batch * (a.steps + 1))
    rows = encode_batch(tok, prompts, completions)
    collate = Collator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    batches = [collate(rows[i : i + a.batch]) for i in range(0, len(rows), a.batch)]
    bf16 = native_bf16(torch.device("cpu"))  # the same choice training makes

    from seqtune.pipeline.sft_data import answer_token_ids

    ids = torch.tensor(answer_token_ids(rows))
    lookup = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    lookup[ids] = torch.arange(len(ids))

    def answer_vocab_loss(b) -> torch.Tensor:
        import torch.nn.functional as F

        hidden = model.get_decoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                     use_cache=False).last_hidden_state
        target = F.pad(b["labels"], (0, 1), value=-100)[:, 1:]
        keep = target != -100
        logits = F.linear(hidden[keep], model.get_output_embeddings().weight[ids]).float()
        return F.cross_entropy(logits, lookup[target[keep]])

    def step(b, fast) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if fast == "answer":
                loss = answer_vocab_loss(b)
            else:
                loss = (completion_loss(model, b["input_ids"], b["attention_mask"], b["labels"]) if fast
                        else model(**b).loss)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, loss.item()

    b0 = batches[0]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        full0 = model(**b0).loss.item()
        fast0 = completion_loss(model, b0["input_ids"], b0["attention_mask"], b0["labels"]).item()
        vocab0 = answer_vocab_loss(b0).item()
    for fast in (False, True, "answer"):  # warm-up, every path
        step(b0, fast)
    times = {False: [], True: [], "answer": []}
    for b in batches[1:]:
        for fast in times:
            times[fast].append(step(b, fast)[0])
    full, fast = statistics.median(times[False]) * 1000, statistics.median(times[True]) * 1000
    vocab = statistics.median(times["answer"]) * 1000
    lab = sum(int((b["labels"] != -100).sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)
    print(f"model {folder.name} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, vocab {model.config.vocab_size}), "
          f"batch {a.batch}, {'bf16 autocast' if bf16 else 'fp32'}, {torch.get_num_threads()} threads")
    print(f"labelled share of positions: {lab:.2f}")
    print(f"full logits:      {full:8.1f} ms/step (median of {a.steps}); first-batch loss {full0:.4f}")
    print(f"completion only:  {fast:8.1f} ms/step (median of {a.steps}); first-batch loss {fast0:.4f}")
    print(f"speed-up: {full / fast:.2f}x")
    print(f"answer vocab ({len(ids)} tokens; not used: another loss): {vocab:8.1f} ms/step; first-batch loss {vocab0:.4f}; "
          f"{fast / vocab:.2f}x completion only")
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    ms = {k: [1000 * t for t in v] for k, v in times.items()}
    write_result("loss_head", {
        "ms_per_step.full_logits": spread(ms[False]), "ms_per_step.completion_only": spread(ms[True]),
        "ms_per_step.answer_vocab": spread(ms["answer"]),
        "speedup_completion_only_over_full": round(full / fast, 3),  # of the medians, as printed
        "speedup_completion_only_over_full.per_step": spread([f / c for f, c in zip(ms[False], ms[True])]),
        "speedup_answer_vocab_over_completion_only": round(fast / vocab, 3),
        "speedup_answer_vocab_over_completion_only.per_step": spread([c / v for c, v in zip(ms[True], ms["answer"])]),
        "first_batch_loss.full_logits": round(full0, 4), "first_batch_loss.completion_only": round(fast0, 4),
        "first_batch_loss.answer_vocab": round(vocab0, 4), "labelled_share_of_positions": round(lab, 4),
        "answer_vocab_tokens": len(ids), "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
    }, headline=["speedup_completion_only_over_full.per_step", "ms_per_step.full_logits",
                  "ms_per_step.completion_only"], config={
        "model": model_label(folder) if not a.model or Path(a.model).is_dir() else a.model,
        "vocab": model.config.vocab_size, "batch": a.batch, "steps": a.steps, "precision": "bf16 autocast" if bf16 else "fp32",
        "threads": torch.get_num_threads(),
        "pairs": "data/datasets/smiles2iupac/train.parquet" if (REPO / "data/datasets/smiles2iupac/train.parquet").exists()
        else "synthetic smiles2iupac-shaped pairs"})


if __name__ == "__main__":
    main()
