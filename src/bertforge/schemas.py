"""The contracts at every stage boundary, as pandera schemas plus the Arrow schema written.

The writer validates each shard before it lands in the stage's staging directory; readers trust
what they read. A violation is a bug in the writer (or a corrupted input), reported in one line.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pyarrow

from bertforge.errors import BertforgeError

# --- ingest → data/ingested/{train,heldout}/part-*.parquet ------------------------------------
# One row per cleaned, deduplicated document: `doc_id` is the first 16 hex digits of the sha256
# of the document's cleaned text (so it is also the dedup key and the held-out split key),
# `source` names the file or hub dataset it came from, `sentences` its sentences in order.

DOCUMENT_ARROW_SCHEMA = pyarrow.schema(
    [
        ("doc_id", pyarrow.string()),
        ("source", pyarrow.string()),
        ("sentences", pyarrow.list_(pyarrow.string())),
    ]
)


def _is_sentence_list(sentences: object) -> bool:
    return (
        sentences is not None
        and len(sentences) > 0
        and all(isinstance(s, str) and s != "" and s == s.strip() for s in sentences)
    )


DOCUMENTS = pa.DataFrameSchema(
    {
        "doc_id": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{16}$"), unique=True),
        "source": pa.Column(str, pa.Check.str_length(min_value=1)),
        "sentences": pa.Column(
            object,
            pa.Check(
                _is_sentence_list,
                element_wise=True,
                error="sentences must be a non-empty list of non-empty, stripped strings",
            ),
        ),
    },
    strict=True,
    ordered=True,
)


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame, where: str) -> None:
    """Check `frame` against `schema`; a violation becomes a one-line `BertforgeError`."""
    try:
        schema.validate(frame, lazy=False)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as error:
        first_line = str(error).strip().splitlines()[0]
        raise BertforgeError(f"{where}: output contract violated: {first_line}") from None
