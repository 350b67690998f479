"""WordPiece vocabulary training and the BERT tokenizer pipeline.

The tokenizer is an HF `tokenizers.Tokenizer` built by composition — normalizer → pre-tokenizer
→ WordPiece model → post-processor — whose tokens equal those of the original BERT
(google-research/bert ``tokenization.py``) on any text. HF's ready-made `BertNormalizer` and
`BertPreTokenizer` do not: they drop private-use characters, use Unicode tables older than
Python's, lowercase Σ without the final-sigma rule, strip accents before lowercasing and have a
typo in one CJK range (docs/vocab.md lists every case). So each BERT step is built here from
plain parts over character classes taken from Python's `unicodedata`, the database the
original consults:

1. clean: delete NUL, U+FFFD and control/format characters (Cc, Cf but tab, newline, CR);
   turn every whitespace character into a space;
2. lowercase (if `lowercase`), with Python's final-sigma rule;
3. strip accents (if `strip_accents`, by default when lowercasing): NFD, then drop every
   nonspacing mark (Mn);
4. split on whitespace, isolate each punctuation character (ASCII symbols and Unicode P*),
   and each CJK ideograph (if `tokenize_chinese_chars`);
5. WordPiece: greedy longest-match-first with ``##`` continuations; a word of more than 200
   characters, or one the vocabulary cannot cover, is one [UNK].

Training streams the ingested training sentences into HF's WordPiece trainer. That trainer
numbers the first ``##c`` pieces in hash-map order, which breaks count ties differently from run
to run; `train_tokenizer` fixes the alphabet and those pieces beforehand (a first, counting pass)
so that the same corpus and params give the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.params import require
from bertforge.shards import count_rows, iter_batches

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
UNK_TOKEN = "[UNK]"
CONTINUING_SUBWORD_PREFIX = "##"
MAX_INPUT_CHARS_PER_WORD = 200  # the original BERT's; HF's WordPiece default is 100
MODEL_MAX_LENGTH = 512
LARGEST_VOCAB_SIZE = 1_000_000  # HF's trainer reserves memory for vocab_size tokens up front

VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

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

# The roles transformers gives the special tokens (special_tokens_map.json).
SPECIAL_TOKEN_ROLES = {
    "[PAD]": "pad_token",
    "[UNK]": "unk_token",
    "[CLS]": "cls_token",
    "[SEP]": "sep_token",
    "[MASK]": "mask_token",
}


# --- params -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VocabParams:
    """params.yaml `vocab`: the WordPiece trainer and the BERT text pipeline."""

    vocab_size: int
    lowercase: bool
    strip_accents: bool | None  # None: strip exactly when lowercasing, as BERT does
    tokenize_chinese_chars: bool
    min_frequency: int
    limit_alphabet: int
    special_tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        require(
            self.limit_alphabet >= 1, "limit_alphabet", "must be at least 1", self.limit_alphabet
        )
        require(self.min_frequency >= 1, "min_frequency", "must be at least 1", self.min_frequency)
        missing = [token for token in BERT_SPECIAL_TOKENS if token not in self.special_tokens]
        require(
            not missing,
            "special_tokens",
            f"must contain {', '.join(BERT_SPECIAL_TOKENS)} (missing {', '.join(missing)})",
            list(self.special_tokens),
        )
        duplicates = sorted({t for t in self.special_tokens if self.special_tokens.count(t) > 1})
        require(not duplicates, "special_tokens", "must be unique", duplicates)
        malformed = [t for t in self.special_tokens if not t or t != "".join(t.split())]
        require(not malformed, "special_tokens", "must be non-empty, without whitespace", malformed)
        smallest = len(self.special_tokens) + self.limit_alphabet
        require(
            self.vocab_size > smallest,
            "vocab_size",
            f"must exceed the special tokens plus the alphabet (len(special_tokens) + "
            f"limit_alphabet = {smallest})",
            self.vocab_size,
        )
        require(
            self.vocab_size <= LARGEST_VOCAB_SIZE,
            "vocab_size",
            f"must be at most {LARGEST_VOCAB_SIZE:,}",
            self.vocab_size,
        )

    @property
    def strips_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents


# --- the BERT text pipeline ----------------------------------------------------------------------


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


def _is_punctuation(char: str) -> bool:
    """Every non-alphanumeric printable ASCII character, and Unicode punctuation (P*)."""
    code_point = ord(char)
    if 33 <= code_point <= 47 or 58 <= code_point <= 64:
        return True
    if 91 <= code_point <= 96 or 123 <= code_point <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk_ideograph(char: str) -> bool:
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
        if _is_punctuation(char):
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
    steps = clean_text_steps()
    if lowercase:
        steps += lowercase_steps()
    if strip_accents:
        steps += strip_accents_steps()
    return normalizers.Sequence(steps)


def bert_pre_tokenizer(tokenize_chinese_chars: bool) -> pre_tokenizers.PreTokenizer:
    """Whitespace split, then every punctuation character (and CJK ideograph) on its own."""
    classes = _character_classes()
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


# --- training ------------------------------------------------------------------------------------


def require_split(directory: Path, split: str) -> int:
    """The number of documents in an ingested split; a missing split is a one-line error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BertforgeError(f"{directory}: {split} documents not found (run `dvc repro ingest`)")
    return count_rows(directory)


