"""params.yaml `examples`, validated once at stage start (docs/examples.md explains each knob)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bertforge.params import require


@dataclass(frozen=True)
class ExamplesParams:
    """The ``examples`` section of params.yaml (docs/examples.md explains each knob)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    dupe_factor: int = 2
    short_seq_prob: float = 0.1
    whole_word_mask: bool = False
    word_segmenter: Literal["none", "jieba"] = "none"
    nsp: bool = True
    masking: Literal["static", "dynamic"] = "static"
    random_seed: int = 12345
    negative_pool_size: int = 1000
    num_proc: int = 2

    def __post_init__(self) -> None:
        require(8 <= self.max_seq_length <= 32767, "max_seq_length", "must be in [8, 32767]",
                self.max_seq_length)  # fmt: skip
        most = self.max_num_tokens
        require(
            1 <= self.max_predictions_per_seq <= most,
            "max_predictions_per_seq",
            f"must be in [1, max_seq_length - {self.max_seq_length - most}] = [1, {most}]",
            self.max_predictions_per_seq,
        )
        require(0.0 < self.masked_lm_prob < 1.0, "masked_lm_prob", "must be in (0, 1)",
                self.masked_lm_prob)  # fmt: skip
        require(self.dupe_factor >= 1, "dupe_factor", "must be at least 1", self.dupe_factor)
        require(0.0 <= self.short_seq_prob <= 1.0, "short_seq_prob", "must be in [0, 1]",
                self.short_seq_prob)  # fmt: skip
        require(self.negative_pool_size >= 2, "negative_pool_size", "must be at least 2",
                self.negative_pool_size)  # fmt: skip
        require(self.num_proc >= 1, "num_proc", "must be at least 1", self.num_proc)
        segmented = self.word_segmenter != "none"
        require(not segmented or self.whole_word_mask, "word_segmenter",
                "needs whole_word_mask: true (it finds the words to mask whole)",
                self.word_segmenter)  # fmt: skip
        require(not segmented or self.masking == "static", "word_segmenter",
                "needs masking: static (the words are known only while examples are made)",
                self.word_segmenter)  # fmt: skip

    @property
    def max_num_tokens(self) -> int:
        """Room for the segments: [CLS] A [SEP] B [SEP] with NSP, [CLS] A [SEP] without."""
        return self.max_seq_length - (3 if self.nsp else 2)

    @property
    def dupe_factors(self) -> tuple[int, int]:
        """Passes over (train, heldout): held-out instances are for evaluation, one suffices."""
        return self.dupe_factor, 1
