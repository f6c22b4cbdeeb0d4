"""The old home of the MLflow model class, kept so that models registered before the package
layout still load.

MLflow pickles the `SeqtuneModel` that `seqtune register` logs by reference (module and class
name), so every version registered before the move names `seqtune.pyfunc.SeqtuneModel`, and
`mlflow.pyfunc.load_model()` imports this module to find it. The code is
`seqtune.pipeline.pyfunc`; new versions name that module. Nothing in seqtune imports this one.
"""

from seqtune.pipeline.pyfunc import SeqtuneModel  # noqa: F401 — the alias old pickles resolve
