"""Experiments over the pipeline: sweeps of configurations, the runs that ran them, and the
report that compares them.

    seqtune sweep queue|status|cost ...     seqtune report

Reads tracked runs (MLflow, run records in git) and params; may import the pipeline (token
sampling reuses its stages' code), which never imports this package. See ARCHITECTURE.md.
"""
