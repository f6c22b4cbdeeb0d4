"""The DVC pipeline: one module per stage (`main()` each, run by `seqtune <stage>`) and the
helpers only the stages use.

    seqtune molecules | base-model | data TASK | train TASK | evaluate TASK | register

Stages: `molecules`, `models` (stage `base_model`), `data`, `train`, `evaluate`, `registry`
(stage `register`). Helpers: `molecule_sources`, `fragments`, `formats`, `sft_data`,
`completion_loss`, `train_callbacks`, `generation`, `registry_store`, `pyfunc`, `cards`.
Stages pass files under data/ (and MLflow runs) to each other, never imports; see
ARCHITECTURE.md.
"""