def require_training_documents(train_dir: Path) -> None:
    if require_split(train_dir, "training") == 0:
        raise BertforgeError(
            f"{train_dir}: no training documents (check the ingest sources and filters)"
        )


def check_ingested(train_dir: Path, heldout_dir: Path) -> None:
    """Fail early, in one line, when ingest has not run or left nothing to train on."""
    require_training_documents(train_dir)
    require_split(heldout_dir, "held-out")


def iter_sentences(directory: Path, description: str) -> Iterator[str]:
    """Stream the sentences of an ingested split, a record batch at a time, with a progress bar."""
    total = count_rows(directory)
    with tqdm(total=total, desc=description, unit="doc", file=sys.stderr) as progress:
        for batch in iter_batches(directory, columns=["sentences"]):
            documents = batch.column("sentences").to_pylist()
            for sentences in documents:
                yield from sentences
            progress.update(len(documents))


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class Alphabet:
    """The characters the trainer starts from, and those that also start ``##`` pieces."""

    characters: tuple[str, ...]
    continuations: tuple[str, ...]


def count_alphabet(
    normalized_texts: Iterable[str], limit: int, tokenize_chinese_chars: bool
) -> Alphabet:
    """The `limit` most frequent characters of the training words (ties: lowest code point).

    HF's trainer would pick the same characters but break frequency ties, and number the
    ``##c`` pieces, in hash-map order; fixing both here makes training deterministic. It reads
    normalized text, where the pre-tokenizer only drops spaces and cuts around punctuation and
    CJK ideographs: a character continues a word exactly when it follows a character that is
    none of those, and is none itself. (Far faster than pre-tokenizing in Python.)
    """
    frequencies: Counter[str] = Counter()
    neighbours: set[tuple[str, str]] = set()
    for text in normalized_texts:
        frequencies.update(text)
        neighbours.update(itertools.pairwise(text))
    frequencies.pop(" ", None)

    def inside_words(char: str) -> bool:
        isolated = _is_punctuation(char) or (tokenize_chinese_chars and _is_cjk_ideograph(char))
        return char != " " and not isolated

    continuing = {after for before, after in neighbours if inside_words(before)}
    ranked = sorted(frequencies, key=lambda char: (-frequencies[char], char))
    kept = sorted(ranked[:limit])
    return Alphabet(
        tuple(kept), tuple(char for char in kept if char in continuing and inside_words(char))
    )


def train_tokenizer(train_dir: Path, params: VocabParams) -> Tokenizer:
    """Train a WordPiece vocabulary on the ingested training sentences; deterministic.

    Two streaming passes: one counts the alphabet, one feeds HF's trainer. The vocabulary
    lists the special tokens first (in params order), then the fixed ``##c`` pieces, the
    alphabet and the learned pieces.
    """
    train_dir = Path(train_dir)
    require_training_documents(train_dir)
    normalizer = bert_normalizer(params.lowercase, params.strips_accents)
    normalized = map(normalizer.normalize_str, iter_sentences(train_dir, "vocab: alphabet"))
    alphabet = count_alphabet(normalized, params.limit_alphabet, params.tokenize_chinese_chars)
    if not alphabet.characters:
        raise BertforgeError(f"{train_dir}: the training documents contain no words to learn from")
    fixed_pieces = [CONTINUING_SUBWORD_PREFIX + char for char in alphabet.continuations]
    trainer = trainers.WordPieceTrainer(
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        limit_alphabet=len(alphabet.characters),
        initial_alphabet=list(alphabet.characters),
        special_tokens=[*params.special_tokens, *fixed_pieces],
        continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX,
        show_progress=False,
    )
    scratch = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    scratch.normalizer = normalizer
    scratch.pre_tokenizer = bert_pre_tokenizer(params.tokenize_chinese_chars)
    scratch.train_from_iterator(iter_sentences(train_dir, "vocab: train"), trainer=trainer)
    # The ##c pieces went in as special tokens only to fix their ids: rebuild without that.
    return build_tokenizer(scratch.get_vocab(with_added_tokens=False), params)


# --- files ---------------------------------------------------------------------------------------


