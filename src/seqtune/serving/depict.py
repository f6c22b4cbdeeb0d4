"""2D depictions for the service's page: SMILES (or names, read by OPSIN) to RDKit SVG.

    python -c "from seqtune.serving.depict import depict_items; print(depict_items(['CCO'])[0]['svg'][:80])"

`depict_items` is what the service's `POST /depict` runs: one result per input, in order,
{input, smiles, svg, error}; a bad item gets its own `error` and never fails the others.
`kind="names"` reads each name with OPSIN first (`seqtune.chem.opsin_to_smiles`): the page
shows the structure OPSIN reads from the model's name next to the input structure, which is
what smiles2iupac's `verified` compares.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from rdkit import Chem

from seqtune.chem import canonical_smiles, mol_from_smiles, opsin_to_smiles, smiles_problem

log = logging.getLogger(__name__)

DEFAULT_SIZE = 260
"""Pixels, width = height: the page draws two side by side."""
MIN_SIZE, MAX_SIZE = 80, 800


def depict_svg(mol: Chem.Mol, size: int = DEFAULT_SIZE) -> str:
    """An SVG drawing of `mol` (coordinates computed, stereo wedged and labelled)."""
    # Imported here, not at module level: RDKit's drawing library links X11's libXrender, which
    # a slim image may lack; the service must still start and answer names without it.
    from rdkit.Chem.Draw import rdMolDraw2D

    drawer = rdMolDraw2D.MolDraw2DSVG(size, size)
    drawer.drawOptions().addStereoAnnotation = True  # R/S, E/Z: what a name spells out
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, Chem.Mol(mol))
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


def _item_problem(item: Any, max_input_length: int | None) -> str | None:
    if not isinstance(item, str):
        return f"expected a string, got {type(item).__name__}"
    if not item.strip():
        return "empty input"
    if max_input_length is not None and len(item) > max_input_length:
        return f"input too long ({len(item)} characters; at most {max_input_length})"
    return None


def depict_items(items: Sequence[Any], *, kind: Literal["smiles", "names"] = "smiles",
                 max_input_length: int | None = None, size: int = DEFAULT_SIZE) -> list[dict[str, Any]]:
    """One depiction per item, same order: {input, smiles, svg, error}. `smiles` is RDKit's
    canonical SMILES of what was drawn (for names: of OPSIN's reading), None with an error."""
    if kind not in ("smiles", "names"):
        raise ValueError(f"kind must be 'smiles' or 'names', not {kind!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], not {size}")
    results = [{"input": it if isinstance(it, str) else repr(it), "smiles": None, "svg": None,
                "error": _item_problem(it, max_input_length)} for it in items]
    todo = [i for i, r in enumerate(results) if r["error"] is None]
    smiles: dict[int, str | None] = {i: items[i].strip() for i in todo}
    if kind == "names" and todo:
        try:
            read = opsin_to_smiles([items[i] for i in todo])
        except RuntimeError as e:  # no Java, or OPSIN failed twice: every name says so
            log.warning("depict: OPSIN unavailable (%s)", e)
            read = [None] * len(todo)
            for i in todo:
                results[i]["error"] = f"OPSIN unavailable: {e}"
        else:
            for i, smi in zip(todo, read):
                smiles[i] = smi
                if smi is None:
                    results[i]["error"] = "OPSIN could not read this name"
    for i in todo:
        if results[i]["error"] is not None:
            continue
        problem = smiles_problem(smiles[i])
        if problem is not None:
            results[i]["error"] = problem if kind == "smiles" else f"OPSIN's structure is not drawable: {problem}"
            continue
        try:
            results[i]["svg"] = depict_svg(mol_from_smiles(smiles[i]), size)
            results[i]["smiles"] = canonical_smiles(smiles[i])
        except Exception as e:  # noqa: BLE001 — a drawing crash is this item's problem only
            log.warning("depicting %r failed: %s", smiles[i][:80], e)
            results[i]["error"] = f"could not draw this structure: {e}"
    return results
