"""Inference: a model folder opened, prompted and decoded, the same way wherever it runs.

    python -c "from seqtune.inference.loader import load_generator; print(load_generator('data/models/smiles2formula').predict(['CCO']))"

Modules, each with one job:

- `loader`: `load_generator(model_dir)`, the one way a model folder becomes a generator
  (evaluation, the MLflow model, the service, `seqtune predict`, bench), and
  `open_model_folder`, the card, tokenizer and answer vocabulary every runtime reads;
- `generator`: `Generator` and its decoding (greedy with finished rows dropped, beams,
  verified beams where the task's check is fair) and `Prediction`;
- `heads`: the answer-vocabulary LM head (`AnswerHead`, `install_answer_head`);
- `devices`: the device (CUDA > MPS > CPU) and what `precision: auto|bf16|autocast|fp32`
  means on it;
- `precision`: whether bf16 is native, by fact (CPU flags, a measured matmul, cached);
- `weights`: the weights of a folder, safetensors only, checked (`load_causal_lm`);
- `cards`: the fine-tuned model's card, `seqtune.json`;
- `formats`: how a source is written as a prompt and an answer read back (training data is
  written with the same functions).

Imports `tasks`, `chem` and infrastructure only; the pipeline and serving import it
(ARCHITECTURE.md).
"""
