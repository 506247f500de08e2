"""Stage 0: make the frozen parts worth freezing.

LLaVA aligns two models that were trained before it ever saw an image-text pair: CLIP's
vision tower (contrastive image-text pretraining) and an LLM (Vicuna, trained on text). This
file gives our toy model the same two starting points, at CPU cost:

* **The language model reads text only.** Its corpus is the shapes world told in words: a
  "scene in words" of 64 slots laid out like the 8x8 image patches (a blank <pad> where a patch
  is empty, the shape's color and shape words, alternating, where it is covered), then a caption or a
  question and its answer. The loss is the same masked next-token loss as in stages 1 and 2,
  on the text after the scene. Stage 1 then only has to teach the projector to turn each patch
  into something the LM reads like the word for it.
* **The vision encoder learns CLIP-style**: the symmetric InfoNCE loss between pooled image
  features and the features of the scene's description ("red circle top-left"), over batches
  of distinct descriptions (the world has only 24 training scenes, so a random batch would hold
  the same description twice and push true pairs apart).

Neither part ever sees the six held-out (color, shape, position) triples, so the held-out test
of later stages stays a test of composition. The weights are cached (see `load_stage0`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import build_instruction_batch
from .data import ALL_CONFIGS, QUESTIONS, TRAIN_CONFIGS, draw_shapes
from .evaluate import greedy_continue
from .losses import masked_mean_nll
from .model import LanguageModel, ModelConfig, MultimodalModel, VisionEncoder
from .vocab import COLORS, PAD, POSITIONS, QUESTION_TYPES, SHAPES, VOCAB, VOCAB_SIZE

FORMAT_VERSION = 1  # bump when the recipe below changes, so stale caches are rebuilt


@dataclass(frozen=True)
class Stage0Config:
    lm_steps: int = 200  # language-model pretraining: Adam steps over fresh text batches
    lm_batch_size: int = 32
    lm_lr: float = 3e-3  # peak of a one-cycle schedule
    clip_steps: int = 150  # vision pretraining: each step one image of every training scene
    clip_lr: float = 3e-3
    temperature: float = 0.1  # CLIP learns it (initial 0.07); a fixed value is enough here
    embed_dim: int = 32  # width of CLIP's joint image-text space


# ----------------------------------------------------------------------------- the text corpus

def patch_coverage(colors: torch.Tensor, shapes: torch.Tensor, positions: torch.Tensor, image_size: int,
                   patch_size: int) -> torch.Tensor:
    """Which patches the shape covers (at least a quarter of their pixels) -> (N, G*G) bool, row-major."""
    masks = draw_shapes(colors, shapes, positions, image_size, noise_std=0.0).amax(1) > 0  # (N, S, S)
    g = image_size // patch_size
    tiles = masks.view(len(masks), g, patch_size, g, patch_size).float()  # (N, row, y, col, x)
    return tiles.mean((2, 4)).flatten(1) >= 0.25  # (N, G*G)


def scene_in_words(colors: torch.Tensor, shapes: torch.Tensor, positions: torch.Tensor, image_size: int = 64,
                   patch_size: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """The image as G*G word slots (N, G*G): <pad> on empty patches, the color and the shape word on covered ones.

    Covered patches alternate between the two words like the squares of a checkerboard, so both
    always appear; which word takes the white squares is drawn at random for every sample.
    """
    index = shapes * len(POSITIONS) + positions  # (N,): coverage depends on the shape and position only
    grid = torch.arange(len(SHAPES) * len(POSITIONS))
    covered = patch_coverage(torch.zeros_like(grid), grid // len(POSITIONS), grid % len(POSITIONS), image_size,
                             patch_size)[index]  # (N, P)
    g = image_size // patch_size
    rows, cols = torch.arange(g).repeat_interleave(g), torch.arange(g).repeat(g)  # (P,) each, row-major
    phase = torch.randint(2, (len(colors), 1), generator=generator)  # (N, 1)
    pick_color = (rows + cols + phase) % 2 == 0  # (N, P): a checkerboard, its colors swapped at random
    color_ids = torch.tensor([VOCAB[c] for c in COLORS])[colors][:, None]  # (N, 1)
    shape_ids = torch.tensor([VOCAB[s] for s in SHAPES])[shapes][:, None]  # (N, 1)
    words = torch.where(pick_color, color_ids, shape_ids)  # (N, P)
    return torch.where(covered, words, torch.full_like(words, PAD))  # (N, P)


@dataclass
class TextCorpus:
    """Text-only samples: scene slots (N, P), then the text's input_ids and labels (N, L) as in stage 2."""

    scenes: torch.Tensor
    input_ids: torch.Tensor
    labels: torch.Tensor
    configs: torch.Tensor  # (N, 3) color, shape, position indices
    kinds: list[str]  # "caption" or a question type

    def __len__(self) -> int:
        return len(self.scenes)


