"""hf_llava.py: our records and stages on Hugging Face's LlavaForConditionalGeneration, built offline from a tiny config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from tutor_lib import hf_llava as H  # noqa: E402
from tutor_lib import make_dataset  # noqa: E402
from tutor_lib.dialogue import make_dialogue_splits  # noqa: E402
from tutor_lib.model import Projector  # noqa: E402
from tutor_lib.records import dataset_to_records  # noqa: E402

SIZES = {"image_size": 16, "patch_size": 8, "vision_dim": 16, "llm_dim": 8, "num_layers": 2, "num_heads": 2}


@pytest.fixture
def model():
    return H.tiny_llava(seed=0, **SIZES)


@pytest.fixture(scope="module")
def data():
    dataset = make_dataset(6, image_size=16, seed=2)
    return dataset, dataset_to_records(dataset)


def test_config_is_llava_15s_layout(model):
    cfg = model.config
    assert cfg.vision_feature_layer == -2 and cfg.vision_feature_select_strategy == "default"
    assert cfg.image_seq_length == 4  # (16 / 8) ** 2 patches, CLS dropped
    parts = H.boxes(model)
    assert set(parts) == {"vision_tower", "multi_modal_projector", "language_model", "lm_head"}
    assert H.count_box_parameters(model)["multi_modal_projector"] == (16 * 8 + 8) + (8 * 8 + 8)


def test_image_features_are_layer_minus_2_without_cls_through_the_projector(model, data):
    images = H.pixel_values(data[0].images)
    parts = H.boxes(model)
    with torch.no_grad():
        hidden = parts["vision_tower"](images, output_hidden_states=True).hidden_states
        manual = parts["multi_modal_projector"](hidden[-2][:, 1:])  # (B, 4, 8)
        out = model.model.get_image_features(pixel_values=images) if hasattr(model, "model") else None
    features = getattr(out, "pooler_output", out)
    features = torch.stack(list(features)) if isinstance(features, (list, tuple)) else features
    torch.testing.assert_close(features.view_as(manual), manual)


def test_chat_example_template_and_label_mask(data):
    record = data[1][0]
    ids, labels = H.chat_example(record, image_seq_length=4)
    words = {i: w for w, i in H.HF_VOCAB.items()}
    question = record["conversations"][0]["value"].split("\n")[1]
    answer = record["conversations"][1]["value"]
    assert [words[i] for i in ids] == ["<s>", "USER:"] + ["<image>"] * 4 + question.split() + ["ASSISTANT:", answer, "</s>"]
    assert labels[:-2] == [H.IGNORE_INDEX] * (len(ids) - 2)
    assert labels[-2:] == ids[-2:]  # not shifted: the answer and </s> label themselves


def test_multi_turn_record_supervises_every_answer():
    splits = make_dialogue_splits(n_train=4, n_test=2, n_heldout=2, seed=0)
    record = splits.train.records()[0]
    ids, labels = H.chat_example(record, image_seq_length=4)
    answers = [t["value"] for t in record["conversations"][1::2]]
    supervised = [t for t in labels if t != H.IGNORE_INDEX]
    assert supervised == [i for a in answers for i in H.encode_words(a) + [H.EOS_ID]]
    assert ids.count(H.IMAGE_ID) == 4 and ids.count(H.HF_VOCAB["USER:"]) == len(answers)


def test_bad_records_and_words_say_why():
    with pytest.raises(ValueError, match="human/gpt pairs"):
        H.chat_example({"id": "x", "conversations": [{"from": "human", "value": "<image>\nwhat color ?"}]}, 4)
    with pytest.raises(ValueError, match="alternate"):
        H.chat_example({"id": "x", "conversations": [{"from": "gpt", "value": "red"}, {"from": "human", "value": "?"}]}, 4)
    with pytest.raises(KeyError, match="purple"):
        H.encode_words("what purple ?")
    with pytest.raises(ValueError, match="stage must be 1"):
        H.set_llava_stage(H.tiny_llava(**SIZES), 3)


def test_caption_example_and_collate():
    ids, labels = H.caption_example("red circle", 4)
    assert ids == [H.IMAGE_ID] * 4 + [H.HF_VOCAB["red"], H.HF_VOCAB["circle"], H.EOS_ID]
    assert labels == [H.IGNORE_INDEX] * 4 + ids[4:]
    batch = H.collate([(ids, labels), ([1, 2], [-100, 2])])
    assert batch["input_ids"].shape == (2, 7) and batch["input_ids"][1, 2:].eq(H.PAD_ID).all()
    assert batch["labels"][1, 2:].eq(H.IGNORE_INDEX).all() and batch["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert H.expand_image_tokens([5, H.IMAGE_ID, 6], 3) == [5, H.IMAGE_ID, H.IMAGE_ID, H.IMAGE_ID, 6]


def test_the_loss_shifts_the_labels_inside(model, data):
    dataset, records = data
    batch = H.collate([H.chat_example(r, 4) for r in records])
    with torch.no_grad():
        out = model(**batch, pixel_values=H.pixel_values(dataset.images))
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stage, trained", [(1, {"multi_modal_projector"}),
                                            (2, {"multi_modal_projector", "language_model", "lm_head"})])
def test_one_training_step_changes_only_the_stages_boxes(model, data, stage, trained):
    dataset, records = data
    examples = ([H.caption_example(r["conversations"][1]["value"], 4) for r in records] if stage == 1
                else [H.chat_example(r, 4) for r in records])
    H.set_llava_stage(model, stage)
    loss, changed = H.train_step(model, {**H.collate(examples), "pixel_values": H.pixel_values(dataset.images)})
    assert loss > 0
    assert {box for box, n in changed.items() if n} == trained
    parts = H.boxes(model)
    for box in trained:  # every tensor of a trained box moved
        assert changed[box] == sum(1 for _ in parts[box].parameters())
    assert changed["vision_tower"] == 0


def test_train_step_refuses_a_frozen_model(model, data):
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="set_llava_stage"):
        H.train_step(model, H.collate([H.caption_example("red circle", 4)]))


def test_our_projector_is_their_projector(model):
    ours = Projector(16, 8)
    H.load_toy_projector(model, ours)
    x = torch.randn(3, 4, 16)
    assert torch.equal(ours(x), H.boxes(model)["multi_modal_projector"](x))
    with pytest.raises(ValueError, match="projector shapes differ"):
        H.load_toy_projector(model, Projector(32, 8))


def test_missing_transformers_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(ImportError, match=r"pip install 'tutor-lib\[hf\]'"):
        H.require_transformers()
