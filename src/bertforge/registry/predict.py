"""A quick look at a registered version: load it as pyfunc and run it on one input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.registry.register import KIND_TAG, PAIR_TAG
from bertforge.registry.store import Registry, parse_model_uri


def predict(registry: Registry, uri: str, texts: Iterable[str], top_k: int | None = None) -> Any:
    """Load a registered version as pyfunc and run it on one text (or one pair of texts)."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    version = registry.resolve(parse_model_uri(uri))
    texts = list(texts)
    pair = version.tags.get(PAIR_TAG) == "true"
    kind = version.tags.get(KIND_TAG, "")
    if pair and len(texts) != 2:
        raise BertforgeError(f"{version.name} is a text-pair model: give two texts")
    if not pair and len(texts) != 1:
        raise BertforgeError(f"{version.name} takes one text, got {len(texts)}")
    frame = pd.DataFrame({"text": [texts[0]]} | ({"text_pair": [texts[1]]} if pair else {}))
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    params = {"top_k": top_k} if top_k and kind == "fill-mask" else None
    try:
        return model.predict(frame, params=params)
    except MlflowException as error:
        raise BertforgeError(str(error.message).splitlines()[0]) from None
