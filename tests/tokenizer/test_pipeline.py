"""The BERT tokenizer pipeline equals the original BERT's, and transformers loads it.

`reference_bert_tokenizer` is an independent pure-Python port of google-research/bert's
tokenization.py; every equivalence test compares against it. The tokenizers are trained once
(tests/tokenizer/conftest.py) on a small multilingual fixture corpus, and, when it exists, on part
of the real corpus.
"""

from __future__ import annotations

import functools
import itertools
import lzma
import random
import string
import sys
import unicodedata
from pathlib import Path

import pytest
from tokenizers import normalizers

from bertforge.tokenizer.files import load_tokenizer
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS, build_tokenizer
from bertforge.vocab.params import VocabParams
from bertforge.vocab.train import count_alphabet
from tests.factories import (
    VOCAB_HELDOUT_DOCUMENTS,
    VOCAB_TRAIN_DOCUMENTS,
    vocab_params,
    write_documents,
    write_trained_tokenizer,
)
from tests.reference_bert_tokenizer import (
    CJK_IDEOGRAPH_RANGES,
    BasicTokenizer,
    FullTokenizer,
    is_chinese_char,
)
from tests.support import REPO_ROOT


def reference_for(directory: Path, params: VocabParams) -> FullTokenizer:
    return FullTokenizer.from_vocab_file(
        str(directory / "vocab.txt"),
        do_lower_case=params.lowercase,
        strip_accents=params.strip_accents,
        tokenize_chinese_chars=params.tokenize_chinese_chars,
    )


def words_of(tokenizer, text: str) -> list[str]:
    """Our BasicTokenizer equivalent: normalizer then pre-tokenizer."""
    normalized = tokenizer.normalizer.normalize_str(text)
    return [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]


# --- texts --------------------------------------------------------------------------------------

EDGE_CASES = {
    "english": "Hello, world! It's a test of BERT's tokenizer (v2.0) -- isn't it?",
    "accented": "café naïve Ångström résumé Crème brûlée",
    "accented capitals": "CAFÉ NAÏVE ÅNGSTRÖM RÉSUMÉ",
    "combining marks": "cafe\u0301 nai\u0308ve A\u030angstro\u0308m a\u0308\u0304 \u0345",
    "chinese": "北京大学是中国的一所大学。我们在北京学习中文！",
    "japanese": "日本語のテキストです。ひらがなとカタカナ、ｶﾀｶﾅ。",
    "korean": "한국어 문장도 있습니다.",
    "emoji": "Emoji 😀👍🏽 👨\u200d👩\u200d👧 🇫🇷 \u2764\ufe0f",
    "control characters": "a\x01b\x07c\x1bd\x7fe\x85f\x0bg\x0ch\x1ci",
    "nul": "nul\x00byte\x00",
    "replacement character": "broken\ufffdbytes \ufffd",
    "zero-width": "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom soft\u00adhyphen",
    "bidi marks": "left\u200eright\u200fmarks \u202aembedded\u202c \U000e0001tag",
    "whitespace": "tab\there\nnew\r\nline\u00a0nbsp\u2009thin\u3000ideo\u2028line\u2029para",
    "200-character word": "a" * 200,
    "201-character word": "a" * 201,
    "201-character pieces": "the" * 67,
    "punctuation runs": "!!!???...---((()))[[]]{{}}@@##$$%%^^&&**__++==||\\\\//<<>>~~``",
    "unicode punctuation": "“quoted” «guillemets» ‹single› ¡hola! ¿qué? — – … 、。，・",
    "mixed scripts": "Latin Ελληνικά Кириллица עברית العربية हिन्दी ไทย ქართული",
    "final sigma": "ΟΔΟΣ ΟΔΟΣ. ΣΟΦΟΣ'Σ Σ ΑΣ ΣΑ ΑΣ\u0345Β ΑΣ\u0301 Α\u00adΣ ΑΣ\u200bΒ Α.Σ",
    "special casing": "İstanbul İ \u212a \u2126 ß ẞ ﬁ Ǆ ǅ ǆ \u0130\u0307",
    "private use": "private \ue000 \uf8ff \U000f0000 \U0010fffd use",
    "cjk range boundaries": "\u4e00\u9fff\u3400\u4dbf\U00020000\U0002a6df\U0002b820\U0002b91f"
    "\U0002b920\U0002ceaf\uf900\ufaff\U0002f800\U0002fa1f\u3007\u2f00",
    "newer unicode": "\U00011938 \u0890 \u0898 \u2e5d \U00010ead \u1734 \u166d \u08e2",
    "empty": "",
    "only spaces": "   \t\n ",
    "only removed": "\x00\ufffd\u200b",
    "literal special tokens": "[MASK] [CLS] [SEP] [PAD] [UNK] text",
}
SPECIAL_TOKEN_TEXT = {"literal special tokens"}

