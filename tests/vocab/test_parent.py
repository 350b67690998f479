"""vocab.init_from and vocab.extend_with: a parent's WordPiece vocabulary, ids unchanged, its
normalisation checked against the params; domain pieces appended after the parent's ids."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

from bertforge.errors import BertforgeError
from bertforge.params import parse
from bertforge.parent import ParentSpec
from bertforge.tokenizer.files import load_tokenizer, write_tokenizer
from bertforge.vocab.extend import VocabExtension, parent_pieces
from bertforge.vocab.params import VocabParams
from bertforge.vocab.parent import load_parent_vocabulary, tokenizer_from_parent
from tests.continued import (
    DOMAIN_DOCUMENTS,
    parent_vocab_params,
    write_parent_tokenizer,
)
from tests.factories import VOCAB_HELDOUT_DOCUMENTS, write_ingested


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our own tokenizer files, trained on the general fixture documents."""
    directory = tmp_path_factory.mktemp("parent")
    write_parent_tokenizer(directory, tmp_path_factory.mktemp("general"))
    return directory


@pytest.fixture(scope="module")
def domain_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_ingested(
        tmp_path_factory.mktemp("domain"), DOMAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS
    )
    return root / "data/ingested/train"


def from_parent(directory: Path, **overrides: object) -> VocabParams:
    return parent_vocab_params(init_from=ParentSpec(path=str(directory)), **overrides)


