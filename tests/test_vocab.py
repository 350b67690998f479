"""The vocab stage: WordPiece training, and a tokenizer that equals the original BERT's.

`reference_bert_tokenizer` is an independent pure-Python port of google-research/bert's
tokenization.py; every equivalence test compares against it. A tokenizer is trained once per
module on a small multilingual fixture corpus (and, when it exists, on part of the real corpus).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import lzma
import random
import re
import string
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from tests.support import REPO_ROOT, stage_env
from tests.reference_bert_tokenizer import (
    CJK_IDEOGRAPH_RANGES,
    BasicTokenizer,
    FullTokenizer,
    is_chinese_char,
)
from tokenizers import Tokenizer, models, normalizers

from bertforge.errors import BertforgeError
from bertforge.io import hash_path
from bertforge.params import load_section
from bertforge.schemas import DOCUMENT_ARROW_SCHEMA, DOCUMENTS, validate
from bertforge.shards import ShardWriter
from bertforge.vocab import (
    BERT_SPECIAL_TOKENS,
    VocabParams,
    build_tokenizer,
    check_ingested,
    count_alphabet,
    heldout_metrics,
    load_tokenizer,
    special_token_ids,
    train_tokenizer,
    vocab_digest,
    vocab_tokens,
    write_tokenizer,
)

# --- fixtures -----------------------------------------------------------------------------------

TRAIN_DOCUMENTS = [
    [
        "The quick brown fox jumps over the lazy dog.",
        "Dogs and foxes are running in the forest, and the runner keeps running.",
    ],
    [
        "A tokenizer splits text into words, and words into pieces.",
        "Pieces that continue a word start with two hash signs.",
    ],
    [
        "BERT was pretrained on books and on an encyclopedia.",
        "Its vocabulary has thirty thousand pieces; ours is smaller.",
    ],
    ["Unaffable people are rarely affable.", "The unaffable runner ran, and ran again."],
    [
        "She ordered a café au lait at the café near the Ångström laboratory.",
        "Naïve readers think a résumé is a summary; it is, in a way.",
    ],
    ["CAFÉ, RÉSUMÉ and NAÏVE are written in capitals here.", "Crème brûlée is a dessert."],
    ["Straße and Fußgänger are German words.", "İstanbul and Ankara are Turkish cities."],
    ["Η ΟΔΟΣ είναι μακριά.", "Ο δρόμος και οι δρόμοι της πόλης.", "ΣΟΦΟΣ ΑΝΘΡΩΠΟΣ."],
    ["Москва и Санкт-Петербург — большие города.", "Привет, мир!"],
    ["北京大学是中国的一所大学。", "我们在北京学习中文。", "东京和京都是日本的城市。"],
    ["日本語のテキストです。", "ひらがなとカタカナと漢字を使います。"],
    ["한국어 문장도 있습니다.", "서울은 한국의 수도입니다."],
    ["Emoji like 😀 and 👍🏽 appear in chats.", "Flags such as 🇫🇷 are pairs of letters."],
    ["Numbers: 3.14, 2,718 and 1e-9 are common.", "Prices in € and $ differ; 50% off!"],
    ["Quotes “like these” and «these» are punctuation.", "So are dashes — and ellipses…"],
    ["e-mail addresses such as someone@example.com are split.", "URLs: https://example.org/a?b=c"],
    ["The runner's shoes were worn out.", "Running, runners and runs share a stem."],
    ["Mixed text: Latin, Ελληνικά, Кириллица, עברית, العربية, हिन्दी and ไทย."],
    ["A very long word: pneumonoultramicroscopicsilicovolcanoconiosis.", "Supercalifragilistic!"],
    ["The lazy dog sleeps.", "The quick fox runs over the dog again and again."],
    ["Words in a book are counted.", "The counting of pieces decides the vocabulary."],
    ["Accents: àáâãäå èéêë ìíîï òóôõö ùúûü ç ñ.", "ÀÁÂÃÄÅ ÈÉÊË ÌÍÎÏ ÒÓÔÕÖ ÙÚÛÜ Ç Ñ."],
]
HELDOUT_DOCUMENTS = [
    ["The quick runner jumps over the forest dog.", "A zebra ⅋ appears only here."],
    ["Café readers in İstanbul and 北京.", "Ο ΔΡΟΜΟΣ."],
]


def vocab_params(**overrides: object) -> VocabParams:
    values: dict[str, object] = {
        "vocab_size": 700,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 1,
        "limit_alphabet": 400,
        "special_tokens": BERT_SPECIAL_TOKENS,
    }
    values.update(overrides)
    return VocabParams(**values)  # type: ignore[arg-type]


def write_documents(directory: Path, documents: list[list[str]]) -> Path:
    """Ingested documents as ingest writes them: validated Parquet shards."""
    writer = ShardWriter(
        directory,
        DOCUMENT_ARROW_SCHEMA,
        1000,
        validate=lambda frame: validate(DOCUMENTS, frame, str(directory)),
    )
    writer.write_rows(
        [
            {
                "doc_id": hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:16],
                "source": "fixture",
                "sentences": sentences,
            }
            for sentences in documents
        ]
    )
    writer.close()
    return directory


def write_ingested(root: Path, train: list[list[str]], heldout: list[list[str]]) -> Path:
    write_documents(root / "data/ingested/train", train)
    write_documents(root / "data/ingested/heldout", heldout)
    return root


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ingested(tmp_path_factory.mktemp("ingested"), TRAIN_DOCUMENTS, HELDOUT_DOCUMENTS)


@pytest.fixture(scope="module")
def uncased_dir(ingested: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default BERT setup (lowercase, strip accents), trained and written."""
    directory = tmp_path_factory.mktemp("uncased")
    params = vocab_params()
    write_tokenizer(train_tokenizer(ingested / "data/ingested/train", params), directory, params)
    return directory


