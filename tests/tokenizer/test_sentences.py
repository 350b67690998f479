"""`SentenceTokenizer` gives the ids of whole-sentence encoding, through its word memo and its
ASCII fast path, and leaves the fast path unused when it would disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer, normalizers

from bertforge.tokenizer.files import load_tokenizer
from bertforge.tokenizer.sentences import SentenceTokenizer
from tests.factories import build_vocab, fixture_documents, make_examples_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_examples_project(tmp_path_factory.mktemp("examples-project"))


TRICKY_SENTENCES = [
    "ΟΔΟΣ ΟΔΟΣ. Σ alone, ΑΣ-ΒΣ and ΣΑ.",  # final sigma depends on the letters around it
    "Naïve café, e\u0301 and \u00c5ngstr\u00f6m; İstanbul.",  # accents, combining marks
    "tab\there, nbsp\u00a0x, thin\u2009space, line\u2028sep, para\u2029sep.",
    "ctrl\x01x, unit\x1fsep, nel\x85z, zero\u200bwidth, bom\ufeffz, \ufffdrepl.",
    "double  space,   triple, trailing space ",
    "CJK 中文字 and かな, emoji 🙂, fullwidth ＡＢＣ！",
    "[MASK] literal [SEP] text [CLS]",
    "a-b,c.d!e?f;g:h(i)j[k]l{m}n\"o'p`q~r@s#t$u%v^w&x*y+z=0|1\\2/3<4>5",
    "x" * 250 + " long word",
    "kalomi kalo mi ka lomine sutari povedashu grionelam borquizen fatho",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_sentence_tokenizer_gives_the_ids_of_whole_sentence_encoding(project, tmp_path, lowercase):
    directory = project / "data/tokenizer"
    if not lowercase:
        directory = build_vocab(
            tmp_path / "cased", project / "data/ingested/train", lowercase=False
        )
    tokenizer = load_tokenizer(directory)
    sentences = TRICKY_SENTENCES + [s for d in fixture_documents(50, seed=5) for s in d]
    expected = [e.ids for e in tokenizer.encode_batch(sentences, add_special_tokens=False)]
    memo = SentenceTokenizer(load_tokenizer(directory), np.dtype("uint16"), 40)
    assert memo.fast_path is not None and memo.fast_path.lowercase == lowercase
    for _ in range(2):  # the second time from the memo
        token_ids, lengths = memo.encode(pa.array(sentences))
        assert lengths.tolist() == [len(ids) for ids in expected]
        assert token_ids.tolist() == [i for ids in expected for i in ids]
    for sentence, ids in zip(sentences, expected, strict=True):  # a small memo starts afresh
        assert memo.encode(pa.array([sentence]))[0].tolist() == ids
        assert len(memo.word_number) <= 40 + len(sentence) + 1  # pieces: a character or more


def test_fast_path_is_left_unused_when_it_disagrees_with_the_full_pipeline(project):
    altered = Tokenizer.from_str(load_tokenizer(project / "data/tokenizer").to_str())
    altered.normalizer = normalizers.Sequence([altered.normalizer, normalizers.Replace("e", "a")])
    altered.encode_special_tokens = True
    memo = SentenceTokenizer(altered, np.dtype("uint16"))
    assert memo.fast_path is None
    expected = altered.encode_batch(TRICKY_SENTENCES, add_special_tokens=False)
    assert memo.encode(pa.array(TRICKY_SENTENCES))[0].tolist() == [
        i for encoding in expected for i in encoding.ids
    ]