def tokens_of(directory: Path) -> list[str]:
    return (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()


def test_parent_vocabulary_is_written_with_every_id_unchanged(
    parent_dir: Path, domain_train: Path, tmp_path: Path
) -> None:
    params = from_parent(parent_dir)
    vocabulary = load_parent_vocabulary(params)
    tokenizer, extension = tokenizer_from_parent(vocabulary, domain_train, params)
    write_tokenizer(tokenizer, tmp_path, params)
    assert extension is None
    assert tokens_of(tmp_path) == tokens_of(parent_dir)
    assert load_tokenizer(tmp_path).get_vocab() == load_tokenizer(parent_dir).get_vocab()
    assert vocabulary.parent.identity["path"] == str(parent_dir)
    assert len(vocabulary.parent.identity["sha256"]) == 64


def test_a_transformers_style_parent_is_read_from_its_bert_normalizer(tmp_path: Path) -> None:
    """A tokenizer.json with HF's BertNormalizer and no tokenizer_config.json (as on the hub)."""
    trained = BertWordPieceTokenizer(lowercase=False)
    trained.train_from_iterator(
        [" ".join(s) for d in DOMAIN_DOCUMENTS for s in d], vocab_size=120, show_progress=False
    )
    trained.save(str(tmp_path / "tokenizer.json"))
    cased = load_parent_vocabulary(from_parent(tmp_path, lowercase=False))
    assert cased.normalisation.lowercase is False
    assert "BertNormalizer" in cased.normalisation.source
    with pytest.raises(BertforgeError) as error:
        load_parent_vocabulary(from_parent(tmp_path, lowercase=True))
    assert str(error.value).startswith("params.yaml: vocab.lowercase is true, but the parent")
    assert "set vocab.lowercase: false" in str(error.value)


def test_a_lowercase_mismatch_names_the_param(parent_dir: Path) -> None:
    with pytest.raises(BertforgeError, match=r"vocab\.lowercase is false, but the parent"):
        load_parent_vocabulary(from_parent(parent_dir, lowercase=False, strip_accents=True))


def test_a_bpe_tokenizer_is_refused(tmp_path: Path) -> None:
    """RoBERTa's and GPT-2's byte-level BPE is not BERT's WordPiece."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["some text to learn from"] * 10, vocab_size=300, show_progress=False)
    bpe.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(BertforgeError, match=r"a BPE tokenizer, not BERT's WordPiece"):
        load_parent_vocabulary(from_parent(tmp_path))


def test_a_directory_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    (tmp_path / "vocab.json").write_text("{}")  # GPT-2's files, not BERT's
    with pytest.raises(BertforgeError, match=r"has no BERT WordPiece tokenizer"):
        load_parent_vocabulary(from_parent(tmp_path))


def test_a_missing_directory_names_the_param(tmp_path: Path) -> None:
    with pytest.raises(BertforgeError) as error:
        load_parent_vocabulary(from_parent(tmp_path / "nowhere"))
    assert str(error.value) == (
        f"params.yaml: vocab.init_from.path {tmp_path / 'nowhere'}: directory not found"
    )


def test_extension_appends_domain_pieces_after_every_parent_id(
    parent_dir: Path, domain_train: Path, tmp_path: Path
) -> None:
    params = from_parent(parent_dir, extend_with=5, min_frequency=2)
    tokenizer, extension = tokenizer_from_parent(
        load_parent_vocabulary(params), domain_train, params
    )
    write_tokenizer(tokenizer, tmp_path, params)
    parent_tokens, tokens = tokens_of(parent_dir), tokens_of(tmp_path)
    assert extension is not None and len(extension.added) == 5
    assert tokens[: len(parent_tokens)] == parent_tokens
    added = tokens[len(parent_tokens) :]
    assert added == [piece.token for piece in extension.added]
    assert not set(added) & set(parent_tokens)
    counts = [piece.count for piece in extension.added]
    assert counts == sorted(counts, reverse=True) and min(counts) >= 2
    # each new piece is spelled by the parent pieces recorded for it
    for piece in extension.added:
        spelled = "".join(parent_tokens[i].removeprefix("##") for i in piece.parent_pieces)
        assert spelled == piece.token.removeprefix("##")
    # and the domain words now take fewer pieces than under the parent
    text = " ".join(DOMAIN_DOCUMENTS[0])
    ours = load_tokenizer(tmp_path).encode(text, add_special_tokens=False).ids
    theirs = load_tokenizer(parent_dir).encode(text, add_special_tokens=False).ids
    assert len(ours) < len(theirs)


def test_extension_is_deterministic_and_round_trips(
    parent_dir: Path, domain_train: Path, tmp_path: Path
) -> None:
    params = from_parent(parent_dir, extend_with=4, min_frequency=2)
    runs = [
        tokenizer_from_parent(load_parent_vocabulary(params), domain_train, params)[1]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    runs[0].write(tmp_path)
    assert VocabExtension.read(tmp_path) == runs[0]
    assert json.loads((tmp_path / "vocab_extension.json").read_text())["parent_vocab_size"] == len(
        tokens_of(parent_dir)
    )


def test_extend_with_more_than_the_corpus_offers_is_an_error(
    parent_dir: Path, domain_train: Path
) -> None:
    params = from_parent(parent_dir, extend_with=10_000, min_frequency=2)
    with pytest.raises(BertforgeError) as error:
        tokenizer_from_parent(load_parent_vocabulary(params), domain_train, params)
    message = str(error.value)
    assert message.startswith("params.yaml: vocab.extend_with is 10000, but the corpus offers only")
    assert "lower vocab.extend_with to at most" in message


def test_extend_with_needs_a_parent() -> None:
    values = dataclasses.asdict(parent_vocab_params()) | {"extend_with": 3, "init_from": None}
    with pytest.raises(BertforgeError, match=r"vocab\.extend_with needs vocab\.init_from"):
        parse(VocabParams, values, "params.yaml: vocab")


def test_a_hub_parent_needs_a_pinned_revision() -> None:
    values = dataclasses.asdict(parent_vocab_params()) | {"init_from": {"hub": "bert-base-uncased"}}
    with pytest.raises(BertforgeError, match=r"vocab\.init_from\.revision must pin the hub model"):
        parse(VocabParams, values, "params.yaml: vocab")


def test_parent_pieces_follow_bert_greedy_longest_match() -> None:
    ids = {
        token: index
        for index, token in enumerate(
            ["[UNK]", "photo", "ph", "##oto", "##s", "##yn", "##the", "##sis", "##is"]
        )
    }
    assert parent_pieces("photosynthesis", ids) == (
        ids["photo"],
        ids["##s"],
        ids["##yn"],
        ids["##the"],
        ids["##sis"],
    )
    assert parent_pieces("##synthesis", ids) == (
        ids["##s"],
        ids["##yn"],
        ids["##the"],
        ids["##sis"],
    )
    assert parent_pieces("photoq", ids) == (ids["[UNK]"],)
