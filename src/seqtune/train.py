"""The launcher entry point `python -m seqtune.train`, kept from before the package layout.

    python -m seqtune.train smiles2formula
    accelerate launch --num_processes 4 -m seqtune.train smiles2iupac     # multi-GPU (DDP)
    torchrun --nproc_per_node 4 -m seqtune.train smiles2iupac              # the same with torchrun

The stage is `seqtune.pipeline.train` (`python -m seqtune.pipeline.train` runs the same
command line). This module only runs that command line: importing it does nothing, so code
imports `seqtune.pipeline.train`.
"""

if __name__ == "__main__":
    from seqtune.pipeline.train import _cli

    _cli()
