"""Every plotting function returns a figure with the expected content."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from tutor_lib.data import make_dataset  # noqa: E402
from tutor_lib.model import ModelConfig, MultimodalModel  # noqa: E402
from tutor_lib.plots import plot_causal_mask, plot_loss_curves, plot_predictions, plot_samples  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


def test_sample_grid_titles_show_question_and_answer():
    fig = plot_samples(make_dataset(7, seed=0), n=7, cols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 7 and all(t.startswith("Q: ") and "\nA: " in t for t in titles)


def test_loss_curves_one_panel_per_stage():
    fig = plot_loss_curves({"stage1": [3.0, 2.0], "stage2": [1.0, 0.5, 0.1]})
    assert len(fig.axes) == 2 and "final loss 0.1000" in fig.axes[1].get_title()
    assert len(plot_loss_curves({"stage2": [1.0]}).axes) == 1


def test_prediction_grid_colours_by_correctness():
    torch.manual_seed(0)
    ds = make_dataset(4, image_size=16, seed=0)
    model = MultimodalModel(ModelConfig(image_size=16, patch_size=8, vision_dim=8, llm_dim=16))
    answers = [ds[0]["answer_tokens"], [], ds[2]["answer_tokens"], [3]]
    fig = plot_predictions(model, ds, n=4, cols=2, answers=answers)
    colors = [ax.title.get_color() for ax in fig.axes[:4]]
    assert colors == ["tab:green", "tab:red", "tab:green", "tab:red"]
    assert "pred: (nothing)" in fig.axes[1].get_title()
    plot_predictions(model, ds, n=2)  # computes its own answers


def test_causal_mask_figure():
    fig = plot_causal_mask(4, ["<start>", "what", "color", "?"])
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (8, 8) and image[0, 1] == 0 and image[7, 0] == 1
