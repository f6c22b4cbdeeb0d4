"""Well-known small molecules (<= 15 heavy atoms) that the benches ask about.

    .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from known_molecules import KNOWN; print(len(KNOWN))"

Used by `champion_check.py` (is the served champion right about them?) and
`request_latency.py --molecules known` (how long a lone small-molecule request takes).
"""

# (common name, SMILES): small molecules (<= 15 heavy atoms) everyone knows; none chosen by
# looking at the training data (the table says which ones it happens to contain).
KNOWN = [
    ("ethanol", "CCO"), ("phenol", "Oc1ccccc1"), ("toluene", "Cc1ccccc1"), ("acetone", "CC(C)=O"),
    ("pyridine", "c1ccncc1"), ("benzoic acid", "O=C(O)c1ccccc1"), ("cyclohexanol", "OC1CCCCC1"),
    ("4-chloroaniline", "Nc1ccc(Cl)cc1"), ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"), ("vanillin", "COc1cc(C=O)ccc1O"),
    ("methyl salicylate", "COC(=O)c1ccccc1O"), ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("nicotine", "CN1CCCC1c1cccnc1"), ("ibuprofen", "CC(C)Cc1ccc(C(C)C(=O)O)cc1"),
    ("acetanilide", "CC(=O)Nc1ccccc1"), ("furfural", "O=Cc1ccco1"), ("benzamide", "NC(=O)c1ccccc1"),
    ("2-methylpropan-1-ol", "CC(C)CO"), ("morpholine", "C1COCCN1"),
]
