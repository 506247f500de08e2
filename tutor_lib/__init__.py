"""tutor_lib: the reference implementations, checks, plots and tools of the LLaVA shapes course.

Each module holds one idea of the recipe, in the order the notebooks teach them:
vocab -> data -> losses -> model -> batching -> train -> evaluate (and plots, checks, cli).
"""

from .augment import hflip_example
from .batching import build_caption_batch, build_conversation_batch, build_instruction_batch
from .data import ShapesDataset, draw_shape, make_dataset, make_qa, make_splits
from .evaluate import answer_question  # not evaluate(): tutor_lib.evaluate must stay the module
from .losses import masked_mean_nll, token_nll
from .model import ModelConfig, MultimodalModel, Projector, set_stage
from .runtime import pick_device, seed_everything, setup
from .train import train_both_stages, train_stage1, train_stage2

__version__ = "0.1.0"

__all__ = [
    "ModelConfig", "MultimodalModel", "Projector", "ShapesDataset",
    "answer_question", "build_caption_batch", "build_conversation_batch", "build_instruction_batch",
    "draw_shape", "hflip_example", "make_dataset", "make_qa", "make_splits",
    "masked_mean_nll", "pick_device", "seed_everything", "set_stage", "setup", "token_nll",
    "train_both_stages", "train_stage1", "train_stage2",
]
