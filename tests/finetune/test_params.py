"""FinetuneParams: task specs parsed, unknown tasks and bad combinations refused."""

from __future__ import annotations

import dataclasses

import pytest

from bertforge.errors import BertforgeError
from bertforge.finetune.params import FinetuneParams
from bertforge.finetune.tasks import TaskSpec
from bertforge.params import load_params
from tests.factories import tiny_finetune_params
from tests.support import REPO_ROOT


def test_params_parse_each_task_spec_and_name_a_bad_task_key(project):
    _, specs = project
    params = tiny_finetune_params(specs)
    assert isinstance(params.task("sentiment"), TaskSpec)
    bad = specs | {"broken": {"source": "embedded", "path": "x", "kind": "classification"}}
    with pytest.raises(BertforgeError, match=r"^params.yaml: finetune.tasks.broken.text_columns"):
        tiny_finetune_params(bad)


def test_a_task_not_in_params_is_a_one_line_error_listing_the_known_tasks(project):
    with pytest.raises(BertforgeError, match=r"has no task 'nosuch' \(known: sentiment, similar\)"):
        tiny_finetune_params(project[1]).task("nosuch")


def test_frozen_layers_need_the_freeze_strategy(project):
    with pytest.raises(BertforgeError, match=r"finetune\.frozen_layers must be 0 unless"):
        tiny_finetune_params(project[1], frozen_layers=1)


def test_every_default_equals_the_value_in_params_yaml():
    section = load_params(REPO_ROOT / "params.yaml")["finetune"]
    for field in dataclasses.fields(FinetuneParams):
        if field.default_factory is not dataclasses.MISSING:
            assert section[field.name] == field.default_factory(), field.name
        elif field.default is not dataclasses.MISSING:
            assert section[field.name] == field.default, field.name


def test_learning_rate_is_one_rate_or_a_list_to_choose_from_on_dev(project):
    assert tiny_finetune_params(project[1]).learning_rates == [1e-3]
    several = tiny_finetune_params(project[1], learning_rate=[1e-3, 1e-4])
    assert several.learning_rates == [1e-3, 1e-4]
    assert several.at_rate(1e-4).learning_rates == [1e-4]
    for bad, message in (
        ([], "must list at least one rate"),
        ([1e-3, 1e-3], "must not repeat"),
        ([1e-3, 0.0], "must be positive"),
        (-1e-3, "must be positive"),
    ):
        with pytest.raises(BertforgeError, match=rf"finetune\.learning_rate {message}"):
            tiny_finetune_params(project[1], learning_rate=bad)
    with pytest.raises(BertforgeError, match=r"finetune\.learning_rate\[1\] must be a number"):
        tiny_finetune_params(project[1], learning_rate=[1e-3, "fast"])


def test_a_task_sets_its_own_training_knobs_in_place_of_the_sections(project):
    _, specs = project
    own = {"learning_rate": [1e-4, 3e-4], "epochs": 9, "schedule": "constant"}
    params = tiny_finetune_params(specs | {"sentiment": specs["sentiment"] | {"training": own}})
    sentiment = params.for_task_training("sentiment")
    assert (sentiment.learning_rates, sentiment.epochs, sentiment.schedule) == (
        [1e-4, 3e-4],
        9,
        "constant",
    )
    assert sentiment.batch_size == params.batch_size and sentiment.seeds == params.seeds
    assert params.for_task_training("similar") == params  # no knobs of its own


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"seeds": [1]}, r"training.seeds is not a known parameter \(known: attention_dropout, "),
        ({"epochs": 0}, r"training.epochs must be at least 1"),
        ({"hidden_dropout": 1.5}, r"training.hidden_dropout must be in \[0, 1\)"),
        ([1e-4], r"training must be a mapping"),
    ],
)
def test_a_bad_task_knob_is_refused_at_load_naming_the_task(project, training, message):
    _, specs = project
    with pytest.raises(BertforgeError, match=r"^params.yaml: finetune.tasks.sentiment." + message):
        tiny_finetune_params(specs | {"sentiment": specs["sentiment"] | {"training": training}})
