"""Greedy generation stops at <end>, and accuracy is exact match."""

from __future__ import annotations

import torch

from tutor_lib.data import make_dataset
from tutor_lib.evaluate import accuracy_table, answer_question, answer_questions, evaluate, generate
from tutor_lib.vocab import END, START


def test_generate_stops_at_end_and_excludes_it():
    torch.manual_seed(0)
    from tutor_lib.model import ModelConfig, MultimodalModel

    model = MultimodalModel(ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=16))
    images, prompts = torch.rand(3, 3, 16, 16), torch.tensor([[START, 3, 4, 9]] * 3)
    out = generate(model, images, prompts, max_new_tokens=4)
    assert len(out) == 3 and all(len(seq) <= 4 and END not in seq for seq in out)
    single = answer_question(model, images[0], [3, 4, 9], max_new_tokens=4)
    assert single == out[0]
    assert generate(model, images, prompts, max_new_tokens=0) == [[], [], []]


def test_generate_matches_step_by_step_full_forward():
    """The cached-image fast path gives the same tokens as re-running model(images, ids) each step."""
    torch.manual_seed(1)
    from tutor_lib.model import ModelConfig, MultimodalModel

    model = MultimodalModel(ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=16)).eval()
    image, question = torch.rand(3, 16, 16), [6, 7, 8, 9]
    ids, slow = torch.tensor([[START, *question]]), []
    with torch.no_grad():
        for _ in range(5):
            nxt = model(image[None], ids)[0, -1].argmax().item()
            if nxt == END:
                break
            slow.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    assert answer_question(model, image, question) == slow


def test_evaluate_is_exact_match_per_question_type(monkeypatch):
    ds = make_dataset(12, seed=0)
    truth = [ds[i]["answer_tokens"] for i in range(len(ds))]
    predictions = [list(t) for t in truth]
    predictions[0] = predictions[0] + predictions[0]  # right word, then rambling: wrong
    predictions[1] = []  # nothing: wrong
    import tutor_lib.evaluate as ev

    monkeypatch.setattr(ev, "answer_questions", lambda model, dataset: predictions)
    result = evaluate(None, ds)
    assert result["n"] == 12 and abs(result["overall"] - 10 / 12) < 1e-9
    kinds = {ds[0]["question_type"], ds[1]["question_type"]}
    assert all(result[k] < 1.0 for k in kinds)
    table = accuracy_table({"IID test": result})
    assert "IID test" in table and "83.3%" in table


def test_answer_questions_batches_mixed_lengths():
    torch.manual_seed(0)
    from tutor_lib.model import ModelConfig, MultimodalModel

    model = MultimodalModel(ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=16))
    ds = make_dataset(9, image_size=16, seed=0)
    batched = answer_questions(model, ds, batch_size=2)
    one_by_one = [answer_question(model, ds[i]["image"], ds[i]["question_tokens"]) for i in range(len(ds))]
    assert batched == one_by_one
