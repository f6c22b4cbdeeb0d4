"""seqtune: instruction-fine-tune a small pretrained LM into a sequence-task specialist,
tracked with DVC and MLflow and served with BentoML.

    seqtune --help
"""

__version__ = "0.1.0"
