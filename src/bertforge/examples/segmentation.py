"""Whole words for scripts written without spaces: a word segmenter says which characters form a
word, so that whole-word masking masks them together (Cui et al. 2019, Chinese BERT-wwm).

BERT's tokenizer puts every CJK ideograph in a token of its own, so the ``##`` rule of English
whole-word masking never groups Chinese characters. `SegmentedSentenceTokenizer` runs the
segmenter (``examples.word_segmenter``: jieba for Chinese) over each sentence, puts a space at
each word boundary next to an ideograph — where BERT splits anyway, so the token ids stay those
of the unsegmented sentence — and marks each token that continues the word before it
(`word_continues`): the later characters of a segmented word and the ``##`` pieces, never
punctuation. The examples carry these marks to the masking (`mask_batch`'s `word_continues`).
"""

from __future__ import annotations

import importlib
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bertforge.errors import BertforgeError
from bertforge.params import PARAMS_FILE, load_params
from bertforge.tokenizer.pipeline import is_cjk_ideograph, is_punctuation
from bertforge.tokenizer.sentences import SentenceTokenizer, concatenated_ranges

WORD_SEGMENTERS = ("none", "jieba")
SEGMENTER_LANGUAGES = {"jieba": ("zh",)}
"""The ingest languages (``ingest.language``) each segmenter segments."""

Segment = Callable[[str], list[str]]


def load_segmenter(name: str) -> Segment:
    """The segmenter `name` as a function from a sentence to its words (in order, covering it)."""
    if name != "jieba":
        raise ValueError(f"no word segmenter {name!r}")
    jieba = import_segmenter(name)
    jieba.setLogLevel(60)  # no dictionary-loading chatter on stderr
    segmenter = jieba.Tokenizer()
    segmenter.initialize()
    return lambda sentence: segmenter.lcut(sentence, HMM=True)


def check_word_segmenter(name: str, params_file: Path = PARAMS_FILE) -> None:
    """At stage start: a segmenter only for a language it segments (``ingest.language``), and
    only when installed; one line naming the param otherwise."""
    if name == "none":
        return
    language = (load_params(params_file).get("ingest") or {}).get("language")
    # a segmenter knows the words of its own languages only
    if language not in SEGMENTER_LANGUAGES[name]:
        supported = ", ".join(SEGMENTER_LANGUAGES[name])
        raise BertforgeError(
            f"{params_file}: examples.word_segmenter {name} segments ingest.language {supported}, "
            f"not {language!r} (set examples.word_segmenter: none)"
        )
    import_segmenter(name, params_file)


def import_segmenter(name: str, params_file: Path = PARAMS_FILE) -> Any:
    """The segmenter's module; not installed is one line naming the param and the extra."""
    try:
        return importlib.import_module(name)  # optional: pip install bertforge[zh]
    except ImportError:
        raise BertforgeError(
            f"{params_file}: examples.word_segmenter is {name}, which is not installed "
            "(pip install 'bertforge[zh]')"
        ) from None


def spaced_words(words: list[str]) -> str:
    """The words joined back into the sentence, with a space at each boundary next to a CJK
    ideograph (where BERT's pre-tokenizer splits anyway) and nowhere else."""
    pieces: list[str] = []
    previous = " "
    for word in words:
        if not word:
            continue
        first = word[0]
        # a boundary next to an ideograph gets a space, unless a combining mark would be cut off
        if (
            not previous.isspace()
            and not first.isspace()
            and (is_cjk_ideograph(previous) or is_cjk_ideograph(first))
            and not unicodedata.category(first).startswith("M")
        ):
            pieces.append(" ")
        pieces.append(word)
        previous = word[-1]
    return "".join(pieces)


