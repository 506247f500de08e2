"""From the toy to the real thing: our records and stages on Hugging Face's LlavaForConditionalGeneration.

Needs the optional extra: `pip install "tutor-lib[hf]"` (or `pip install transformers`).

The model is built from a tiny *random* configuration (`tiny_llava_config`): no download, so it
runs offline and in CI. It has LLaVA-1.5's three boxes under their Hugging Face names:

    vision_tower            a CLIP vision transformer; LLaVA reads its second-to-last layer
                            (vision_feature_layer=-2) and drops the CLS token
                            (vision_feature_select_strategy="default"): one feature per patch
    multi_modal_projector   linear_1 -> GELU -> linear_2: LLaVA-1.5's "mlp2x_gelu", our Projector
    language_model          a Llama decoder (Vicuna in LLaVA-1.5), plus lm_head

Text goes in with LLaVA-1.5's template, `USER: <image>\\n{question} ASSISTANT: {answer}</s>`,
one `<image>` placeholder that is expanded to one token per patch before the model sees it, and
labels that copy input_ids except -100 on everything but the answers and their `</s>`. Unlike
our toy, the labels are *not* shifted: the model shifts them inside its loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IGNORE_INDEX = -100
# A word-level vocabulary: real checkpoints bring their own tokenizer (LlamaTokenizer), this keeps us offline.
SPECIAL = ("<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:")
WORDS = ("what", "color", "shape", "where", "is", "it", "?", "and", "red", "blue", "green", "circle", "square",
         "top-left", "top-right", "bottom-left", "bottom-right", "center")
HF_VOCAB: dict[str, int] = {w: i for i, w in enumerate(SPECIAL + WORDS)}
PAD_ID, BOS_ID, EOS_ID, UNK_ID, IMAGE_ID = (HF_VOCAB[w] for w in ("<pad>", "<s>", "</s>", "<unk>", "<image>"))
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's pixel normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REAL_CHECKPOINT = "llava-hf/llava-interleave-qwen-0.5b-hf"  # a small real LLaVA (about 0.9 B parameters)


def require_transformers():
    """Import transformers, or fail with the command that installs it."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError("this part needs Hugging Face transformers: pip install 'tutor-lib[hf]' "
                          "(or pip install transformers)") from error
    return transformers


