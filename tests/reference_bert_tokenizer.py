"""An independent, pure-Python BERT tokenizer, written from google-research/bert tokenization.py.

Used only by the tests, as the yardstick for `bertforge.vocab`: whatever HF `tokenizers` does,
our tokenizer must produce exactly the tokens this module produces. It follows the original
algorithm step by step and calls nothing from HF:

BasicTokenizer
    1. clean text: drop NUL, U+FFFD and control characters (categories Cc and Cf, except tab,
       newline and carriage return, which are whitespace); turn whitespace (space, tab, newline,
       carriage return, category Zs) into a space;
    2. put spaces around CJK ideographs (the original's eight code point ranges);
    3. split on whitespace (Python's `str.split`);
    4. per word: if lowercasing, lowercase (Python's `str.lower`, so final sigma and İ behave as
       in the original), then NFD and drop nonspacing marks (Mn);
    5. split every punctuation character off as its own token (ASCII 33–47, 58–64, 91–96,
       123–126 and every Unicode category P*).
WordpieceTokenizer
    greedy longest-match-first over each word, continuation pieces prefixed ``##``; a word longer
    than `max_input_chars_per_word` (200 in the original) or with no full cover is one ``[UNK]``.

Two options beyond the original, with the meaning transformers gives them: `strip_accents`
(None: strip exactly when lowercasing, which is the original) and `tokenize_chinese_chars`
(True in the original).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container

ORIGINAL_MAX_INPUT_CHARS_PER_WORD = 200

# The CJK Unified Ideographs blocks, exactly as in the original `_is_chinese_char`.
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


def is_whitespace(char: str) -> bool:
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char: str) -> bool:
    code_point = ord(char)
    if 33 <= code_point <= 47 or 58 <= code_point <= 64:
        return True
    if 91 <= code_point <= 96 or 123 <= code_point <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_chinese_char(code_point: int) -> bool:
    return any(low <= code_point <= high for low, high in CJK_IDEOGRAPH_RANGES)


def whitespace_tokenize(text: str) -> list[str]:
    return text.strip().split()


class BasicTokenizer:
    """Cleaning, CJK spacing, lowercasing, accent stripping and punctuation splitting."""

    def __init__(
        self,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
    ) -> None:
        self.do_lower_case = do_lower_case
        self.strip_accents = do_lower_case if strip_accents is None else strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars

    def tokenize(self, text: str) -> list[str]:
        text = self.clean_text(text)
        if self.tokenize_chinese_chars:
            text = self.space_chinese_chars(text)
        split_tokens: list[str] = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = token.lower()
            if self.strip_accents:
                token = self.run_strip_accents(token)
            split_tokens.extend(self.run_split_on_punctuation(token))
        return whitespace_tokenize(" ".join(split_tokens))

    @staticmethod
    def clean_text(text: str) -> str:
        output = []
        for char in text:
            if ord(char) in (0, 0xFFFD) or is_control(char):
                continue
            output.append(" " if is_whitespace(char) else char)
        return "".join(output)

    @staticmethod
    def space_chinese_chars(text: str) -> str:
        return "".join(f" {char} " if is_chinese_char(ord(char)) else char for char in text)

    @staticmethod
    def run_strip_accents(text: str) -> str:
        decomposed = unicodedata.normalize("NFD", text)
        return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")

    @staticmethod
    def run_split_on_punctuation(text: str) -> list[str]:
        pieces: list[list[str]] = []
        start_new_word = True
        for char in text:
            if is_punctuation(char):
                pieces.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    pieces.append([])
                start_new_word = False
                pieces[-1].append(char)
        return ["".join(piece) for piece in pieces]


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece over whitespace-separated words."""

    def __init__(
        self,
        vocab: Container[str],
        unk_token: str = "[UNK]",
        max_input_chars_per_word: int = ORIGINAL_MAX_INPUT_CHARS_PER_WORD,
    ) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text: str) -> list[str]:
        output_tokens: list[str] = []
        for word in whitespace_tokenize(text):
            if len(word) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            pieces: list[str] = []
            start = 0
            while start < len(word):
                end = len(word)
                match = None
                while start < end:
                    candidate = word[start:end] if start == 0 else "##" + word[start:end]
                    if candidate in self.vocab:
                        match = candidate
                        break
                    end -= 1
                if match is None:
                    pieces = [self.unk_token]
                    break
                pieces.append(match)
                start = end
            output_tokens.extend(pieces)
        return output_tokens


class FullTokenizer:
    """BasicTokenizer then WordpieceTokenizer, with a vocab.txt (one token per line, id order)."""

    def __init__(
        self,
        vocab_tokens: list[str],
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
    ) -> None:
        self.vocab = {token: index for index, token in enumerate(vocab_tokens)}
        self.basic_tokenizer = BasicTokenizer(do_lower_case, strip_accents, tokenize_chinese_chars)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, unk_token)

    @classmethod
    def from_vocab_file(cls, path: str, **options: object) -> FullTokenizer:
        with open(path, encoding="utf-8") as handle:
            tokens = [line.rstrip("\n") for line in handle]
        return cls(tokens, **options)  # type: ignore[arg-type]

    def tokenize(self, text: str) -> list[str]:
        return [
            piece
            for word in self.basic_tokenizer.tokenize(text)
            for piece in self.wordpiece_tokenizer.tokenize(word)
        ]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab[token] for token in tokens]
