"""The registered MLflow model, as code: the file `seqtune register` logs as `python_model`.

    python -c "import mlflow; m = mlflow.pyfunc.load_model('models:/seqtune-smiles2formula@champion'); print(m.predict(['CCO']))"

MLflow "models from code": `mlflow.pyfunc.log_model(python_model=<this file>)` copies this
file into the model version (`pyfunc_model.py` beside `MLmodel`, whose `python_function`
flavor names it as `model_code_path`), and `mlflow.pyfunc.load_model()` runs that copy, which
hands MLflow the model object through `set_model`. Nothing is pickled: the version holds this
readable file, the `hf_model` folder (safetensors) and its config, and loading it imports the
class from the installed `seqtune` package. Nothing in seqtune imports this module; MLflow
runs it, when the model is logged and whenever it is loaded.

seqtune's loader (`seqtune predict` without --url: `seqtune.pipeline.pyfunc.load_model`) runs a
version only when its copy of this file is this file's code (the docstring may differ), so a
change to the code below makes every version registered before it refuse to load there.
"""

import mlflow

from seqtune.pipeline.pyfunc import SeqtuneModel

mlflow.models.set_model(SeqtuneModel())