@pytest.fixture(scope="module")
def cased_vocab(ingested: Path) -> dict[str, int]:
    """A cased vocabulary: capitals and accents survive, so every variant has pieces to find."""
    params = vocab_params(lowercase=False, vocab_size=900)
    return train_tokenizer(ingested / "data/ingested/train", params).get_vocab()


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
    sentence for document in TRAIN_DOCUMENTS + HELDOUT_DOCUMENTS for sentence in document
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
    write_tokenizer(train_tokenizer(tmp_path / "train", params), tmp_path, params)
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


# --- training -----------------------------------------------------------------------------------


def test_training_twice_gives_byte_identical_files(ingested: Path, tmp_path: Path) -> None:
    params = vocab_params(vocab_size=500)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        tokenizer = train_tokenizer(ingested / "data/ingested/train", params)
        write_tokenizer(tokenizer, tmp_path / name, params)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_vocab_txt_lists_special_tokens_first_in_params_order(
    ingested: Path, tmp_path: Path
) -> None:
    specials = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused0]")
    params = vocab_params(special_tokens=specials)
    tokenizer = train_tokenizer(ingested / "data/ingested/train", params)
    write_tokenizer(tokenizer, tmp_path, params)
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert tuple(lines[: len(specials)]) == specials
    assert special_token_ids(load_tokenizer(tmp_path)) == {t: i for i, t in enumerate(specials)}
    assert len(lines) - 1 == tokenizer.get_vocab_size() <= params.vocab_size
    assert len(set(lines[:-1])) == len(lines) - 1


def test_default_layout_puts_pad_at_zero_and_learns_whole_frequent_words(uncased_dir: Path) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    assert special_token_ids(tokenizer) == {
        "[PAD]": 0,
        "[UNK]": 1,
        "[CLS]": 2,
        "[SEP]": 3,
        "[MASK]": 4,
    }
    assert tokenizer.encode("the runner", add_special_tokens=False).tokens[0] == "the"
    vocab = tokenizer.get_vocab()
    assert any(token.startswith("##") and len(token) > 3 for token in vocab)


