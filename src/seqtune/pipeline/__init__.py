"""The DVC pipeline: one module per stage (`main()` each, run by `seqtune <stage>`) and the
helpers only the stages use.

    seqtune molecules | real-molecules | base-model | data TASK | train TASK | evaluate TASK | register

Stages: `molecules`, `real_molecules`, `models` (stage `base_model`), `data`, `train`,
`evaluate`, `registry` (stage `register`). Helpers: `molecule_sources`, `standardise`,
`fragments`, `simple_organics`, `formats`, `sft_data`, `completion_loss`, `train_callbacks`,
`generation`, `precision`, `model_files`, `cards`, `registry_store`, `registry_lock`, `pyfunc`
and `pyfunc_model` (what MLflow runs to load a registered model).
Stages pass files under data/ (and MLflow runs) to each other, never imports; see
ARCHITECTURE.md.
"""
