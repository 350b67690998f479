"""Whole-word masking by word segmentation: jieba's words are masked as units, the token ids
are those of the unsegmented text, and the examples do not depend on num_proc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bertforge.errors import BertforgeError
from bertforge.examples.masking import MaskingRule, mask_batch
from bertforge.examples.params import ExamplesParams
from bertforge.examples.segmentation import (
    SegmentedSentenceTokenizer,
    check_word_segmenter,
    load_segmenter,
    spaced_words,
    token_word_continues,
)
from bertforge.io import hash_path
from bertforge.schemas import id_dtype_name
from bertforge.tokenizer.files import load_tokenizer
from bertforge.tokenizer.sentences import SentenceTokenizer
from tests.factories import (
    make_examples,
    small_examples_params,
    vocab_params,
    write_documents,
    write_trained_tokenizer,
)

segment = load_segmenter("jieba")
MIXED = [
    "我们使用深度学习模型。",
    "在 Debian 这种规模的项目中，很难避免遇到难以合作的人。",
    "BERT模型在3.5%的数据上训练，don't stop。",
    "Ὀδυσσεύς ΟΔΟΣ 北京 café naïve Ångström。",
    "日本語のテキストと한국어 텍스트。",
]


def tokenizers(project: Path) -> tuple[SentenceTokenizer, SegmentedSentenceTokenizer, object]:
    tokenizer = load_tokenizer(project / "data/tokenizer")
    dtype = np.dtype(id_dtype_name(tokenizer.get_vocab_size()))
    return (
        SentenceTokenizer(tokenizer, dtype),
        SegmentedSentenceTokenizer(tokenizer, dtype, segment),
        tokenizer,
    )


def test_spaces_go_only_at_word_boundaries_next_to_an_ideograph() -> None:
    assert (
        spaced_words(["我们", "使用", "BERT", "模型", "3.5%", "。"]) == "我们 使用 BERT 模型 3.5%。"
    )
    assert spaced_words(["hello", "_", "world", " ", "T恤"]) == "hello_world T恤"


def test_segmented_text_has_exactly_the_token_ids_of_the_text(chinese_project: Path) -> None:
    plain, segmented, _ = tokenizers(chinese_project)
    sentences = pa.array(MIXED, pa.string())
    ids, lengths = plain.encode(sentences)
    segmented_ids, segmented_lengths, marks = segmented.encode(sentences)
    assert segmented_ids.tolist() == ids.tolist()
    assert segmented_lengths.tolist() == lengths.tolist()
    assert len(marks) == len(ids)


def test_later_characters_of_a_word_continue_it_and_punctuation_stands_alone(
    chinese_project: Path,
) -> None:
    _, segmented, tokenizer = tokenizers(chinese_project)
    assert segment("我们使用深度学习模型。") == ["我们", "使用", "深度", "学习", "模型", "。"]
    _, _, marks = segmented.encode(pa.array(["我们使用深度学习模型。"], pa.string()))
    assert marks.tolist() == [False, True] * 5 + [False]
    assert token_word_continues(tokenizer, "3.5%。") == [False] * 5


def test_whole_word_masking_masks_every_character_of_a_chosen_word(chinese_project: Path) -> None:
    _, segmented, tokenizer = tokenizers(chinese_project)
    sentence = "我们使用深度学习模型。" * 4
    ids, _, marks = segmented.encode(pa.array([sentence], pa.string()))
    special = {"[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    meta = {"masked_lm_prob": 0.3, "max_predictions_per_seq": 20, "special_token_ids": special,
            "vocab_size": tokenizer.get_vocab_size(), "whole_word_mask": True}  # fmt: skip
    rule = MaskingRule.from_meta(meta, tokenizer.get_vocab())
    row = np.concatenate([[2], ids, [3]])[None, :]
    row_marks = np.concatenate([[False], marks, [False]])[None, :]
    for seed in range(20):
        _, positions, labels = mask_batch(row, np.array([row.shape[1]]), rule,
                                          np.random.default_rng(seed), row_marks)  # fmt: skip
        chosen = set(positions[0][labels[0] >= 0].tolist())
        # a word is masked whole: a character that continues a word is masked with the one before
        for position in np.flatnonzero(row_marks[0]).tolist():
            assert (position in chosen) == (position - 1 in chosen), (seed, position, chosen)
        assert chosen


def test_examples_with_jieba_are_byte_identical_for_any_num_proc(
    chinese_project: Path, tmp_path: Path
) -> None:
    common = {"whole_word_mask": True, "word_segmenter": "jieba", "negative_pool_size": 40}
    one = make_examples(chinese_project, tmp_path / "one", small_examples_params(**common))
    two = make_examples(
        chinese_project, tmp_path / "two", small_examples_params(**common, num_proc=2)
    )
    assert one == two
    assert hash_path(tmp_path / "one") == hash_path(tmp_path / "two")
    plain = small_examples_params(whole_word_mask=True, negative_pool_size=40)
    make_examples(chinese_project, tmp_path / "plain", plain)
    assert hash_path(tmp_path / "plain/train") != hash_path(tmp_path / "one/train")


def test_word_segmenter_needs_whole_word_mask_and_static_masking() -> None:
    with pytest.raises(BertforgeError, match="word_segmenter needs whole_word_mask: true"):
        ExamplesParams(word_segmenter="jieba")
    with pytest.raises(BertforgeError, match="word_segmenter needs masking: static"):
        ExamplesParams(word_segmenter="jieba", whole_word_mask=True, masking="dynamic")


def test_jieba_on_a_language_it_does_not_segment_names_both_params(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  language: en\n", encoding="utf-8")
    with pytest.raises(BertforgeError) as error:
        check_word_segmenter("jieba", params)
    assert str(error.value) == (
        f"{params}: examples.word_segmenter jieba segments ingest.language zh, not 'en' "
        "(set examples.word_segmenter: none)"
    )
    params.write_text("ingest:\n  language: zh\n", encoding="utf-8")
    check_word_segmenter("jieba", params)
    check_word_segmenter("none", tmp_path / "missing.yaml")


def test_a_tokenizer_that_keeps_cjk_characters_together_is_refused(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [["我们使用深度学习模型。", "深度学习"]])
    params = vocab_params(vocab_size=200, limit_alphabet=10, tokenize_chinese_chars=False)
    write_trained_tokenizer(tmp_path / "tokenizer", tmp_path / "train", params)
    tokenizer = load_tokenizer(tmp_path / "tokenizer")
    with pytest.raises(BertforgeError, match=r"vocab\.tokenize_chinese_chars: true"):
        SegmentedSentenceTokenizer(tokenizer, np.dtype("uint16"), segment)


def test_no_space_cuts_a_combining_mark_from_its_character() -> None:
    assert spaced_words(["北京", "\u0301x"]) == "北京\u0301x"
