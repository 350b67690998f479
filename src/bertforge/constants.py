"""Values that several stages' contracts share, defined once."""

IGNORE_INDEX = -100
"""A label the losses skip: padding of masked-LM targets, no NSP label (as transformers)."""

EXAMPLE_SPLITS = ("train", "heldout")
"""The splits that ingest and examples write and pretrain reads."""

TASK_SPLITS = ("train", "dev", "test")
"""The splits of a fine-tuning task."""