def test_vocabulary_is_learned_from_training_documents_only(uncased_dir: Path) -> None:
    vocab = load_tokenizer(uncased_dir).get_vocab()
    assert "⅋" not in vocab
    assert "zebra" not in vocab
    assert "z" in vocab


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


def test_limit_alphabet_keeps_the_most_frequent_characters(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [["aaaa bbb cc d"], ["aaaa bbb cc e"], ["ab ab ba"]])
    params = vocab_params(limit_alphabet=2, vocab_size=40)
    vocab = train_tokenizer(tmp_path / "train", params).get_vocab()
    single_characters = {token for token in vocab if len(token) == 1}
    assert single_characters == {"a", "b"}


def test_pairs_are_wrapped_as_cls_a_sep_b_sep_with_segment_ids(uncased_dir: Path) -> None:
    encoding = load_tokenizer(uncased_dir).encode("the dog", "the fox")
    assert encoding.tokens == ["[CLS]", "the", "dog", "[SEP]", "the", "fox", "[SEP]"]
    assert encoding.type_ids == [0, 0, 0, 0, 1, 1, 1]


def test_decoding_joins_continuation_pieces(uncased_dir: Path) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    encoding = tokenizer.encode("the unaffable runners")
    assert any(token.startswith("##") for token in encoding.tokens)
    assert tokenizer.decode(encoding.ids) == "the unaffable runners"


def test_heldout_metrics_count_unknown_tokens_and_tokens_per_word(
    uncased_dir: Path, ingested: Path
) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    metrics = heldout_metrics(tokenizer, ingested / "data/ingested/heldout", batch_size=2)
    sentences = [sentence for document in HELDOUT_DOCUMENTS for sentence in document]
    encodings = [tokenizer.encode(s, add_special_tokens=False).tokens for s in sentences]
    tokens = sum(len(e) for e in encodings)
    words = sum(len(s.split()) for s in sentences)
    assert metrics["heldout_tokens"] == tokens
    assert metrics["heldout_words"] == words
    assert metrics["unk_rate"] == sum(e.count("[UNK]") for e in encodings) / tokens > 0
    assert metrics["tokens_per_word"] == tokens / words
    assert metrics["vocab_size"] == tokenizer.get_vocab_size()


def test_heldout_metrics_of_an_empty_split_are_null(uncased_dir: Path, tmp_path: Path) -> None:
    write_documents(tmp_path / "heldout", [])
    metrics = heldout_metrics(load_tokenizer(uncased_dir), tmp_path / "heldout")
    assert metrics["unk_rate"] is None and metrics["tokens_per_word"] is None


# --- helpers other stages use -------------------------------------------------------------------


def test_vocab_digest_is_the_sha256_of_vocab_txt(uncased_dir: Path, tmp_path: Path) -> None:
    expected = hashlib.sha256((uncased_dir / "vocab.txt").read_bytes()).hexdigest()
    assert vocab_digest(uncased_dir) == expected
    (tmp_path / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert vocab_digest(tmp_path) != expected
    with pytest.raises(BertforgeError, match=r"vocab\.txt"):
        vocab_digest(tmp_path / "missing")


def copy_tokenizer(source: Path, destination: Path) -> Path:
    destination.mkdir()
    for path in source.iterdir():
        (destination / path.name).write_bytes(path.read_bytes())
    return destination


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: [p.unlink() for p in d.iterdir()] and d.rmdir(),
            "tokenizer directory not found",
        ),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json: not found"),
        (lambda d: (d / "vocab.txt").unlink(), "vocab.txt: not found"),
        (lambda d: (d / "tokenizer.json").write_text("{not json"), "not a valid tokenizer"),
        (lambda d: (d / "vocab.txt").write_bytes(b"\xff\xfe[PAD]\n"), "unreadable"),
        (
            lambda d: (d / "vocab.txt").write_text(
                "".join(f"{t}\n" for t in reversed((d / "vocab.txt").read_text().split()))
            ),
            "disagrees with tokenizer.json",
        ),
    ],
    ids=["no directory", "no tokenizer.json", "no vocab.txt", "bad json", "bad utf-8", "mismatch"],
)
def test_load_tokenizer_rejects_missing_or_inconsistent_files_in_one_line(
    uncased_dir: Path, tmp_path: Path, damage, message: str
) -> None:
    directory = copy_tokenizer(uncased_dir, tmp_path / "tokenizer")
    damage(directory)
    with pytest.raises(BertforgeError, match=message) as raised:
        load_tokenizer(directory)
    assert "\n" not in str(raised.value)