def vocab_tokens(tokenizer: Tokenizer) -> list[str]:
    """The vocabulary in id order; ids must be 0..n-1 without gaps."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens: list[str | None] = [None] * len(vocab)
    for token, index in vocab.items():
        if not 0 <= index < len(tokens) or tokens[index] is not None:
            raise BertforgeError("tokenizer vocabulary ids are not contiguous from 0")
        tokens[index] = token
    return tokens  # every slot filled: as many distinct ids in range as slots


def transformers_config(params: VocabParams) -> dict[str, Any]:
    """tokenizer_config.json: what `transformers.AutoTokenizer.from_pretrained` needs.

    `PreTrainedTokenizerFast` loads tokenizer.json as it is; transformers' `BertTokenizer`
    would rebuild the pipeline from these flags with HF's `BertNormalizer` and a 100-character
    word limit, and so differ from BERT where docs/vocab.md says. The BERT flags are recorded
    for people and tools that read them.
    """
    extra = [token for token in params.special_tokens if token not in SPECIAL_TOKEN_ROLES]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": params.lowercase,
        "strip_accents": params.strip_accents,
        "tokenize_chinese_chars": params.tokenize_chinese_chars,
        "model_max_length": MODEL_MAX_LENGTH,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        **{role: token for token, role in SPECIAL_TOKEN_ROLES.items()},
        "additional_special_tokens": extra,
    }


def write_tokenizer(tokenizer: Tokenizer, directory: Path, params: VocabParams) -> None:
    """Write vocab.txt, tokenizer.json and the transformers configs into `directory`."""
    directory = Path(directory)
    tokens = vocab_tokens(tokenizer)
    unsafe = [token for token in tokens if len(token.splitlines()) != 1]
    if unsafe:
        raise BertforgeError(f"vocabulary token {unsafe[0]!r} cannot be written one per line")
    (directory / VOCAB_FILE).write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    tokenizer.save(str(directory / TOKENIZER_FILE), pretty=True)
    config = transformers_config(params)
    special_map = {role: config[role] for role in SPECIAL_TOKEN_ROLES.values()}
    special_map["additional_special_tokens"] = config["additional_special_tokens"]
    for name, payload in ((TOKENIZER_CONFIG_FILE, config), (SPECIAL_TOKENS_MAP_FILE, special_map)):
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (directory / name).write_text(text, encoding="utf-8")


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer of a vocab output (or of an export holding its files), checked.

    A missing or unreadable directory, tokenizer.json or vocab.txt, a vocab.txt that does not
    list tokenizer.json's vocabulary in id order, or a missing BERT special token is a one-line
    `BertforgeError`. Literal special-token strings in the text are tokenized as text, as the
    original BERT does (transformers' convention of matching them is off).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BertforgeError(f"{directory}: tokenizer directory not found (run `dvc repro vocab`)")
    tokenizer_path, vocab_path = directory / TOKENIZER_FILE, directory / VOCAB_FILE
    for path in (tokenizer_path, vocab_path):
        if not path.is_file():
            raise BertforgeError(f"{path}: not found (run `dvc repro vocab`)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as error:  # tokenizers raises a bare Exception on a malformed file
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertforgeError(f"{tokenizer_path}: not a valid tokenizer ({first_line})") from None
    try:
        listed = vocab_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise BertforgeError(f"{vocab_path}: unreadable ({error})") from None
    if listed and listed[-1] == "":
        listed.pop()
    actual = vocab_tokens(tokenizer)
    if listed != actual:
        index = next(
            (i for i, (a, b) in enumerate(zip(listed, actual, strict=False)) if a != b),
            min(len(listed), len(actual)),
        )
        raise BertforgeError(
            f"{vocab_path}: disagrees with {TOKENIZER_FILE} ({len(listed)} vs {len(actual)} "
            f"tokens, first difference at id {index})"
        )
    special = special_token_ids(tokenizer)
    missing = [token for token in BERT_SPECIAL_TOKENS if token not in special]
    if missing:
        raise BertforgeError(f"{tokenizer_path}: special token {missing[0]} is missing")
    tokenizer.encode_special_tokens = True
    return tokenizer


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The special tokens and their ids, e.g. ``{"[PAD]": 0, "[UNK]": 1, ...}``."""
    return {
        token.content: index
        for index, token in sorted(tokenizer.get_added_tokens_decoder().items())
        if token.special
    }


def vocab_digest(directory: Path) -> str:
    """sha256 of vocab.txt: later stages record it to prove they used the same vocabulary."""
    path = Path(directory) / VOCAB_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise BertforgeError(f"{path}: unreadable ({error.strerror})") from None


# --- metrics -------------------------------------------------------------------------------------


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
