"""How well the trained tokenizer covers text it has not seen: the held-out sentences."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer

from bertforge.errors import BertforgeError
from bertforge.tokenizer.pipeline import UNK_TOKEN
from bertforge.vocab.ingested import iter_sentences


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def heldout_metrics(
    tokenizer: Tokenizer, heldout_dir: Path, batch_size: int = 1024
) -> dict[str, int | float | None]:
    """Vocabulary size, and [UNK] rate and tokens per word on the held-out sentences.

    The rates are null when the held-out split has no words. Streaming, batched `encode_batch`.
    """
    unk_id = tokenizer.token_to_id(UNK_TOKEN)
    words = tokens = unknown = 0
    for batch in batched(iter_sentences(heldout_dir, "vocab: held-out metrics"), batch_size):
        words += sum(len(sentence.split()) for sentence in batch)
        for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
            tokens += len(encoding.ids)
            unknown += encoding.ids.count(unk_id)
    return {
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "heldout_words": words,
        "heldout_tokens": tokens,
        "unk_rate": unknown / tokens if tokens else None,
        "tokens_per_word": tokens / words if words else None,
    }


def check_unk_rate(
    metrics: dict[str, int | float | None], max_unk_rate: float, where: Path
) -> None:
    """Fail in one line when more than `max_unk_rate` of the held-out tokens are [UNK]: the
    alphabet misses characters the corpus uses (as with Chinese and a small alphabet)."""
    unk_rate = metrics["unk_rate"]
    if unk_rate is not None and unk_rate > max_unk_rate:
        raise BertforgeError(
            f"{where}: {unk_rate:.2%} of the held-out tokens are [UNK], over vocab.max_unk_rate "
            f"{max_unk_rate} (raise vocab.alphabet_coverage, e.g. to 1.0, or vocab.max_unk_rate)"
        )