def make_text_corpus(n: int, configs=TRAIN_CONFIGS, image_size: int = 64, patch_size: int = 8,
                     seed: int = 0) -> TextCorpus:
    """n samples of the shapes world in words: a quarter captions, the rest questions with answers."""
    g = torch.Generator().manual_seed(seed)
    chosen = torch.tensor(configs)[torch.randint(len(configs), (n,), generator=g)]  # (n, 3)
    kinds_idx = torch.randint(4, (n,), generator=g).tolist()  # 0: caption, 1-3: a question type
    colors, shapes, positions = chosen.unbind(1)
    scenes = scene_in_words(colors, shapes, positions, image_size, patch_size, generator=g)
    questions, answers, kinds = [], [], []
    for (c, s, p), k in zip(chosen.tolist(), kinds_idx):
        caption = [VOCAB[COLORS[c]], VOCAB[SHAPES[s]]]
        if k == 0:
            questions.append([])
            answers.append(caption)
            kinds.append("caption")
        else:
            kind = QUESTION_TYPES[k - 1]
            answer = {"color": COLORS[c], "shape": SHAPES[s], "position": POSITIONS[p]}[kind]
            questions.append([VOCAB[w] for w in QUESTIONS[kind].split()])
            answers.append([VOCAB[answer]])
            kinds.append(kind)
    # A caption is an "answer" to the empty question: the same rule masks every question token.
    input_ids, labels = build_instruction_batch(questions, answers)
    return TextCorpus(scenes, input_ids, labels, chosen, kinds)


