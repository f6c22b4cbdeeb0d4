"""The launcher entry point `python -m seqtune.train`: runs `seqtune train` (cli's command).

    python -m seqtune.train smiles2formula
    accelerate launch --num_processes 4 -m seqtune.train smiles2iupac     # multi-GPU (DDP)
    torchrun --nproc_per_node 4 -m seqtune.train smiles2iupac              # the same with torchrun

Launchers start a Python module (`-m`), not a console script, so this module hands its
arguments to the `seqtune train` command: one command line, the same options and errors. The
stage itself is `seqtune.pipeline.train`; importing this module does nothing.
"""

if __name__ == "__main__":
    import sys

    from seqtune.cli import app

    app(["train", *sys.argv[1:]], prog_name="python -m seqtune.train")