CHARACTER_POOLS = (
    string.ascii_letters,
    string.digits,
    string.punctuation,
    " \t\n\r\x0b\x0c\x1c\x85\u00a0\u2009\u3000\u2028\u2029\u180e\u205f",
    "àáâãäåçèéêëìíîïñòóôõöùúûüýÿÀÉÎÕÜŁłŒœßẞİıǅ",
    "\u0300\u0301\u0308\u0327\u0345\u0488\u20dd\u0f39\U0001d165",
    "ΑΒΓΔΣσςΩωάΐΌΆ",
    "абвгдЖЗИЙЁ",
    "中文北京大学日本語漢字豈\U00020000\U0002b820\U0002b91f\U0002a6df",
    "ひらがなカタカナ한국어ｱｲ",
    "😀👍🏽👨\u200d👩🇫🇷\u2764\ufe0f",
    "\x00\x01\x07\x1b\x7f\u200b\u200c\u200d\u200e\ufeff\u00ad\u2060\U000e0001\ufffd",
    "\ue000\uf8ff\U000f0000",
    "“”‘’«»—–…、。，！？‹›¡¿・",
    "$+<=>^`|~€£©®°±×÷∑∞≈",
)


def random_texts(count: int, seed: int) -> list[str]:
    """Strings drawn from a seeded mix of the character classes above, with runs and words."""
    rng = random.Random(seed)
    texts = []
    while len(texts) < count:
        pieces = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(CHARACTER_POOLS)
            pieces.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        text = "".join(pieces)
        if not any(token in text for token in BERT_SPECIAL_TOKENS):
            texts.append(text)
    return texts


RANDOM_TEXTS = random_texts(300, seed=20240601)
CORPUS_SENTENCES = [
    sentence
    for document in VOCAB_TRAIN_DOCUMENTS + VOCAB_HELDOUT_DOCUMENTS
    for sentence in document
]
ALL_TEXTS = [*EDGE_CASES.values(), *RANDOM_TEXTS, *CORPUS_SENTENCES]

VARIANTS = {
    "uncased": {"lowercase": True, "strip_accents": None},
    "cased": {"lowercase": False, "strip_accents": None},
    "lowercase keeping accents": {"lowercase": True, "strip_accents": False},
    "accents stripped without lowercasing": {"lowercase": False, "strip_accents": True},
    "no chinese spacing": {"lowercase": True, "tokenize_chinese_chars": False},
}


# --- equivalence with the original BERT ---------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_tokens_equal_original_bert_on_edge_cases_random_strings_and_corpus(
    variant: str, cased_vocab: dict[str, int]
) -> None:
    params = vocab_params(**VARIANTS[variant])
    ours = build_tokenizer(cased_vocab, params)
    tokens = [token for token, _ in sorted(cased_vocab.items(), key=lambda item: item[1])]
    reference = FullTokenizer(
        tokens,
        do_lower_case=params.lowercase,
        strip_accents=params.strip_accents,
        tokenize_chinese_chars=params.tokenize_chinese_chars,
    )
    for text in ALL_TEXTS:
        expected = reference.tokenize(text)
        assert ours.encode(text, add_special_tokens=False).tokens == expected, repr(text)


def test_trained_tokenizer_ids_equal_original_bert_ids(uncased_dir: Path) -> None:
    ours = load_tokenizer(uncased_dir)
    reference = reference_for(uncased_dir, vocab_params())
    for text in ALL_TEXTS:
        expected = reference.convert_tokens_to_ids(reference.tokenize(text))
        assert ours.encode(text, add_special_tokens=False).ids == expected, repr(text)


def lowercase_differs_from_python(characters: list[str]) -> set[str]:
    """Characters HF's `Lowercase` maps differently from `str.lower` (one call for all)."""
    characters = [char for char in characters if char != "\n"]
    lowered = normalizers.Lowercase().normalize_str("\n".join(characters)).split("\n")
    return {char for char, low in zip(characters, lowered, strict=True) if low != char.lower()}


ALL_CHARACTERS = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]


@functools.cache
def unassigned_lowercase_differences() -> frozenset[str]:
    return frozenset(lowercase_differs_from_python(ALL_CHARACTERS))


def test_lowercase_differs_from_python_only_on_code_points_python_does_not_assign() -> None:
    """The documented boundary: HF lowercases with newer Unicode data than Python 3.11's."""
    differing = unassigned_lowercase_differences()
    assert differing, "HF and Python now share a Unicode version: update docs/vocab.md"
    assert {unicodedata.category(char) for char in differing} == {"Cn"}


