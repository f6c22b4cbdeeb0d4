"""The old home of the MLflow model class, kept so that models registered before the package
layout still load when pickles are allowed.

Versions registered before models from code hold a cloudpickle of `SeqtuneModel`, by reference
(module and class name); those registered before the package layout name
`seqtune.pyfunc.SeqtuneModel`, and unpickling one imports this module to find it. seqtune's
loader (`seqtune.pipeline.pyfunc.load_model`, used by `seqtune predict`) refuses any pickled
version unless MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true is set; with it set, this alias is what
lets the oldest ones resolve. New versions are logged as code (`seqtune/pipeline/pyfunc_model.py`)
and never name this module. Nothing in seqtune imports this one.
"""

from seqtune.pipeline.pyfunc import SeqtuneModel  # noqa: F401 — the alias old pickles resolve
