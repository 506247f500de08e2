"""tutor_lib.dialogue: dialogue data, LLaVA records, training tensors and per-turn evaluation."""

from __future__ import annotations

import pytest
import torch

import tutor_lib.dialogue as dialogue
from tutor_lib.batching import build_conversation_batch
from tutor_lib.data import HELD_OUT_CONFIGS, TRAIN_CONFIGS
from tutor_lib.dialogue import (
    answer_turns,
    conversation_tensors,
    format_dialogue,
    make_dialogue_splits,
    make_dialogues,
    question_tokens,
    train_dialogues,
    turn_accuracy,
)
from tutor_lib.model import MultimodalModel
from tutor_lib.pretrain import load_stage0
from tutor_lib.records import from_llava_record
from tutor_lib.vocab import COLORS, END, EXTENDED_VOCAB, POSITIONS, SHAPES, START, decode


def test_question_tokens_prefix_follow_ups_with_and():
    assert decode(question_tokens("shape", follow_up=False)) == "what shape ?"
    assert decode(question_tokens("position", follow_up=True)) == "and where is it ?"
    assert question_tokens("color", True)[0] == EXTENDED_VOCAB["and"] == 20


def test_dialogues_ask_distinct_questions_with_true_answers():
    data = make_dialogues(50, image_size=16, seed=3)
    assert {len(t) for t in data.turns} == {2, 3}
    for i in range(len(data)):
        sample = data[i]
        truth = {"color": sample["color"], "shape": sample["shape"], "position": sample["position"]}
        assert len(set(sample["question_types"])) == len(sample["question_types"])
        for k, ((question, answer), qtype) in enumerate(zip(sample["turns"], sample["question_types"])):
            assert (question[0] == EXTENDED_VOCAB["and"]) == (k > 0)
            assert decode(answer) == truth[qtype]
        assert sample["caption_tokens"] == [EXTENDED_VOCAB[sample["color"]], EXTENDED_VOCAB[sample["shape"]]]
    assert make_dialogues(5, num_turns=(1,), image_size=16).turns[0][0][0][0] != EXTENDED_VOCAB["and"]
    with pytest.raises(ValueError, match="num_turns"):
        make_dialogues(5, num_turns=(4,))


def test_splits_keep_held_out_triples_out_of_training():
    splits = make_dialogue_splits(40, 10, 10, image_size=16, seed=1)
    def triples(d):
        return set(zip(d.colors.tolist(), d.shapes.tolist(), d.positions.tolist()))
    assert triples(splits.train) <= set(TRAIN_CONFIGS) and triples(splits.test_heldout) <= set(HELD_OUT_CONFIGS)
    first = splits.train.first_turns()
    assert all(len(t) == 1 for t in first.turns) and torch.equal(first.images, splits.train.images)
    sub = splits.train.subset([3, 1])
    assert sub.turns == [splits.train.turns[3], splits.train.turns[1]]


def test_records_round_trip_through_the_llava_format():
    data = make_dialogues(6, image_size=16, seed=0)
    for record, turns in zip(data.records(), data.turns):
        assert record["conversations"][0]["value"].startswith("<image>\n")
        assert sum("<image>" in c["value"] for c in record["conversations"]) == 1
        assert from_llava_record(record) == turns


def test_conversation_tensors_use_the_given_builder():
    data = make_dialogues(4, image_size=16, seed=0)
    images, ids, labels = conversation_tensors(data)
    ref_ids, ref_labels = build_conversation_batch(data.turns)
    assert torch.equal(ids, ref_ids) and torch.equal(labels, ref_labels) and images is data.images
    calls = []
    conversation_tensors(data, build=lambda turns: calls.append(turns) or build_conversation_batch(turns))
    assert calls == [data.turns]


def test_answer_turns_builds_prompts_from_the_chosen_history(monkeypatch):
    data = make_dialogues(3, num_turns=(2,), image_size=16, seed=0)
    prompts = []

    def fake_generate(model, images, batch, max_new_tokens):
        prompts.extend(batch.tolist())
        return [[EXTENDED_VOCAB["red"]] for _ in range(len(batch))]  # always "red"

    monkeypatch.setattr(dialogue, "generate", fake_generate)
    for history in ("truth", "model"):
        prompts.clear()
        answers = answer_turns(None, data, history=history)
        assert answers == [[[EXTENDED_VOCAB["red"]]] * 2] * 3
        second = [p for p in prompts if len(p) > 6]
        for turns in data.turns:
            earlier = list(turns[0][1]) if history == "truth" else [EXTENDED_VOCAB["red"]]
            expected = [START, *turns[0][0], *earlier, END, *turns[1][0]]
            assert expected in second
    with pytest.raises(ValueError, match="history"):
        answer_turns(None, data, history="oracle")


def test_turn_accuracy_and_format_dialogue():
    data = make_dialogues(2, num_turns=(2,), image_size=16, seed=0)
    right = [[list(a) for _, a in turns] for turns in data.turns]
    wrong_second = [[r[0], [EXTENDED_VOCAB["and"]]] for r in right]
    assert turn_accuracy(data, right) == {"turn 1": 1.0, "turn 2": 1.0, "dialogue": 1.0}
    assert turn_accuracy(data, wrong_second) == {"turn 1": 1.0, "turn 2": 0.0, "dialogue": 0.0}
    text = format_dialogue(data, 0, wrong_second)
    sample = data[0]
    assert f"a {sample['color']} {sample['shape']} at {sample['position']}" in text
    assert text.count("<- wrong") == 1 and sample["color"] in COLORS and sample["shape"] in SHAPES
    assert sample["position"] in POSITIONS


def test_train_dialogues_runs_one_epoch_per_loss_with_a_tiny_model():
    torch.manual_seed(0)
    model = MultimodalModel(vocab_size=21, image_size=16)
    data = make_dialogues(16, image_size=16, seed=0)
    losses = train_dialogues(model, data, num_epochs=2, batch_size=8, progress=False, seed=0)
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    answers = answer_turns(model, data, history="model")
    assert [len(a) for a in answers] == [len(t) for t in data.turns]


def test_pretrained_dialogue_model_keeps_fresh_and_rows_and_learns_them(monkeypatch, tmp_path):
    """Notebook 08's start: stage 0 fills rows 0-19; the new "and" row keeps its init until dialogues train it."""
    monkeypatch.setenv("TUTOR_CACHE", str(tmp_path))  # the shipped 32-pixel weights, never a build in ~/.cache
    torch.manual_seed(0)
    model = MultimodalModel(vocab_size=21, image_size=32)
    fresh = {k: v.clone() for k, v in model.language_model.state_dict().items()}
    load_stage0(model, seed=42, progress=False, verbose=False)
    assert "trained now" not in load_stage0(MultimodalModel(image_size=32), progress=False, verbose=False)["source"]
    for key in ("token_embedding.weight", "output_head.weight", "output_head.bias"):
        now = model.language_model.state_dict()[key]
        assert torch.equal(now[20], fresh[key][20]) and not torch.equal(now[:20], fresh[key][:20]), key
    data = make_dialogues(16, image_size=32, seed=0)
    train_dialogues(model, data, num_epochs=1, batch_size=8, progress=False, seed=0)
    assert not torch.equal(model.language_model.token_embedding.weight[20], fresh["token_embedding.weight"][20])
