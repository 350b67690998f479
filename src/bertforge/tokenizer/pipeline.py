"""The BERT tokenizer pipeline, built by composition: normalizer → pre-tokenizer → WordPiece.

Its tokens equal those of the original BERT (google-research/bert ``tokenization.py``) on any
text. HF's ready-made `BertNormalizer` and `BertPreTokenizer` do not: they drop private-use
characters, use Unicode tables older than Python's, lowercase Σ without the final-sigma rule,
strip accents before lowercasing and have a typo in one CJK range (docs/vocab.md lists every
case). So each BERT step is built here from plain parts over character classes taken from
Python's `unicodedata`, the database the original consults:

1. clean: delete NUL, U+FFFD and control/format characters (Cc, Cf but tab, newline, CR);
   turn every whitespace character into a space;
2. lowercase (if `lowercase`), with Python's final-sigma rule;
3. strip accents (if `strip_accents`, by default when lowercasing): NFD, then drop every
   nonspacing mark (Mn);
4. split on whitespace, isolate each punctuation character (ASCII symbols and Unicode P*),
   and each CJK ideograph (if `tokenize_chinese_chars`);
5. WordPiece: greedy longest-match-first with ``##`` continuations; a word of more than 200
   characters, or one the vocabulary cannot cover, is one [UNK].
"""

from __future__ import annotations

import functools
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

if TYPE_CHECKING:
    from bertforge.vocab.params import VocabParams

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
UNK_TOKEN = "[UNK]"
CONTINUING_SUBWORD_PREFIX = "##"
MAX_INPUT_CHARS_PER_WORD = 200  # the original BERT's; HF's WordPiece default is 100

# The CJK Unified Ideographs blocks exactly as the original `_is_chinese_char` lists them.
CJK_IDEOGRAPH_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _assigned_characters() -> Iterator[str]:
    """Every code point that has a Unicode category other than unassigned, surrogate, private."""
    for code_point in range(sys.maxunicode + 1):
        char = chr(code_point)
        if unicodedata.category(char) not in ("Cn", "Cs", "Co"):
            yield char


def _character_class(code_points: Iterable[int]) -> str:
    """A regex character class (Oniguruma syntax) matching exactly `code_points`."""
    ranges: list[list[int]] = []
    for code_point in sorted(set(code_points)):
        if ranges and ranges[-1][1] == code_point - 1:
            ranges[-1][1] = code_point
        else:
            ranges.append([code_point, code_point])
    parts = [
        f"\\x{{{low:X}}}" if low == high else f"\\x{{{low:X}}}-\\x{{{high:X}}}"
        for low, high in ranges
    ]
    return f"[{''.join(parts)}]"


def _is_removed(char: str) -> bool:
    """The original's `_clean_text` deletes NUL, U+FFFD and Cc/Cf except tab, newline and CR."""
    if char in "\t\n\r":
        return False
    return ord(char) in (0, 0xFFFD) or unicodedata.category(char) in ("Cc", "Cf")


def _is_whitespace(char: str) -> bool:
    """Space, tab, newline, CR and Zs, plus what Python's `str.split` also splits on."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs" or char.isspace()


def _is_other_whitespace(char: str) -> bool:
    """Whitespace the clean step turns into a space: all of it but the space itself."""
    return char != " " and _is_whitespace(char)


def is_punctuation(char: str) -> bool:
    """Every non-alphanumeric printable ASCII character, and Unicode punctuation (P*)."""
    code_point = ord(char)
    if 33 <= code_point <= 47 or 58 <= code_point <= 64:
        return True
    if 91 <= code_point <= 96 or 123 <= code_point <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_cjk_ideograph(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in CJK_IDEOGRAPH_RANGES)


def _is_cased(char: str) -> bool:
    """Unicode `Cased`, read off Python's own final-sigma rule: Σ after it is word-final."""
    return (char + "Σ").lower()[-1] == "ς"


def _is_case_ignorable(char: str) -> bool:
    """Unicode `Case_Ignorable`, read off the same rule: Σ stays medial across it."""
    return not _is_cased(char) and ("AΣ" + char + "B").lower()[1] == "σ"


@dataclass(frozen=True)
class _CharacterClasses:
    removed: str
    whitespace: str
    punctuation: str
    cjk_ideograph: str
    nonspacing_mark: str
    cased: str
    case_ignorable: str


