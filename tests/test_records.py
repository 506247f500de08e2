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


# LLaVA's preprocess_multimodal takes <image> from anywhere in the first human turn (issue 11.16).
@pytest.mark.parametrize("value", ["what color ?\n<image>", "<image>\nwhat color ?", "what <image> color ?",
                                   "<image>what color ?"])
def test_image_placeholder_anywhere_in_the_first_human_turn(value):
    record = {"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": "red"}]}
    assert from_llava_record(record) == [(encode("what color ?"), encode("red"))]


def _record(first="<image>\nwhat color ?", answer="red", image="a.png", more=()):
    record = {"id": "rec7", "conversations": [{"from": "human", "value": first}, {"from": "gpt", "value": answer}, *more]}
    if image is not None:
        record["image"] = image
    return record


@pytest.mark.parametrize("record, message", [
    (_record(first="<image>\n<image>\nwhat color ?"), r"record 'rec7', turn 0, human: needs exactly one <image>.*found 2"),
    (_record(first="what color ?"), r"exactly one <image>.*found 0"),
    (_record(image=None), r"record 'rec7': has <image> but no 'image' path"),
    (_record(image=""), "no 'image' path"),
    (_record(more=[{"from": "human", "value": "<image> and what shape ?"}, {"from": "gpt", "value": "circle"}]),
     r"turn 1, human: <image> may only appear in the first human turn"),
    (_record(more=[{"from": "human", "value": "and what shape ?"}, {"from": "gpt", "value": "<image> circle"}]),
     r"turn 1, gpt: <image> may only appear"),
])
def test_image_placeholder_rules(record, message):
    with pytest.raises(ValueError, match=message):
        from_llava_record(record)


# Unknown words: a ValueError naming the record, the turn and the role (issue 11.17).
@pytest.mark.parametrize("record, message", [
    (_record(first="<image>\nwhat colour ?"), r"record 'rec7', turn 0, human: 'colour' not in the vocabulary"),
    (_record(answer="Red"), r"record 'rec7', turn 0, gpt: 'Red' not in the vocabulary"),
    (_record(more=[{"from": "human", "value": "and what size ?"}, {"from": "gpt", "value": "circle"}]),
     r"record 'rec7', turn 1, human: 'size' not in the vocabulary"),
])
def test_unknown_words_name_record_turn_and_role(record, message):
    with pytest.raises(ValueError, match=message):
        from_llava_record(record)


# Empty answers would train on <end> alone (issue 11.18).
@pytest.mark.parametrize("record, message", [
    (_record(answer=""), r"record 'rec7', turn 0, gpt is empty"),
    (_record(answer="   "), r"turn 0, gpt is empty"),
    (_record(first="<image>\n"), r"turn 0, human is empty"),
    (_record(more=[{"from": "human", "value": "and what shape ?"}, {"from": "gpt", "value": ""}]), r"turn 1, gpt is empty"),
    (_record(answer=None), r"turn 0, gpt: 'value' must be a string"),
])
def test_empty_or_missing_text_rejected_when_reading(record, message):
    with pytest.raises(ValueError, match=message):
        from_llava_record(record)


@pytest.mark.parametrize("turns, message", [
    ([(encode("what color ?"), [])], r"record 'x', turn 0, gpt is empty"),
    ([([], encode("red"))], r"turn 0, human is empty"),
    ([(encode("what color ?"), [2])], r"turn 0, gpt: special token <end> \(id 2\)"),
    ([([1, *encode("what color ?")], encode("red"))], r"turn 0, human: special token <start>"),
    ([(encode("what color ?"), encode("red")), (encode("what shape ?"), [0])], r"turn 1, gpt: special token <pad>"),
    ([(encode("what color ?"), [99])], r"turn 0, gpt: token id 99 is outside the vocabulary \(ids 0-20\)"),
    ([(encode("what color ?"), [-1])], r"token id -1 is outside"),
    ([(encode("what color ?"), [10.0])], r"whole numbers, got 10.0"),
])
def test_writer_rejects_empty_special_and_out_of_range_ids(turns, message):
    with pytest.raises(ValueError, match=message):
        to_llava_record(turns, "x", "x.png")


def test_writer_accepts_numpy_and_tensor_ids():
    import numpy as np
    import torch

    record = to_llava_record([(np.array(encode("what color ?")), torch.tensor(encode("red")))], "x", "x.png")
    assert record["conversations"][1]["value"] == "red"


@pytest.mark.parametrize("sample_id, image", [("", "x.png"), ("x", ""), ("x", None)])
def test_writer_needs_id_and_image(sample_id, image):
    with pytest.raises(ValueError, match="non-empty string"):
        to_llava_record([(encode("what color ?"), encode("red"))], sample_id, image)


def test_caption_records_have_llava_stage1_shape_and_round_trip():
    from tutor_lib.records import CAPTION_INSTRUCTION, dataset_to_caption_records, from_caption_record, to_caption_record

    record = to_caption_record(encode("red circle"), "000042", "000042.png")
    assert record == {"id": "000042", "image": "000042.png",
                      "conversations": [{"from": "human", "value": f"{CAPTION_INSTRUCTION}\n<image>"},
                                        {"from": "gpt", "value": "red circle"}]}
    json.dumps(record)
    assert to_caption_record(encode("red circle"), "a", "a.png", instruction="")["conversations"][0]["value"] == "<image>"
    ds = make_dataset(6, seed=1)
    records = dataset_to_caption_records(ds)
    assert [from_caption_record(r) for r in records] == ds.captions
    # the instruction is English, not our vocabulary: the plain template never encodes it
    with pytest.raises(ValueError, match="turn 0, human"):
        from_llava_record(records[0])


@pytest.mark.parametrize("call, message", [
    (lambda f: f["to"]([], "a", "a.png"), r"record 'a', turn 0, gpt is empty"),
    (lambda f: f["to"]([2], "a", "a.png"), "special token <end>"),
    (lambda f: f["to"]([50], "a", "a.png"), "outside the vocabulary"),
    (lambda f: f["to"](encode("red circle"), "a", "a.png", instruction="<image> describe"), "without <image>"),
    (lambda f: f["from"](_record(answer="")), r"turn 0, gpt is empty"),
    (lambda f: f["from"](_record(answer="red sphere")), r"'sphere' not in the vocabulary"),
    (lambda f: f["from"](_record(more=[{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}])),
     "one human/gpt pair, found 2"),
    (lambda f: f["from"](_record(first="Describe it.")), "exactly one <image>"),
])
def test_caption_records_reject_bad_input(call, message):
    from tutor_lib.records import from_caption_record, to_caption_record

    with pytest.raises(ValueError, match=message):
        call({"to": to_caption_record, "from": from_caption_record})
