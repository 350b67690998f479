"""Stage `vocab`: train a WordPiece vocabulary on the ingested training sentences.

`params` holds `VocabParams` (params.yaml `vocab`); `ingested` checks and streams the ingested
splits; `train` counts the alphabet and trains the vocabulary, deterministically; `metrics`
measures the trained tokenizer on the held-out sentences. The tokenizer pipeline itself, and
writing and loading its files, live in `bertforge.tokenizer`.
"""
