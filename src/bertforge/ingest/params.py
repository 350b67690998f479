"""The `ingest:` section of params.yaml, validated once at stage start (see docs/ingest.md)."""

from __future__ import annotations

from dataclasses import dataclass

from bertforge.params import require


@dataclass(frozen=True)
class SourceParams:
    """One entry of `ingest.sources`: a local file or glob (`path`) or a hub dataset (`hub`)."""

    path: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str | None = None
    text_column: str | None = None

    def __post_init__(self) -> None:
        given = {"path": self.path, "hub": self.hub}
        require(
            (self.path is None) != (self.hub is None),
            "path",
            "or hub: exactly one is needed",
            given,
        )
        require(self.path != "", "path", "must not be empty", self.path)
        require(self.hub != "", "hub", "must not be empty", self.hub)
        require(
            self.hub is not None or (self.config is None and self.split is None),
            "config",
            "and split apply only to hub sources",
            {"config": self.config, "split": self.split},
        )
        require(self.text_column != "", "text_column", "must not be empty", self.text_column)


@dataclass(frozen=True)
class IngestParams:
    """The `ingest:` section of params.yaml (see docs/ingest.md for each key)."""

    sources: tuple[SourceParams, ...]
    text_column: str
    min_document_chars: int
    min_sentences: int
    max_document_chars: int
    language: str
    holdout_fraction: float
    seed: int
    num_proc: int
    rows_per_shard: int
    join_wrapped_lines: bool = False  # no space where a line break splits Chinese or Japanese

    def __post_init__(self) -> None:
        require(len(self.sources) > 0, "sources", "must list at least one source", self.sources)
        require(self.text_column != "", "text_column", "must not be empty", self.text_column)
        require(
            self.min_document_chars >= 0,
            "min_document_chars",
            "must be >= 0",
            self.min_document_chars,
        )
        require(self.min_sentences >= 1, "min_sentences", "must be >= 1", self.min_sentences)
        require(
            self.max_document_chars >= max(1, self.min_document_chars),
            "max_document_chars",
            "must be >= 1 and >= min_document_chars",
            self.max_document_chars,
        )
        require(self.language != "", "language", "must not be empty", self.language)
        require(
            0.0 < self.holdout_fraction < 1.0,
            "holdout_fraction",
            "must be in (0, 1)",
            self.holdout_fraction,
        )
        require(self.seed >= 0, "seed", "must be >= 0", self.seed)
        require(self.num_proc >= 1, "num_proc", "must be >= 1", self.num_proc)
        require(self.rows_per_shard >= 1, "rows_per_shard", "must be >= 1", self.rows_per_shard)