def lm_pretraining_loss(language_model: LanguageModel, scene_ids: torch.Tensor, input_ids: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    """Masked next-token loss of the text after the scene: (B, P), (B, L), (B, L) -> scalar."""
    ids = torch.cat([scene_ids, input_ids], dim=1)  # (B, P + L): the scene sits where the image will
    logits = language_model(language_model.token_embedding(ids))  # (B, P + L, V)
    return masked_mean_nll(logits[:, scene_ids.shape[1]:], labels)  # position P + t predicts label t


def pretrain_language_model(cfg: ModelConfig | None = None, stage0: Stage0Config | None = None, seed: int = 42,
                            device: str | torch.device = "cpu", progress: bool = True) -> tuple[LanguageModel, list[float]]:
    """Train a fresh LanguageModel on the text corpus -> (model, loss of every step)."""
    cfg, stage0 = cfg or ModelConfig(), stage0 or Stage0Config()
    torch.manual_seed(seed)
    lm = LanguageModel(cfg).to(device)
    corpus = make_text_corpus(stage0.lm_steps * stage0.lm_batch_size, image_size=cfg.image_size,
                              patch_size=cfg.patch_size, seed=seed)
    tensors = [t.to(device) for t in (corpus.scenes, corpus.input_ids, corpus.labels)]
    optimizer = torch.optim.Adam(lm.parameters(), lr=stage0.lm_lr)
    # Warm up for 10% of the steps, then anneal: with a constant 3e-3 the same 200 steps end 4x higher.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, stage0.lm_lr, total_steps=stage0.lm_steps, pct_start=0.1)
    losses = []
    lm.train()
    for step in tqdm(range(stage0.lm_steps), desc="stage 0: language model", disable=not progress, unit="step"):
        batch = slice(step * stage0.lm_batch_size, (step + 1) * stage0.lm_batch_size)  # every batch is new text
        loss = lm_pretraining_loss(lm, *(t[batch] for t in tensors))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    lm.eval()
    return lm, losses


@torch.no_grad()
def text_loss(language_model: LanguageModel, corpus: TextCorpus) -> float:
    """The LM's masked next-token loss on a text corpus (e.g. held-out pretraining text)."""
    device = next(language_model.parameters()).device
    was_training = language_model.training
    language_model.eval()
    loss = lm_pretraining_loss(language_model, corpus.scenes.to(device), corpus.input_ids.to(device),
                               corpus.labels.to(device)).item()
    language_model.train(was_training)
    return loss


@torch.no_grad()
@torch.no_grad()
def generate_text(language_model: LanguageModel, scene_ids: torch.Tensor, prompts: torch.Tensor,
                  max_new_tokens: int = 5) -> list[list[int]]:
    """Greedy continuation of text prompts (B, T) read after scenes in words (B, P) -> B token lists without <end>.

    The text-only twin of `evaluate.generate`: the scene's word slots stand where the image will.
    """
    was_training = language_model.training
    language_model.eval()
    device = next(language_model.parameters()).device
    scene = language_model.token_embedding(scene_ids.to(device))  # (B, P, C)
    replies = greedy_continue(language_model, scene, prompts.to(device), max_new_tokens)
    language_model.train(was_training)
    return replies


# ----------------------------------------------------------------------------- CLIP for the vision encoder

def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: (B, D), (B, D) -> scalar; row i of one matches row i of the other."""
    image_emb = F.normalize(image_emb, dim=-1)
    text_emb = F.normalize(text_emb, dim=-1)
    logits = image_emb @ text_emb.T / temperature  # (B, B): cosine similarity / temperature
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def describe(colors: torch.Tensor, shapes: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The description CLIP pairs with each image, "red circle top-left" -> (N, 3) token ids."""
    table = [[VOCAB[w] for w in names] for names in (COLORS, SHAPES, POSITIONS)]
    return torch.stack([torch.tensor(t)[i] for t, i in zip(table, (colors, shapes, positions))], dim=1)


class CLIPModel(nn.Module):
    """The vision encoder to pretrain, a bag-of-words text encoder, and a projection of each into one space."""

    def __init__(self, cfg: ModelConfig, embed_dim: int):
        super().__init__()
        self.vision_encoder = VisionEncoder(cfg.image_size, cfg.patch_size, cfg.vision_dim)
        self.image_projection = nn.Linear(cfg.vision_dim, embed_dim)
        self.word_embedding = nn.Embedding(cfg.vocab_size, embed_dim)
        self.text_projection = nn.Linear(embed_dim, embed_dim)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        # Max over patches, not the mean: the encoder is linear in the pixels, so a mean would forget where
        # the shape is (and CLIP could not train the position embedding); CLIP itself pools with attention.
        return self.image_projection(self.vision_encoder(images).amax(1))  # (B, embed_dim)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_projection(self.word_embedding(ids).mean(1))  # (B, embed_dim)


def clip_batch(step_seed: int, image_size: int, distinct: bool = True, configs=TRAIN_CONFIGS):
    """One image per training scene in random order (distinct=True), or as many scenes drawn with replacement."""
    g = torch.Generator().manual_seed(step_seed)
    table = torch.tensor(configs)  # (C, 3)
    pick = torch.randperm(len(table), generator=g) if distinct else torch.randint(len(table), (len(table),), generator=g)
    colors, shapes, positions = table[pick].unbind(1)
    images = draw_shapes(colors, shapes, positions, image_size, generator=g)  # (C, 3, S, S), fresh noise
    return images, describe(colors, shapes, positions)


def pretrain_vision_encoder(cfg: ModelConfig | None = None, stage0: Stage0Config | None = None, seed: int = 42,
                            device: str | torch.device = "cpu", progress: bool = True,
                            distinct: bool = True) -> tuple[CLIPModel, list[float]]:
    """Train a CLIPModel on (image, description) batches -> (model, loss of every step)."""
    cfg, stage0 = cfg or ModelConfig(), stage0 or Stage0Config()
    torch.manual_seed(seed)
    clip = CLIPModel(cfg, stage0.embed_dim).to(device)
    optimizer = torch.optim.Adam(clip.parameters(), lr=stage0.clip_lr)
    losses = []
    clip.train()
    for step in tqdm(range(stage0.clip_steps), desc="stage 0: vision encoder", disable=not progress, unit="step"):
        images, texts = clip_batch(seed * 100_003 + step, cfg.image_size, distinct)
        loss = clip_loss(clip.encode_image(images.to(device)), clip.encode_text(texts.to(device)), stage0.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    clip.eval()
    return clip, losses


@torch.no_grad()
def clip_similarity(clip: CLIPModel, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every image with every description: (N, 3, S, S), (C, 3) -> (N, C)."""
    was_training = clip.training
    clip.eval()
    device = next(clip.parameters()).device
    image_emb = F.normalize(clip.encode_image(images.to(device)), dim=-1)  # (N, D)
    text_emb = F.normalize(clip.encode_text(texts.to(device)), dim=-1)  # (C, D)
    clip.train(was_training)
    return (image_emb @ text_emb.T).cpu()


def retrieval_accuracy(clip: CLIPModel, images: torch.Tensor, texts: torch.Tensor,
                       candidates: torch.Tensor | None = None) -> float:
    """Fraction of images whose most similar candidate description is their own text.

    images (N, 3, S, S); texts (N, 3), each image's own description; candidates (C, 3), default:
    the descriptions of all 30 scenes, held-out ones included.
    """
    if candidates is None:
        table = torch.tensor(ALL_CONFIGS)  # (30, 3)
        candidates = describe(*table.unbind(1))
    best = candidates[clip_similarity(clip, images, candidates).argmax(1)]  # (N, 3)
    return (best == texts.cpu()).all(1).float().mean().item()


# ----------------------------------------------------------------------------- building, caching, loading

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"  # package data: the default seed, built on a CPU


def cache_dir() -> Path:
    """Where `tutor pretrain` writes: $TUTOR_CACHE, else ~/.cache/tutor_lib."""
    return Path(os.environ.get("TUTOR_CACHE") or Path.home() / ".cache" / "tutor_lib")


def _base_config(cfg: ModelConfig) -> ModelConfig:
    # Stage 0 reads the base 20-token vocabulary; notebook 08's larger vocabulary adds rows on load.
    return ModelConfig(**{**asdict(cfg), "vocab_size": VOCAB_SIZE})


def weights_name(cfg: ModelConfig | None = None, stage0: Stage0Config | None = None, seed: int = 42) -> str:
    """The file name of a stage-0 build: a fingerprint of the model sizes, the recipe and the seed."""
    recipe = {"model": asdict(_base_config(cfg or ModelConfig())), "stage0": asdict(stage0 or Stage0Config()),
              "seed": seed, "format": FORMAT_VERSION}
    return f"stage0-{hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]}.pt"


def build_stage0(cfg: ModelConfig | None = None, stage0: Stage0Config | None = None, seed: int = 42,
                 device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Pretrain both parts from nothing -> {"language_model", "vision_encoder": state dicts, "info": ...}."""
    cfg, stage0 = _base_config(cfg or ModelConfig()), stage0 or Stage0Config()
    start = time.perf_counter()
    lm, lm_losses = pretrain_language_model(cfg, stage0, seed, device, progress)
    lm_s = time.perf_counter() - start
    clip, clip_losses = pretrain_vision_encoder(cfg, stage0, seed, device, progress)
    clip_s = time.perf_counter() - start - lm_s
    info = {"seed": seed, "device": str(device), "torch": str(torch.__version__), "stage0": asdict(stage0),
            "seconds": {"language_model": lm_s, "vision_encoder": clip_s},
            "losses": {"language_model": lm_losses, "vision_encoder": clip_losses}}
    return {"language_model": {k: v.cpu() for k, v in lm.state_dict().items()},
            "vision_encoder": {k: v.cpu() for k, v in clip.vision_encoder.state_dict().items()}, "info": info}


def save_stage0(weights: dict, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(".tmp")
    torch.save(weights, tmp)
    tmp.replace(path)  # a reader never sees half a file
    return path


def find_stage0(name: str) -> Path | None:
    """The cached build (from `tutor pretrain`) if there is one, else the shipped one, else None."""
    for folder in (cache_dir(), SHIPPED_DIR):
        if (folder / name).exists():
            return folder / name
    return None


def _copy_rows(target: torch.Tensor, source: torch.Tensor) -> None:
    # A larger vocabulary (notebook 08) keeps the new rows' fresh init, as resizing an LLM's embeddings does.
    with torch.no_grad():
        target[: len(source)].copy_(source)


def load_stage0(model: MultimodalModel, seed: int = 42, stage0: Stage0Config | None = None, progress: bool = True,
                verbose: bool = True) -> dict:
    """Put pretrained weights into model.vision_encoder and model.language_model (built first if not cached).

    Returns the build's info plus "source" (the file, or "trained now") and "load_seconds".
    """
    start = time.perf_counter()
    name = weights_name(model.config, stage0, seed)
    path = find_stage0(name)
    weights = None
    if path is not None:
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
            source = str(path)
        except Exception as error:  # a damaged or foreign file: say so and rebuild, never crash
            print(f"Stage 0: could not read {path} ({type(error).__name__}); building the weights again")
    if weights is None:
        device = next(model.parameters()).device
        weights = build_stage0(model.config, stage0, seed, device, progress)
        try:
            source = f"trained now, saved to {save_stage0(weights, cache_dir(), name)}"
        except OSError as error:  # a read-only home: still usable, just not cached
            source = f"trained now, not saved ({error})"
    model.vision_encoder.load_state_dict(weights["vision_encoder"])
    lm_state = weights["language_model"]
    own = model.language_model.state_dict()
    for key in ("token_embedding.weight", "output_head.weight", "output_head.bias"):
        if own[key].shape != lm_state[key].shape:  # notebook 08's extra token
            _copy_rows(own[key], lm_state[key])
            lm_state = {**lm_state, key: own[key]}
    model.language_model.load_state_dict(lm_state)
    info = {**weights["info"], "source": source, "load_seconds": time.perf_counter() - start}
    if verbose:
        lm_loss, clip_loss_ = info["losses"]["language_model"][-1], info["losses"]["vision_encoder"][-1]
        print(f"Stage 0 (pretrained parts) from {source} in {info['load_seconds']:.2f} s: "
              f"language model text loss {lm_loss:.3f}, vision encoder CLIP loss {clip_loss_:.3f}")
    return info


def pretrained_model(cfg: ModelConfig | None = None, seed: int = 42, progress: bool = True, verbose: bool = True,
                     **overrides) -> MultimodalModel:
    """A MultimodalModel whose vision encoder and language model come from stage 0 (the projector is fresh)."""
    model = MultimodalModel(cfg, **overrides)
    load_stage0(model, seed, progress=progress, verbose=verbose)
    return model
