"""The BERT tokenizer pipeline and its fast paths, used by the vocab, examples and finetune stages.

`pipeline` builds the pipeline (normalizer → pre-tokenizer → WordPiece → post-processor) whose
tokens equal the original BERT's; `files` writes and loads data/tokenizer (vocab.txt,
tokenizer.json, the transformers configs) and describes it; `sentences` turns sentences into ids
fast (`SentenceTokenizer`, with its ASCII fast path). Three stages import these names, so they
are importable from `bertforge.tokenizer` itself too.
"""

from bertforge.tokenizer.files import (
    SPECIAL_TOKENS_MAP_FILE,
    TOKENIZER_CONFIG_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
    TokenizerInfo,
    inspect_tokenizer,
    load_tokenizer,
    special_token_ids,
    transformers_config,
    vocab_digest,
    vocab_tokens,
    write_tokenizer,
)
from bertforge.tokenizer.pipeline import (
    BERT_SPECIAL_TOKENS,
    CONTINUING_SUBWORD_PREFIX,
    UNK_TOKEN,
    bert_normalizer,
    bert_pre_tokenizer,
    build_tokenizer,
)
from bertforge.tokenizer.sentences import (
    ASCII_PROBE,
    AsciiFastPath,
    SentenceTokenizer,
    ascii_fast_path,
)

__all__ = [
    "ASCII_PROBE",
    "BERT_SPECIAL_TOKENS",
    "CONTINUING_SUBWORD_PREFIX",
    "SPECIAL_TOKENS_MAP_FILE",
    "TOKENIZER_CONFIG_FILE",
    "TOKENIZER_FILE",
    "UNK_TOKEN",
    "VOCAB_FILE",
    "AsciiFastPath",
    "SentenceTokenizer",
    "TokenizerInfo",
    "ascii_fast_path",
    "bert_normalizer",
    "bert_pre_tokenizer",
    "build_tokenizer",
    "inspect_tokenizer",
    "load_tokenizer",
    "special_token_ids",
    "transformers_config",
    "vocab_digest",
    "vocab_tokens",
    "write_tokenizer",
]
