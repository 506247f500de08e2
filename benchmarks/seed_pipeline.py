"""The seed notebook's pipeline, re-created as a script: the baseline our speed is measured against.

This reproduces, step for step, what the original notebook computes (not its text): a
Python loop that draws 600 + 120 images one at a time, the nn.TransformerDecoder model
with dropout 0.1 that cross-attends to a zero memory tensor, training batches assembled
sample by sample inside the step, and evaluation that reads one argmax token per question.
Its test set is drawn from the same 30 configurations as training (defect 2 in DESIGN.md).

Run:  python benchmarks/seed_pipeline.py   (prints seconds and test accuracy as JSON)
"""

from __future__ import annotations

import json
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

WORDS = ["<pad>", "<start>", "<end>", "what", "color", "shape", "where", "is", "it", "?",
         "red", "blue", "green", "circle", "square",
         "top-left", "top-right", "bottom-left", "bottom-right", "center"]
IDS = {w: i for i, w in enumerate(WORDS)}
COLOR_NAMES, SHAPE_NAMES = ["red", "blue", "green"], ["circle", "square"]
POSITION_NAMES = ["top-left", "top-right", "bottom-left", "bottom-right", "center"]
RGB = [[1.0, 0.1, 0.1], [0.1, 0.1, 1.0], [0.1, 0.8, 0.1]]


def draw(color: int, shape: int, pos: int, size: int = 64) -> torch.Tensor:
    q = size // 4
    cy, cx = [(q, q), (q, 3 * size // 4), (3 * size // 4, q), (3 * size // 4, 3 * size // 4), (size // 2, size // 2)][pos]
    r = size // 6
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = ((x - cx) ** 2 + (y - cy) ** 2 < r**2) if shape == 0 else ((x - cx).abs() < r) & ((y - cy).abs() < r)
    img = torch.zeros(3, size, size)
    for c in range(3):
        img[c][inside] = RGB[color][c]
    return (img + 0.05 * torch.randn_like(img)).clamp(0, 1)


def make_samples(n: int) -> list[dict]:
    samples = []
    for _ in range(n):
        color, shape, pos = random.randint(0, 2), random.randint(0, 1), random.randint(0, 4)
        kind = random.choice(["color", "shape", "position"])
        question = {"color": "what color ?", "shape": "what shape ?", "position": "where is it ?"}[kind]
        answer = {"color": COLOR_NAMES[color], "shape": SHAPE_NAMES[shape], "position": POSITION_NAMES[pos]}[kind]
        samples.append({"image": draw(color, shape, pos), "kind": kind,
                        "q": [IDS[w] for w in question.split()], "a": [IDS[answer]],
                        "cap": [IDS[COLOR_NAMES[color]], IDS[SHAPE_NAMES[shape]]]})
    return samples


class SeedModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_patches = 64
        self.vision_encoder = nn.Sequential(nn.Conv2d(3, 128, 8, 8), nn.Flatten(2))
        self.projector = nn.Sequential(nn.Linear(128, 64), nn.GELU(), nn.Linear(64, 64))
        self.text_embedding = nn.Embedding(20, 64)
        self.position_embedding = nn.Embedding(512, 64)
        layer = nn.TransformerDecoderLayer(64, 2, 256, dropout=0.1, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, 2)
        self.output_head = nn.Linear(64, 20)

    def set_stage(self, stage: int) -> None:
        self.vision_encoder.requires_grad_(False)
        self.projector.requires_grad_(True)
        for m in (self.text_embedding, self.position_embedding, self.decoder, self.output_head):
            m.requires_grad_(stage == 2)

    def forward(self, images, ids):
        with torch.no_grad():
            vis = self.vision_encoder(images).transpose(1, 2)
        x = torch.cat([self.projector(vis), self.text_embedding(ids)], 1)
        x = x + self.position_embedding(torch.arange(x.shape[1]).unsqueeze(0))
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        memory = torch.zeros(x.shape[0], 1, x.shape[2])
        return self.output_head(self.decoder(x, memory, tgt_mask=mask))


def train_stage(model, data, stage, epochs, lr, rows):
    model.set_stage(stage)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(epochs):
        model.train()
        order = list(range(len(data)))
        random.shuffle(order)
        for i in range(0, len(order), 32):
            batch = [data[j] for j in order[i:i + 32]]
            images = torch.stack([b["image"] for b in batch])
            pairs = [rows(b) for b in batch]
            width = max(len(inp) for inp, _ in pairs)
            inputs = torch.zeros(len(batch), width, dtype=torch.long)
            targets = torch.full((len(batch), width), -100, dtype=torch.long)
            for j, (inp, tgt) in enumerate(pairs):  # element by element, as the seed does
                for k, t in enumerate(inp):
                    inputs[j, k] = t
                for k, t in enumerate(tgt):
                    targets[j, k] = t
            logits = model(images, inputs)[:, model.num_patches:]
            loss = F.cross_entropy(logits.reshape(-1, 20), targets.reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()


def caption_rows(b):
    return [1] + b["cap"], b["cap"] + [2]


def qa_rows(b):
    return [1] + b["q"] + b["a"], [-100] * len(b["q"]) + b["a"] + [2]


def main() -> dict:
    random.seed(42)
    np.random.seed(42)
    torch.manual_seed(42)
    t0 = time.perf_counter()
    train, test = make_samples(600), make_samples(120)
    t1 = time.perf_counter()
    model = SeedModel()
    train_stage(model, train, 1, 30, 1e-3, caption_rows)
    t2 = time.perf_counter()
    train_stage(model, train, 2, 50, 5e-4, qa_rows)
    t3 = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in test:
            logits = model(s["image"][None], torch.tensor([[1] + s["q"]]))
            correct += int(logits[0, model.num_patches + len(s["q"])].argmax().item() == s["a"][0])
    t4 = time.perf_counter()
    return {"data_s": t1 - t0, "stage1_s": t2 - t1, "stage2_s": t3 - t2, "eval_s": t4 - t3,
            "total_s": t4 - t0, "test_accuracy": correct / len(test)}


if __name__ == "__main__":
    print(json.dumps(main()))
