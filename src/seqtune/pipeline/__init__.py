"""The DVC pipeline: one module per stage (`main()` each, run by `seqtune <stage>`) and the
helpers only the stages use.

    seqtune molecules | real-molecules | base-model | data TASK | train TASK | evaluate TASK | register

Stages, each module named as its stage: `molecules`, `real_molecules`, `base_model`, `data`,
`train`, `evaluate`, `register`. Helpers: `molecule_sources`, `standardise`, `fragments`,
`simple_organics`, `tiny_model`, `frozen_layers`, `gguf_assembly`, `sft_data`, `completion_loss`,
`train_callbacks`, `eval_keys`, `eval_plots`, `model_files`, `cards`, `registry` (the
registry's verbs serving and the CLI use), `registry_store`, `registry_lock`, `pyfunc`
and `pyfunc_model` (what MLflow runs to load a registered model).
Stages pass files under data/ (and MLflow runs) to each other, never imports; see
ARCHITECTURE.md. Generation, prompt formats, precision and model loading are the package
below, `seqtune.inference`.
"""
