"""Serving: the champions in the BentoML model store, and predictions from them.

    seqtune bento import       seqtune predict TASK INPUT...

`bento` copies each task's MLflow champion into the BentoML store that service/ serves;
`predict` is the shared request handling (in-process or over HTTP); `security` and `guard`
decide and enforce who may call the service (docs/security.md); `runtime` hands service/
the inference package's generator loader and weight check and chem's OPSIN warm-up (service/
imports nothing of seqtune beyond config, log, tasks and this package); `ct2` is the
CTranslate2 runtime. May import `inference` and the pipeline (registry, model_files), neither
of which imports this package. See ARCHITECTURE.md.
"""