@pytest.mark.parametrize("variant", ["uncased", "cased"])
def test_every_code_point_splits_and_normalizes_as_in_original_bert(
    variant: str, cased_vocab: dict[str, int]
) -> None:
    """Each code point between two letters; CJK, private-use and unassigned ones sampled.

    The only differences allowed are the documented ones: code points Python's Unicode database
    does not assign, which HF's newer tables lowercase. Those are all checked.
    """
    params = vocab_params(**VARIANTS[variant])
    ours = build_tokenizer(cased_vocab, params)
    reference = BasicTokenizer(params.lowercase, params.strip_accents)
    allowed = unassigned_lowercase_differences() if params.lowercase else set()
    range_ends = {chr(end) for ends in CJK_IDEOGRAPH_RANGES for end in ends}
    checked = [
        char
        for index, char in enumerate(ALL_CHARACTERS)
        if index % 97 == 0
        or char in allowed
        or char in range_ends
        or not (unicodedata.category(char) in ("Cn", "Co") or is_chinese_char(ord(char)))
    ]
    differing = set()
    for start in range(0, len(checked), 4096):
        chunk = checked[start : start + 4096]
        text = " ".join(f"a{char}b" for char in chunk)
        if words_of(ours, text) != reference.tokenize(text):
            differing |= {
                char
                for char in chunk
                if words_of(ours, f"a{char}b") != reference.tokenize(f"a{char}b")
            }
    assert differing <= allowed, sorted(f"U+{ord(char):04X}" for char in differing - allowed)


def test_private_use_characters_are_kept_not_dropped(cased_vocab: dict[str, int]) -> None:
    ours = build_tokenizer(cased_vocab, vocab_params())
    assert words_of(ours, "a\ue000b \U000f0000") == ["a\ue000b", "\U000f0000"]


def test_word_final_capital_sigma_lowercases_to_final_sigma(cased_vocab: dict[str, int]) -> None:
    ours = build_tokenizer(cased_vocab, vocab_params(strip_accents=False))
    # Python's rule: Σ is final after a cased letter unless a cased letter follows, skipping
    # case-ignorables such as the apostrophe in both directions.
    assert words_of(ours, "ΟΔΟΣ ΣΑ ΑΣ'Σ Σ") == ["οδος", "σα", "ασ", "'", "ς", "σ"]
    assert BasicTokenizer(True, False).tokenize("ΟΔΟΣ ΣΑ ΑΣ'Σ Σ") == words_of(
        ours, "ΟΔΟΣ ΣΑ ΑΣ'Σ Σ"
    )


def test_cjk_extension_ideographs_are_split_off_like_other_ideographs(
    cased_vocab: dict[str, int],
) -> None:
    ours = build_tokenizer(cased_vocab, vocab_params())
    assert words_of(ours, "a\U0002b820b\U0002b91f") == ["a", "\U0002b820", "b", "\U0002b91f"]


def test_words_over_200_characters_are_one_unknown_token(cased_vocab: dict[str, int]) -> None:
    ours = build_tokenizer(cased_vocab, vocab_params())
    assert ours.encode("a" * 201, add_special_tokens=False).tokens == ["[UNK]"]
    pieces = ours.encode("a" * 200, add_special_tokens=False).tokens
    assert "[UNK]" not in pieces
    assert "".join(piece.removeprefix("##") for piece in pieces) == "a" * 200


def test_literal_special_token_text_is_tokenized_as_text(uncased_dir: Path) -> None:
    ours = load_tokenizer(uncased_dir)
    reference = reference_for(uncased_dir, vocab_params())
    tokens = ours.encode("[MASK] here", add_special_tokens=False).tokens
    assert tokens == reference.tokenize("[MASK] here")
    assert "[MASK]" not in tokens


@pytest.mark.skipif(
    not sorted((REPO_ROOT / "data/raw/corpus").glob("*.txt.xz")),
    reason="the real corpus data/raw/corpus/*.txt.xz is not built yet",
)
def test_real_corpus_sentences_equal_original_bert(tmp_path: Path) -> None:
    """Train on part of the real corpus, compare on another part (and through transformers)."""
    paragraphs: list[str] = []
    for path in sorted((REPO_ROOT / "data/raw/corpus").glob("*.txt.xz")):
        with lzma.open(path, "rt", encoding="utf-8") as handle:
            lines = (line.strip() for line in itertools.islice(handle, 1000))
            paragraphs.extend(line for line in lines if line)
    paragraphs = list(dict.fromkeys(paragraphs))
    train, compare = paragraphs[0::2], paragraphs[1::8]  # every source in both
    write_documents(tmp_path / "train", [[paragraph] for paragraph in train])
    params = vocab_params(vocab_size=4000, limit_alphabet=1000, min_frequency=2)
    write_trained_tokenizer(tmp_path, tmp_path / "train", params)
    ours, reference = load_tokenizer(tmp_path), reference_for(tmp_path, params)
    for text in compare:
        assert ours.encode(text, add_special_tokens=False).tokens == reference.tokenize(text)
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    for text in compare:
        assert auto(text)["input_ids"] == ours.encode(text).ids


