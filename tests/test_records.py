"""LLaVA-format conversation records, both ways."""

from __future__ import annotations

import json

import pytest

from tutor_lib.data import make_dataset
from tutor_lib.records import dataset_to_records, from_llava_record, to_llava_record
from tutor_lib.vocab import encode


def test_single_turn_record_has_llava_shape():
    record = to_llava_record([(encode("what color ?"), encode("red"))], "000042", "000042.png")
    assert record == {
        "id": "000042", "image": "000042.png",
        "conversations": [{"from": "human", "value": "<image>\nwhat color ?"}, {"from": "gpt", "value": "red"}],
    }
    json.dumps(record)  # serialisable as LLaVA's JSON files are


def test_round_trip_multi_turn():
    turns = [(encode("what color ?"), encode("red")), (encode("and what shape ?", vocab=_ext()), encode("circle"))]
    record = to_llava_record(turns, "x", "x.png")
    assert "<image>" not in record["conversations"][2]["value"]
    assert from_llava_record(record) == turns


def _ext():
    from tutor_lib.vocab import EXTENDED_VOCAB

    return EXTENDED_VOCAB


def test_dataset_records_round_trip():
    ds = make_dataset(5, seed=0)
    for i, record in enumerate(dataset_to_records(ds)):
        assert from_llava_record(record) == [(ds[i]["question_tokens"], ds[i]["answer_tokens"])]


@pytest.mark.parametrize("record, message", [
    ({"id": "a"}, "non-empty list"),
    ({"id": "a", "conversations": [{"from": "human", "value": "<image>\nwhat color ?"}]}, "pairs"),
    ({"id": "a", "conversations": [{"from": "gpt", "value": "red"}, {"from": "human", "value": "x"}]}, "'human' then 'gpt'"),
    ({"id": "a", "conversations": [{"from": "human", "value": "what color ?"}, {"from": "gpt", "value": "red"}]}, "<image>"),
])
def test_bad_records_are_rejected_clearly(record, message):
    with pytest.raises(ValueError, match=message):
        from_llava_record(record)


def test_empty_conversation_rejected():
    with pytest.raises(ValueError, match="at least one"):
        to_llava_record([], "a", "a.png")