def token_word_continues(tokenizer: Any, word: str) -> list[bool]:
    """For each token of a space-free `word`: whether it continues the word of the token before
    (every token after the first, unless it or the one before it is punctuation)."""
    encoding = tokenizer.encode(word, add_special_tokens=False)
    punctuation = [
        end - start == 1 and is_punctuation(word[start]) for start, end in encoding.offsets
    ]
    # a segmented word's later characters and ## pieces continue it; punctuation stands alone
    return [
        index > 0 and not punctuation[index] and not punctuation[index - 1]
        for index in range(len(punctuation))
    ]


SEGMENTATION_PROBE = ["我们使用深度学习模型。", "BERT模型在3.5%的数据上训练，T恤很好。"]


class SegmentedSentenceTokenizer:
    """Sentences → token ids (exactly `SentenceTokenizer`'s) and, for each token, whether it
    continues the segmented word of the token before it. The marks of each distinct space-free
    word are computed once (a memo of at most `max_words` words, started afresh when full)."""

    def __init__(self, tokenizer: Any, id_dtype: np.dtype, segmenter: Segment,
                 max_words: int = 200_000) -> None:  # fmt: skip
        self.sentences = SentenceTokenizer(tokenizer, id_dtype, max_words)
        self.tokenizer = tokenizer
        self.segment = segmenter
        self.max_words = max_words
        self.memo: dict[str, np.ndarray] = {}
        # the spaces at word boundaries must not change the ids: BERT splits CJK characters
        probe = pa.array(SEGMENTATION_PROBE, pa.string())
        segmented = pa.array([spaced_words(segmenter(text)) for text in SEGMENTATION_PROBE])
        if self.sentences.encode(probe)[0].tolist() != self.sentences.encode(segmented)[0].tolist():
            raise BertforgeError(
                "params.yaml: examples.word_segmenter needs a tokenizer that splits CJK "
                "characters (vocab.tokenize_chinese_chars: true)"
            )

    def encode(self, sentences: pa.StringArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sentences' ids back to back, the number of ids of each sentence, and the
        word-continuation mark of every id."""
        segmented = pa.array(
            [spaced_words(self.segment(sentence)) for sentence in sentences.to_pylist()],
            pa.string(),
        )
        token_ids, lengths = self.sentences.encode(segmented)
        words = pc.dictionary_encode(pc.split_pattern(segmented, " ").flatten())
        distinct = [self._marks(word) for word in words.dictionary.to_pylist()]
        lengths_of_distinct = np.array([len(marks) for marks in distinct], dtype=np.int64)
        starts_of_distinct = np.cumsum(lengths_of_distinct) - lengths_of_distinct
        occurrences = words.indices.to_numpy()
        all_marks = np.concatenate([*distinct, np.zeros(0, dtype=bool)])
        continues = all_marks[
            concatenated_ranges(starts_of_distinct[occurrences], lengths_of_distinct[occurrences])
        ]
        if len(continues) != len(token_ids):
            raise RuntimeError("word marks and token ids disagree: the tokenizer is not BERT's")
        return token_ids, lengths, continues

    def _marks(self, word: str) -> np.ndarray:
        marks = self.memo.get(word)
        if marks is None:
            if len(self.memo) >= self.max_words:
                self.memo = {}
            marks = np.array(token_word_continues(self.tokenizer, word), dtype=bool)
            self.memo[word] = marks
        return marks


def instance_word_continues(
    word_continues: np.ndarray, spans: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """The marks of `assemble_instances`' ids: the unit's marks gathered as its token ids are,
    False at [CLS] and [SEP] (and so at the first token of each segment, which follows one)."""
    a_start, a_end, b_start, b_end = spans[:, :4].T
    length_a, length_b = a_end - a_start, b_end - b_start
    marks = np.zeros(int(offsets[-1]), dtype=bool)
    marks[concatenated_ranges(offsets[:-1] + 1, length_a)] = word_continues[
        concatenated_ranges(a_start, length_a)
    ]
    marks[concatenated_ranges(offsets[:-1] + 2 + length_a, length_b)] = word_continues[
        concatenated_ranges(b_start, length_b)
    ]
    return marks