def tiny_llava_config(image_size: int = 64, patch_size: int = 8, vision_dim: int = 128, llm_dim: int = 64,
                      num_layers: int = 2, num_heads: int = 2):
    """A LlavaConfig of our toy's sizes: CLIP vision tower, mlp2x_gelu projector, Llama language model."""
    t = require_transformers()
    vision = t.CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=vision_dim,
                                intermediate_size=2 * vision_dim, num_hidden_layers=num_layers,
                                num_attention_heads=num_heads)
    text = t.LlamaConfig(vocab_size=len(HF_VOCAB), hidden_size=llm_dim, intermediate_size=4 * llm_dim,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=256, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    return t.LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
                         image_seq_length=(image_size // patch_size) ** 2, projector_hidden_act="gelu",
                         vision_feature_layer=-2, vision_feature_select_strategy="default")


def tiny_llava(seed: int = 0, **sizes):
    """LlavaForConditionalGeneration from tiny_llava_config, randomly initialised (seeded), in eval mode."""
    t = require_transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = t.LlavaForConditionalGeneration(tiny_llava_config(**sizes))
    return model.eval()


def _first(*modules):
    return next((m for m in modules if m is not None), None)


def boxes(model) -> dict[str, torch.nn.Module]:
    """LLaVA's three boxes (and the LM head) of a LlavaForConditionalGeneration, in old and new transformers layouts."""
    inner = getattr(model, "model", model)
    found = {name: _first(getattr(inner, name, None), getattr(model, name, None))
             for name in ("vision_tower", "multi_modal_projector", "language_model")}
    found["lm_head"] = _first(getattr(model, "lm_head", None), getattr(found["language_model"], "lm_head", None))
    missing = [name for name, module in found.items() if module is None]
    if missing:
        raise ValueError(f"not a LlavaForConditionalGeneration: no {', '.join(missing)}")
    return found


def set_llava_stage(model, stage: int) -> None:
    """LLaVA's freezing on the Hugging Face model: stage 1 trains the projector, stage 2 also the LM; never the vision tower."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 (feature alignment) or 2 (instruction tuning), got {stage!r}")
    parts = boxes(model)
    model.requires_grad_(False)
    parts["multi_modal_projector"].requires_grad_(True)
    if stage == 2:
        parts["language_model"].requires_grad_(True)
        parts["lm_head"].requires_grad_(True)


def encode_words(text: str) -> list[int]:
    """Word-level ids of text (split on whitespace); unknown words raise KeyError."""
    unknown = [w for w in text.split() if w not in HF_VOCAB]
    if unknown:
        raise KeyError(f"not in the vocabulary: {unknown}")
    return [HF_VOCAB[w] for w in text.split()]


def expand_image_tokens(ids: Sequence[int], image_seq_length: int) -> list[int]:
    """Each <image> placeholder -> image_seq_length copies (what LlavaProcessor does before the model)."""
    out = []
    for i in ids:
        out.extend([IMAGE_ID] * image_seq_length if i == IMAGE_ID else [i])
    return out


def chat_example(record: dict, image_seq_length: int) -> tuple[list[int], list[int]]:
    """A LLaVA record -> (input_ids, labels) with LLaVA-1.5's template; only the answers and their </s> are labels.

    `<s> USER: <image>\\n q1 ASSISTANT: a1 </s> USER: q2 ASSISTANT: a2 </s>`, built piece by piece,
    each piece's labels next to its ids, so the mask can never drift from the text.
    """
    conversations = record["conversations"]
    if not conversations or len(conversations) % 2:
        raise ValueError(f"record {record.get('id')!r}: 'conversations' must be human/gpt pairs")
    pieces = [([BOS_ID], False)]
    for human, gpt in zip(conversations[0::2], conversations[1::2]):
        if human.get("from") != "human" or gpt.get("from") != "gpt":
            raise ValueError(f"record {record.get('id')!r}: turns must alternate 'human' and 'gpt'")
        prompt = expand_image_tokens(encode_words(f"USER: {human['value']} ASSISTANT:"), image_seq_length)
        pieces += [(prompt, False), (encode_words(gpt["value"]) + [EOS_ID], True)]
    ids = [t for tokens, _ in pieces for t in tokens]
    labels = [t if supervised else IGNORE_INDEX for tokens, supervised in pieces for t in tokens]
    if all(t == IGNORE_INDEX for t in labels):
        raise ValueError(f"record {record.get('id')!r}: no supervised token (would train on a loss of 0)")
    return ids, labels


def caption_example(caption: str, image_seq_length: int) -> tuple[list[int], list[int]]:
    """Stage 1's "plain" template: `<image> caption </s>`, the caption and </s> supervised, the image not."""
    ids = [IMAGE_ID] * image_seq_length + encode_words(caption) + [EOS_ID]
    return ids, [IGNORE_INDEX] * image_seq_length + ids[image_seq_length:]


def collate(examples: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Pad (input_ids, labels) pairs on the right -> input_ids, attention_mask, labels, all (B, L)."""
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), PAD_ID, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    for b, (ids, lab) in enumerate(examples):
        input_ids[b, : len(ids)], labels[b, : len(lab)] = torch.tensor(ids), torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": (input_ids != PAD_ID).long(), "labels": labels}


def pixel_values(images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, S, S) in [0, 1] -> CLIP-normalised pixel_values (what CLIPImageProcessor does after resizing)."""
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def load_toy_projector(model, projector) -> None:
    """Copy our Projector (fc1, fc2) into the Hugging Face multi_modal_projector (linear_1, linear_2): same box."""
    hf = boxes(model)["multi_modal_projector"]
    with torch.no_grad():
        for ours, theirs in ((projector.fc1, hf.linear_1), (projector.fc2, hf.linear_2)):
            if ours.weight.shape != theirs.weight.shape:
                raise ValueError(f"projector shapes differ: ours {tuple(ours.weight.shape)}, "
                                 f"Hugging Face's {tuple(theirs.weight.shape)}")
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)


def train_step(model, batch: dict[str, torch.Tensor], lr: float = 1e-3) -> tuple[float, dict[str, int]]:
    """One AdamW step on the parameters that require grad -> (loss, {box: number of weight tensors changed})."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires grad: call set_llava_stage(model, 1 or 2) first")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    model.eval()
    changed = {}
    for box, module in boxes(model).items():
        names = {id(p) for p in module.parameters()}
        changed[box] = sum(1 for name, p in model.named_parameters()
                           if id(p) in names and not torch.equal(before[name], p.detach()))
    return loss.item(), changed


def count_box_parameters(model) -> dict[str, int]:
    """Parameters per box of a LlavaForConditionalGeneration."""
    return {name: sum(p.numel() for p in module.parameters()) for name, module in boxes(model).items()}
