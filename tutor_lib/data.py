"""The synthetic shapes world: images, questions, answers and captions.

Each image shows one colored shape (3 colors x 2 shapes x 5 positions = 30 image
configurations) on a black background with a little Gaussian noise, drawn with the seed
notebook's geometry: a 64x64 canvas, radius S//6, centers at S//4, S//2 and 3S//4.
Each sample asks one of three questions ("what color ?", "what shape ?", "where is it ?")
and has a two-word caption ("red circle") for stage 1.

All images of a dataset are drawn at once into one (N, 3, S, S) tensor, so a dataset of
thousands of images takes milliseconds and training can index batches on the device.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .vocab import COLORS, POSITIONS, QUESTION_TYPES, SHAPES, VOCAB

# RGB of each color, as in the seed; the background is black.
COLOR_RGB = {"red": (1.0, 0.1, 0.1), "blue": (0.1, 0.1, 1.0), "green": (0.1, 0.8, 0.1)}

# Every (color, shape, position) triple, as indices into COLORS, SHAPES, POSITIONS.
ALL_CONFIGS: tuple[tuple[int, int, int], ...] = tuple(
    itertools.product(range(len(COLORS)), range(len(SHAPES)), range(len(POSITIONS)))
)


def _config(color: str, shape: str, position: str) -> tuple[int, int, int]:
    return (COLORS.index(color), SHAPES.index(shape), POSITIONS.index(position))


# Six triples never shown in training. Every color, shape and position still appears in
# training with other partners, so answering them needs composition, not memory.
HELD_OUT_CONFIGS: tuple[tuple[int, int, int], ...] = tuple(
    _config(*triple)
    for triple in [
        ("red", "circle", "center"),
        ("blue", "square", "top-left"),
        ("green", "circle", "top-right"),
        ("red", "square", "bottom-left"),
        ("blue", "circle", "bottom-right"),
        ("green", "square", "center"),
    ]
)
TRAIN_CONFIGS = tuple(c for c in ALL_CONFIGS if c not in HELD_OUT_CONFIGS)  # 24 triples


def _check_name(kind: str, value: str, names: tuple[str, ...]) -> int:
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {names}")
    return names.index(value)


def shape_centers(image_size: int) -> torch.Tensor:
    """(row, column) of each position's center, in POSITIONS order -> (5, 2) long."""
    near, mid, far = image_size // 4, image_size // 2, 3 * image_size // 4
    return torch.tensor([(near, near), (near, far), (far, near), (far, far), (mid, mid)])


