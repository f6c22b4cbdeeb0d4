"""The names evaluate gives what it scores beside the model, as keys of metrics/<task>.json.

    python -c "from seqtune.pipeline.eval_keys import RULE, ZERO_SHOT, GREEDY; print(RULE, ZERO_SHOT, GREEDY)"

The evaluate stage writes them (and logs them to MLflow as `eval.<key>.<metric>`); the
experiments (report, evidence, verdicts) read them back. They live here, not in the stage
module, so that a reader of metrics needs no import of a stage.
"""

from __future__ import annotations

RULE, ZERO_SHOT, GREEDY = "baseline_rule", "baseline_zero_shot", "greedy"
"""The rule-based tool's answers, the zero-shot base model's, and plain greedy decoding's
(beside verified beams)."""