# --- transformers interoperability --------------------------------------------------------------


def test_autotokenizer_gives_our_ids_on_any_text(uncased_dir: Path) -> None:
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(uncased_dir))
    ours = load_tokenizer(uncased_dir)
    texts = [text for name, text in EDGE_CASES.items() if name not in SPECIAL_TOKEN_TEXT]
    for text in [*texts, *RANDOM_TEXTS, *CORPUS_SENTENCES]:
        assert auto(text)["input_ids"] == ours.encode(text).ids, repr(text)
    first, second = CORPUS_SENTENCES[0], CORPUS_SENTENCES[1]
    pair, encoding = auto(first, second), ours.encode(first, second)
    assert pair["input_ids"] == encoding.ids
    assert pair["token_type_ids"] == encoding.type_ids
    assert auto.model_max_length == 512
    assert {auto.pad_token_id, auto.unk_token_id, auto.cls_token_id} == {0, 1, 2}
    assert (auto.sep_token_id, auto.mask_token_id) == (3, 4)


def test_autotokenizer_matches_literal_special_tokens_unlike_original(uncased_dir: Path) -> None:
    """Documented boundary: transformers' convention, so that fill-mask works on "[MASK]"."""
    from transformers import AutoTokenizer

    ours = load_tokenizer(uncased_dir)
    text = EDGE_CASES["literal special tokens"]
    assert AutoTokenizer.from_pretrained(str(uncased_dir))(text)["input_ids"][1] == 4
    splitting = AutoTokenizer.from_pretrained(str(uncased_dir), split_special_tokens=True)
    assert splitting(text)["input_ids"] == ours.encode(text).ids


def test_slow_transformers_bert_tokenizer_gives_our_ids(uncased_dir: Path) -> None:
    """transformers' Python BertTokenizer, from vocab.txt alone, on text outside its own quirks."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=str(uncased_dir / "vocab.txt"), do_lower_case=True)
    ours = load_tokenizer(uncased_dir)
    transformers_quirks = {
        "200-character word",
        "201-character pieces",
        "private use",
        "cjk range boundaries",
        "literal special tokens",
    }
    texts = [text for name, text in EDGE_CASES.items() if name not in transformers_quirks]
    for text in [*texts, *CORPUS_SENTENCES]:
        assert slow(text)["input_ids"] == ours.encode(text).ids, repr(text)


def test_slow_transformers_bert_tokenizer_differs_from_original_only_by_its_own_quirks(
    uncased_dir: Path,
) -> None:
    """Documented boundary: it drops private-use and unassigned characters and gives up on
    words of more than 100 characters."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    slow = BertTokenizerLegacy(vocab_file=str(uncased_dir / "vocab.txt"), do_lower_case=True)
    ours = load_tokenizer(uncased_dir)
    reference = reference_for(uncased_dir, vocab_params())
    long_word = "the" * 40
    assert slow.tokenize(long_word) == ["[UNK]"]
    assert ours.encode(long_word, add_special_tokens=False).tokens == reference.tokenize(long_word)
    for dropped in ("a\ue000", "a\U0002ceaf"):  # private use; unassigned in Unicode 14
        assert slow.tokenize(dropped) == ["a"] != reference.tokenize(dropped)


@pytest.mark.parametrize("tokenize_chinese_chars", [True, False])
def test_alphabet_pass_sees_the_characters_and_continuations_the_pre_tokenizer_makes(
    tokenize_chinese_chars: bool, cased_vocab: dict[str, int]
) -> None:
    """The alphabet pass reads normalized text without pre-tokenizing: it must agree."""
    ours = build_tokenizer(cased_vocab, vocab_params(tokenize_chinese_chars=tokenize_chinese_chars))
    words = [word for text in ALL_TEXTS for word in words_of(ours, text)]
    normalized = [ours.normalizer.normalize_str(text) for text in ALL_TEXTS]
    alphabet = count_alphabet(normalized, 10_000, tokenize_chinese_chars)
    assert set(alphabet.characters) == set("".join(words))
    assert set(alphabet.continuations) == set("".join(word[1:] for word in words))


def test_pairs_are_wrapped_as_cls_a_sep_b_sep_with_segment_ids(uncased_dir: Path) -> None:
    encoding = load_tokenizer(uncased_dir).encode("the dog", "the fox")
    assert encoding.tokens == ["[CLS]", "the", "dog", "[SEP]", "the", "fox", "[SEP]"]
    assert encoding.type_ids == [0, 0, 0, 0, 1, 1, 1]


def test_decoding_joins_continuation_pieces(uncased_dir: Path) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    encoding = tokenizer.encode("the unaffable runners")
    assert any(token.startswith("##") for token in encoding.tokens)
    assert tokenizer.decode(encoding.ids) == "the unaffable runners"