def draw_shapes(
    colors: torch.Tensor,
    shapes: torch.Tensor,
    positions: torch.Tensor,
    image_size: int = 64,
    noise_std: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw N images at once from index tensors colors, shapes, positions (N,) -> (N, 3, S, S)."""
    n = len(colors)
    centers = shape_centers(image_size)[positions]  # (N, 2)
    cy, cx = centers[:, 0].view(n, 1, 1), centers[:, 1].view(n, 1, 1)
    ys = torch.arange(image_size).view(1, image_size, 1)
    xs = torch.arange(image_size).view(1, 1, image_size)
    r = image_size // 6
    circle = (xs - cx) ** 2 + (ys - cy) ** 2 < r**2  # (N, S, S)
    square = ((xs - cx).abs() < r) & ((ys - cy).abs() < r)  # (N, S, S)
    mask = torch.where(shapes.view(n, 1, 1) == SHAPES.index("circle"), circle, square)
    rgb = torch.tensor([COLOR_RGB[c] for c in COLORS])[colors]  # (N, 3)
    images = mask[:, None].float() * rgb[:, :, None, None]  # (N, 3, S, S)
    if noise_std > 0:
        images = images + noise_std * torch.randn(images.shape, generator=generator)
    return images.clamp(0.0, 1.0)


def draw_shape(
    color: str,
    shape: str,
    position: str,
    image_size: int = 64,
    noise_std: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one shape, e.g. draw_shape("red", "circle", "top-left") -> (3, S, S) in [0, 1]."""
    index = [
        torch.tensor([_check_name(kind, value, names)])
        for kind, value, names in [("color", color, COLORS), ("shape", shape, SHAPES), ("position", position, POSITIONS)]
    ]
    return draw_shapes(*index, image_size=image_size, noise_std=noise_std, generator=generator)[0]


QUESTIONS = {"color": "what color ?", "shape": "what shape ?", "position": "where is it ?"}


def make_qa(color: str, shape: str, position: str, question_type: str) -> dict[str, list[int]]:
    """Token ids of the question, its one-word answer and the caption "<color> <shape>"."""
    _check_name("color", color, COLORS)
    _check_name("shape", shape, SHAPES)
    _check_name("position", position, POSITIONS)
    _check_name("question type", question_type, QUESTION_TYPES)
    answer = {"color": color, "shape": shape, "position": position}[question_type]
    return {
        "question_tokens": [VOCAB[w] for w in QUESTIONS[question_type].split()],
        "answer_tokens": [VOCAB[answer]],
        "caption_tokens": [VOCAB[color], VOCAB[shape]],
    }


@dataclass
class ShapesDataset:
    """N samples of the shapes world: images (N, 3, S, S) and index tensors (N,) into the name tuples."""

    images: torch.Tensor
    colors: torch.Tensor
    shapes: torch.Tensor
    positions: torch.Tensor
    question_types: torch.Tensor

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("colors", "shapes", "positions", "question_types"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries but there are {n} images")
        self.records = [
            make_qa(COLORS[c], SHAPES[s], POSITIONS[p], QUESTION_TYPES[q])
            for c, s, p, q in zip(self.colors.tolist(), self.shapes.tolist(),
                                  self.positions.tolist(), self.question_types.tolist())
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.images[i],
            "color": COLORS[self.colors[i]],
            "shape": SHAPES[self.shapes[i]],
            "position": POSITIONS[self.positions[i]],
            "question_type": QUESTION_TYPES[self.question_types[i]],
            **self.records[i],
        }

    @property
    def questions(self) -> list[list[int]]:
        return [r["question_tokens"] for r in self.records]

    @property
    def answers(self) -> list[list[int]]:
        return [r["answer_tokens"] for r in self.records]

    @property
    def captions(self) -> list[list[int]]:
        return [r["caption_tokens"] for r in self.records]

    def configs(self) -> set[tuple[int, int, int]]:
        """The distinct (color, shape, position) index triples in this dataset."""
        return set(zip(self.colors.tolist(), self.shapes.tolist(), self.positions.tolist()))

    def subset(self, indices: torch.Tensor | list[int]) -> ShapesDataset:
        """A new dataset holding the samples at `indices` (a copy, not a view)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ShapesDataset(self.images[idx], self.colors[idx], self.shapes[idx],
                             self.positions[idx], self.question_types[idx])

    @staticmethod
    def concat(parts: list[ShapesDataset]) -> ShapesDataset:
        """One dataset with the samples of all `parts`, in order."""
        fields = ("images", "colors", "shapes", "positions", "question_types")
        return ShapesDataset(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))


def make_dataset(
    n_samples: int = 600,
    configs: tuple[tuple[int, int, int], ...] = ALL_CONFIGS,
    image_size: int = 64,
    noise_std: float = 0.05,
    seed: int = 42,
) -> ShapesDataset:
    """Sample n_samples (configuration, question type) pairs uniformly and draw their images."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if not configs:
        raise ValueError("configs is empty: there is nothing to draw")
    g = torch.Generator().manual_seed(seed)
    table = torch.tensor(configs)  # (C, 3)
    chosen = table[torch.randint(len(table), (n_samples,), generator=g)]  # (N, 3)
    question_types = torch.randint(len(QUESTION_TYPES), (n_samples,), generator=g)
    colors, shapes, positions = chosen.unbind(1)
    images = draw_shapes(colors, shapes, positions, image_size, noise_std, generator=g)
    return ShapesDataset(images, colors, shapes, positions, question_types)


@dataclass
class Splits:
    """Training data, an IID test set (same 24 configurations) and a held-out-combination test set."""

    train: ShapesDataset
    test_iid: ShapesDataset
    test_heldout: ShapesDataset


def make_splits(
    n_train: int = 600,
    n_test: int = 120,
    n_heldout: int = 120,
    image_size: int = 64,
    noise_std: float = 0.05,
    seed: int = 42,
) -> Splits:
    """Train and IID test on TRAIN_CONFIGS, held-out test on HELD_OUT_CONFIGS, each with its own noise."""
    # One seed per split, derived from `seed`, so changing n_train leaves the test sets alone.
    seeds = torch.randint(2**62, (3,), generator=torch.Generator().manual_seed(seed)).tolist()
    kwargs = {"image_size": image_size, "noise_std": noise_std}
    return Splits(
        train=make_dataset(n_train, TRAIN_CONFIGS, seed=seeds[0], **kwargs),
        test_iid=make_dataset(n_test, TRAIN_CONFIGS, seed=seeds[1], **kwargs),
        test_heldout=make_dataset(n_heldout, HELD_OUT_CONFIGS, seed=seeds[2], **kwargs),
    )
