"""metrics/examples.json: counts per unit, summed per split, turned into ratios a reader can
check against the params (fill, masked fraction, 80/10/10, NSP)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bertforge.examples.instances import InstanceBatch
from bertforge.examples.params import ExamplesParams


def instance_statistics(instances: InstanceBatch, mask_id: int) -> dict[str, int]:
    """Counts behind metrics/examples.json (summed over units, then turned into ratios)."""
    row_of_prediction = np.repeat(np.arange(len(instances)), np.diff(instances.masked_offsets))
    at_positions = instances.input_ids[
        instances.input_offsets[:-1][row_of_prediction] + instances.masked_lm_positions
    ]
    became_mask = at_positions == mask_id
    kept = ~became_mask & (at_positions == instances.masked_lm_ids)
    labels = instances.next_sentence_label
    return {
        "instances": len(instances),
        "tokens": len(instances.input_ids),
        "masked": len(instances.masked_lm_positions),
        "masked_as_mask": int(became_mask.sum()),
        "masked_kept": int(kept.sum()),
        "masked_random": int((~became_mask & ~kept).sum()),
        "nsp_pairs": int((labels >= 0).sum()),
        "random_next": int((labels == 1).sum()),
    }


def split_metrics(totals: Mapping[str, float], params: ExamplesParams) -> dict[str, float]:
    """Ratios a reader can check against the params (fill, masked fraction, 80/10/10, NSP)."""
    instances = int(totals.get("instances", 0))
    tokens = int(totals.get("tokens", 0))
    masked = int(totals.get("masked", 0))
    nsp_pairs = int(totals.get("nsp_pairs", 0))

    def ratio(numerator: float, denominator: float) -> float:
        return float(numerator) / denominator if denominator else 0.0

    metrics = {
        "instances": instances,
        "tokens": tokens,
        "mean_fill_ratio": ratio(tokens, instances * params.max_seq_length),
    }
    if params.masking == "static":
        metrics |= {
            "masked_fraction": ratio(masked, tokens),
            "masked_as_mask_ratio": ratio(totals.get("masked_as_mask", 0), masked),
            "masked_kept_ratio": ratio(totals.get("masked_kept", 0), masked),
            "masked_random_ratio": ratio(totals.get("masked_random", 0), masked),
        }
    if params.nsp:
        metrics["nsp_random_next_ratio"] = ratio(totals.get("random_next", 0), nsp_pairs)
    return metrics
