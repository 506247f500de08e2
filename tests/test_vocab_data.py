"""The vocabulary, the drawing, the dataset and its splits."""

from __future__ import annotations

import pytest
import torch

from tutor_lib.data import (
    ALL_CONFIGS,
    HELD_OUT_CONFIGS,
    TRAIN_CONFIGS,
    ShapesDataset,
    draw_shape,
    draw_shapes,
    make_dataset,
    make_qa,
    make_splits,
)
from tutor_lib.vocab import COLORS, END, EXTENDED_VOCAB, PAD, POSITIONS, SHAPES, START, VOCAB, VOCAB_SIZE, decode, encode


def test_vocabulary_is_the_seeds():
    assert VOCAB_SIZE == 20 and (PAD, START, END) == (0, 1, 2)
    assert VOCAB["what"] == 3 and VOCAB["?"] == 9 and VOCAB["red"] == 10 and VOCAB["center"] == 19
    assert EXTENDED_VOCAB["and"] == 20 and all(EXTENDED_VOCAB[w] == i for w, i in VOCAB.items())


def test_encode_decode_round_trip_and_errors():
    assert encode("what color ?") == [3, 4, 9]
    assert decode([START, 3, 4, 9, END, PAD]) == "what color ?"
    assert decode([START, 10], skip_special=False) == "<start> red"
    labels = [-100, -100, 10, 13, END, -100]  # masked labels: dropped by default, shown as -100 in messages
    assert decode(labels) == "red circle"
    assert decode(labels, skip_special=False) == "-100 -100 red circle <end> -100"
    assert decode([10, 99], skip_special=False) == "red <unk:99>"
    with pytest.raises(KeyError, match="purple"):
        encode("what purple ?")


def test_draw_shape_geometry_matches_the_seed():
    img = draw_shape("red", "circle", "top-left", noise_std=0.0)
    assert img.shape == (3, 64, 64) and img.dtype == torch.float32
    assert img[:, 16, 16].tolist() == pytest.approx([1.0, 0.1, 0.1])  # center of top-left
    assert img[:, 48, 48].tolist() == [0.0, 0.0, 0.0]
    # radius 64 // 6 = 10, strict inequality: (16, 26) is outside the circle, (16, 25) inside
    assert img[0, 16, 25] == 1.0 and img[0, 16, 26] == 0.0
    square = draw_shape("green", "square", "bottom-right", noise_std=0.0)
    assert square[:, 48 + 9, 48 - 9].tolist() == pytest.approx([0.1, 0.8, 0.1])  # a corner of the square
    assert square[1, 48 + 10, 48].item() == 0.0
    # rows are y: "top-right" is near row 16, column 48
    assert draw_shape("blue", "square", "top-right", noise_std=0.0)[2, 16, 48] == 1.0


def test_draw_shape_noise_is_seeded_and_clamped():
    a = draw_shape("blue", "circle", "center", generator=torch.Generator().manual_seed(0))
    b = draw_shape("blue", "circle", "center", generator=torch.Generator().manual_seed(0))
    c = draw_shape("blue", "circle", "center", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="unknown color 'purple'"):
        draw_shape("purple", "circle", "center")


def test_draw_shapes_vectorised_equals_one_by_one():
    colors, shapes, positions = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), torch.tensor([4, 0, 3])
    batch = draw_shapes(colors, shapes, positions, noise_std=0.0)
    for i in range(3):
        one = draw_shape(COLORS[colors[i]], SHAPES[shapes[i]], POSITIONS[positions[i]], noise_std=0.0)
        assert torch.equal(batch[i], one)


def test_make_qa_tokens():
    qa = make_qa("green", "square", "bottom-left", "position")
    assert qa == {"question_tokens": [6, 7, 8, 9], "answer_tokens": [17], "caption_tokens": [12, 14]}
    assert make_qa("red", "circle", "center", "color")["answer_tokens"] == [10]
    with pytest.raises(ValueError, match="question type"):
        make_qa("red", "circle", "center", "size")


def test_dataset_items_have_the_seed_keys():
    ds = make_dataset(50, seed=3)
    item = ds[7]
    assert set(item) == {"image", "color", "shape", "position", "question_type",
                         "question_tokens", "answer_tokens", "caption_tokens"}
    assert len(ds) == 50 and ds.images.shape == (50, 3, 64, 64)
    assert item["caption_tokens"] == [VOCAB[item["color"]], VOCAB[item["shape"]]]
    assert torch.equal(ds[7]["image"], ds.images[7])


def test_dataset_is_reproducible_and_seed_dependent():
    assert torch.equal(make_dataset(20, seed=1).images, make_dataset(20, seed=1).images)
    assert not torch.equal(make_dataset(20, seed=1).images, make_dataset(20, seed=2).images)


def test_splits_hold_out_combinations_but_not_concepts():
    assert len(ALL_CONFIGS) == 30 and len(HELD_OUT_CONFIGS) == 6 and len(TRAIN_CONFIGS) == 24
    splits = make_splits(n_train=600, n_test=120, n_heldout=120, seed=0)
    assert splits.train.configs() <= set(TRAIN_CONFIGS)
    assert splits.test_iid.configs() <= set(TRAIN_CONFIGS)
    assert splits.test_heldout.configs() <= set(HELD_OUT_CONFIGS)
    assert not splits.train.configs() & set(HELD_OUT_CONFIGS)
    # every color, shape and position value is still seen in training
    for axis, names in enumerate((COLORS, SHAPES, POSITIONS)):
        assert {c[axis] for c in splits.train.configs()} == set(range(len(names)))
    # the test sets do not change when the training set grows
    bigger = make_splits(n_train=60, seed=0)
    assert torch.equal(bigger.test_iid.images, splits.test_iid.images)


def test_subset_concat_and_bad_input():
    ds = make_dataset(10, seed=0)
    sub = ds.subset([1, 3])
    assert len(sub) == 2 and torch.equal(sub.images[1], ds.images[3]) and sub[1]["color"] == ds[3]["color"]
    assert len(ShapesDataset.concat([ds, sub])) == 12
    with pytest.raises(ValueError, match="n_samples"):
        make_dataset(0)
    with pytest.raises(ValueError, match="entries"):
        ShapesDataset(ds.images, ds.colors[:3], ds.shapes, ds.positions, ds.question_types)