def test_transformers_config_names_the_special_tokens_and_bert_flags(uncased_dir: Path) -> None:
    config = json.loads((uncased_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["do_lower_case"] is True and config["strip_accents"] is None
    assert config["tokenize_chinese_chars"] is True and config["model_max_length"] == 512
    assert (config["cls_token"], config["mask_token"]) == ("[CLS]", "[MASK]")
    special_map = json.loads((uncased_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special_map["pad_token"] == "[PAD]"


# --- params -------------------------------------------------------------------------------------


def load_vocab_params(tmp_path: Path, **overrides: object) -> VocabParams:
    section = {
        "vocab_size": 16000,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 2,
        "limit_alphabet": 1000,
        "special_tokens": list(BERT_SPECIAL_TOKENS),
    }
    section.update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"vocab": section}), encoding="utf-8")
    return load_section(VocabParams, "vocab", path)


def test_the_repo_params_are_valid() -> None:
    params = load_section(VocabParams, "vocab", REPO_ROOT / "params.yaml")
    assert params.special_tokens[:5] == BERT_SPECIAL_TOKENS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vocab_size": 1005}, "vocab.vocab_size must exceed the special tokens plus the alphabet"),
        ({"vocab_size": 2_000_000}, "vocab.vocab_size must be at most 1,000,000"),
        ({"min_frequency": 0}, "vocab.min_frequency must be at least 1"),
        ({"limit_alphabet": 0}, "vocab.limit_alphabet must be at least 1"),
        (
            {"special_tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]},
            "must contain [PAD], [UNK], [CLS], [SEP], [MASK] (missing [MASK])",
        ),
        (
            {"special_tokens": [*BERT_SPECIAL_TOKENS, "[PAD]"]},
            "vocab.special_tokens must be unique",
        ),
        ({"special_tokens": [*BERT_SPECIAL_TOKENS, "[a b]"]}, "without whitespace"),
        ({"lowercase": "yes"}, "vocab.lowercase must be true or false"),
        ({"strip_accents": "maybe"}, "vocab.strip_accents must be true or false"),
        ({"vocab_size": 3.5}, "vocab.vocab_size must be an integer"),
        ({"unknown_knob": 1}, "vocab.unknown_knob is not a known parameter"),
    ],
)
def test_params_out_of_range_or_of_wrong_type_are_one_line_errors(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(BertforgeError, match=re.escape(message)) as raised:
        load_vocab_params(tmp_path, **overrides)
    assert "\n" not in str(raised.value)


def test_missing_training_split_names_it_and_suggests_ingest(tmp_path: Path) -> None:
    with pytest.raises(BertforgeError, match=r"data/ingested/train.*dvc repro ingest"):
        train_tokenizer(tmp_path / "data/ingested/train", vocab_params())


def test_a_training_split_without_documents_is_an_error(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [])
    with pytest.raises(BertforgeError, match="no training documents"):
        train_tokenizer(tmp_path / "train", vocab_params())


def test_training_documents_without_any_word_are_an_error(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [["\u200b\u200d"], ["\ufeff"]])
    with pytest.raises(BertforgeError, match="contain no words"):
        train_tokenizer(tmp_path / "train", vocab_params())


def test_missing_heldout_split_is_an_error_before_training(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", TRAIN_DOCUMENTS)
    with pytest.raises(BertforgeError, match=r"heldout: held-out documents not found.*ingest"):
        check_ingested(tmp_path / "train", tmp_path / "heldout")


# --- the stage script ---------------------------------------------------------------------------

STAGE = REPO_ROOT / "stages" / "vocab.py"


def write_params(root: Path, **overrides: object) -> None:
    section = {
        "vocab_size": 500,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 1,
        "limit_alphabet": 400,
        "special_tokens": list(BERT_SPECIAL_TOKENS),
    }
    section.update(overrides)
    (root / "params.yaml").write_text(json.dumps({"vocab": section}), encoding="utf-8")


def run_vocab_stage(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STAGE)], cwd=root, env=stage_env(), capture_output=True, text=True
    )


