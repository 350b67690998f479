"""The ingest stage: raw text sources → cleaned, sentence-split, deduplicated documents, split
train/held-out and written as Parquet shards (data/ingested) with metrics/ingest.json.
`params.py` holds IngestParams and SourceParams; `sources.py` resolves the sources into files
and hub splits, `readers.py` streams their documents (txt/jsonl/parquet, compressed, hub);
`cleaning.py` cleans a document's Unicode and `sentences.py` splits it into sentences (`zh.py`:
the Chinese rules and the joining of hard-wrapped lines; `encodings.py`: the hint for a file in a
legacy encoding);
`documents.py` is what a worker does to each document (drop rules, id, held-out side); `dedup.py`
drops exact duplicates; `metrics.py` counts for metrics/ingest.json; `pipeline.py` runs the
steps in order and writes the shards.
"""