@functools.cache
def _character_classes() -> _CharacterClasses:
    """The character classes of BERT's steps, from this Python's `unicodedata` (built once)."""
    removed: list[int] = [0xFFFD]
    whitespace, punctuation, nonspacing, cased, ignorable = [], [], [], [], []
    for char in _assigned_characters():
        code_point = ord(char)
        if _is_removed(char):
            removed.append(code_point)
        elif _is_other_whitespace(char):
            whitespace.append(code_point)
        if is_punctuation(char):
            punctuation.append(code_point)
        if unicodedata.category(char) == "Mn":
            nonspacing.append(code_point)
        if _is_cased(char):
            cased.append(code_point)
        elif _is_case_ignorable(char):
            ignorable.append(code_point)
    cjk = [code for low, high in CJK_IDEOGRAPH_RANGES for code in range(low, high + 1)]
    return _CharacterClasses(
        removed=_character_class(removed),
        whitespace=_character_class(whitespace),
        punctuation=_character_class(punctuation),
        cjk_ideograph=_character_class(cjk),
        nonspacing_mark=_character_class(nonspacing),
        cased=_character_class(cased),
        case_ignorable=_character_class(ignorable),
    )


@functools.cache
def _decompositions_unknown_to_hf() -> tuple[tuple[str, str], ...]:
    """Characters whose canonical decomposition HF's (older) NFD tables lack, with Python's."""
    hf_nfd = normalizers.NFD()
    missing = []
    for char in _assigned_characters():
        decomposition = unicodedata.decomposition(char)
        if decomposition and not decomposition.startswith("<"):
            expected = unicodedata.normalize("NFD", char)
            if hf_nfd.normalize_str(char) != expected:
                missing.append((char, expected))
    return tuple(missing)


def clean_text_steps() -> list[normalizers.Normalizer]:
    """BERT's `_clean_text`: delete controls, NUL and U+FFFD; every whitespace becomes a space."""
    classes = _character_classes()
    return [
        normalizers.Replace(Regex(classes.removed), ""),
        normalizers.Replace(Regex(classes.whitespace), " "),
    ]


def lowercase_steps() -> list[normalizers.Normalizer]:
    """Python's `str.lower`: HF's `Lowercase` maps each character alone, so the word-final Σ
    (preceded by a cased letter, not followed by one, case-ignorables skipped) is done first."""
    classes = _character_classes()
    final_sigma = (
        f"(?<={classes.cased}{classes.case_ignorable}*)\u03a3"
        f"(?!{classes.case_ignorable}*{classes.cased})"
    )
    return [normalizers.Replace(Regex(final_sigma), "\u03c2"), normalizers.Lowercase()]


def strip_accents_steps() -> list[normalizers.Normalizer]:
    """BERT's `_run_strip_accents`: NFD, then delete nonspacing marks (Mn)."""
    newer_decompositions = [
        normalizers.Replace(char, decomposed)
        for char, decomposed in _decompositions_unknown_to_hf()
    ]
    return [
        *newer_decompositions,
        normalizers.NFD(),
        normalizers.Replace(Regex(_character_classes().nonspacing_mark), ""),
    ]


def bert_normalizer(lowercase: bool, strip_accents: bool) -> normalizers.Normalizer:
    """Clean, then lowercase, then strip accents — the original's order."""
    # clean (drop controls, map whitespace), then lowercase, then strip accents
    steps = clean_text_steps()
    if lowercase:
        steps += lowercase_steps()
    if strip_accents:
        steps += strip_accents_steps()
    return normalizers.Sequence(steps)


def bert_pre_tokenizer(tokenize_chinese_chars: bool) -> pre_tokenizers.PreTokenizer:
    """Whitespace split, then every punctuation character (and CJK ideograph) on its own."""
    classes = _character_classes()
    # split on whitespace, then isolate every punctuation character (and each CJK ideograph)
    steps = [
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(classes.punctuation), behavior="isolated"),
    ]
    if tokenize_chinese_chars:
        steps.append(pre_tokenizers.Split(Regex(classes.cjk_ideograph), behavior="isolated"))
    return pre_tokenizers.Sequence(steps)


def build_tokenizer(vocab: dict[str, int], params: VocabParams) -> Tokenizer:
    """The full pipeline around a WordPiece vocabulary (token → id) holding the special tokens."""
    tokenizer = Tokenizer(
        models.WordPiece(
            vocab,
            unk_token=UNK_TOKEN,
            max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD,
            continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX,
        )
    )
    tokenizer.normalizer = bert_normalizer(params.lowercase, params.strips_accents)
    tokenizer.pre_tokenizer = bert_pre_tokenizer(params.tokenize_chinese_chars)
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUING_SUBWORD_PREFIX)
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in params.special_tokens]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.encode_special_tokens = True
    return tokenizer