def test_stage_writes_tokenizer_metrics_and_mlflow_run_identical_to_in_process_training(
    tmp_path: Path, isolated_mlflow: Path
) -> None:
    import mlflow

    write_ingested(tmp_path, TRAIN_DOCUMENTS, HELDOUT_DOCUMENTS)
    write_params(tmp_path)
    result = run_vocab_stage(tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "data/tokenizer"
    metrics = json.loads((tmp_path / "metrics/vocab.json").read_text(encoding="utf-8"))
    assert metrics["vocab_size"] == len((output / "vocab.txt").read_text().splitlines())
    assert 0 < metrics["unk_rate"] < 1 and metrics["tokens_per_word"] >= 1

    params = load_section(VocabParams, "vocab", tmp_path / "params.yaml")
    in_process = tmp_path / "in_process"
    in_process.mkdir()
    write_tokenizer(train_tokenizer(tmp_path / "data/ingested/train", params), in_process, params)
    for name in ("vocab.txt", "tokenizer.json"):
        assert (output / name).read_bytes() == (in_process / name).read_bytes()

    client = mlflow.MlflowClient(f"sqlite:///{isolated_mlflow}")
    experiment = client.get_experiment_by_name("bertforge")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`bertforge.stage` = 'vocab'"
    )
    assert run.data.metrics["vocab_size"] == metrics["vocab_size"]
    assert run.data.params["vocab.vocab_size"] == "500"
    artifacts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "tokenizer")}
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= artifacts


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("vocab_size below alphabet", "params.yaml: vocab.vocab_size must exceed"),
        ("no training split", "data/ingested/train: training documents not found"),
        ("no training documents", "data/ingested/train: no training documents"),
    ],
)
def test_stage_failure_is_one_line_exit_2_and_leaves_previous_tokenizer_intact(
    tmp_path: Path, uncased_dir: Path, breakage: str, message: str
) -> None:
    write_ingested(tmp_path, TRAIN_DOCUMENTS, HELDOUT_DOCUMENTS)
    write_params(tmp_path)
    previous = copy_tokenizer(uncased_dir, tmp_path / "data/tokenizer")
    before = hash_path(previous)
    if breakage == "vocab_size below alphabet":
        write_params(tmp_path, vocab_size=100)
    elif breakage == "no training split":
        for shard in (tmp_path / "data/ingested/train").iterdir():
            shard.unlink()
        (tmp_path / "data/ingested/train").rmdir()
    else:
        (tmp_path / "data/ingested/train/part-00000.parquet").unlink()
        write_documents(tmp_path / "data/ingested/train", [])
    result = run_vocab_stage(tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert hash_path(previous) == before


@pytest.mark.parametrize(
    ("vocab", "expected"),
    [
        ({"[UNK]": 0, "b": 2, "a": 1}, ["[UNK]", "a", "b"]),
        ({"[UNK]": 0, "a": 2}, None),  # a gap at id 1
        ({"[UNK]": 1, "a": 2}, None),  # not from 0
    ],
)
def test_vocab_tokens_lists_the_vocabulary_in_id_order_and_refuses_gaps(vocab, expected):
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    if expected is None:
        with pytest.raises(BertforgeError, match="not contiguous from 0"):
            vocab_tokens(tokenizer)
    else:
        assert vocab_tokens(tokenizer) == expected
