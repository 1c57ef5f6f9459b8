r"""Mixed precision and fast kernels for a training run: ``train.precision``, ``train.channels_last``,
``train.compile``.

``precision`` is ``"fp32"`` (plain float32), ``"bf16"`` or ``"fp16"``: the forward pass and the loss run
under :func:`torch.autocast` in that dtype (matrix products and convolutions in 16 bits, reductions such as
the cross-entropy in float32), while the parameters (the "master weights"), their gradients and the
optimizer state (the momentum :math:`m_k` of paper eq. (3)) stay in ``train.dtype`` = float32, so the update

.. math:: m_{k+1}=\beta m_k+(1-\beta)\,\hat g_k,\qquad x_{k+1}=x_k-\eta\,m_{k+1}

is computed in float32 from a gradient :math:`\hat g_k=\nabla f_{\omega_k}(x_k)\,(1+\delta_k)` whose relative
rounding :math:`|\delta_k|` is of the order of the 16-bit unit roundoff, :math:`2^{-8}` for bf16 (8 significant
bits) and :math:`2^{-11}` for fp16 (11 significant bits).  fp16 has a narrow exponent range (largest value
65504, smallest normal :math:`6\cdot10^{-5}`), so its gradients go through a gradient scaler
(:class:`torch.amp.GradScaler`): the loss is multiplied by a scale :math:`S` before the backward pass, the
gradients divided by :math:`S` before the update, and a step whose scaled gradients hold an inf or NaN is
skipped (no update, no momentum update; the step counter, data and learning-rate schedule still advance) and
:math:`S` halved.  Such a skipped step is not divergence; a non-finite *loss* still is (the run stops with
status ``"diverged"``, as in float32).  bf16 has float32's exponent range and needs no scaler.

``channels_last`` stores the parameters and the 4-D inputs of a convolutional network in
``torch.channels_last`` (NHWC), which tensor-core convolution kernels prefer; ``compile`` runs the model through
:func:`torch.compile`.  Neither changes the computed function, only the kernels and the order of floating-point
operations (results agree to float32 rounding), so neither is part of a run's result key
(:meth:`empirical.config.RunConfig.identity`); all three are stated in the record's ``info``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "AUTOCAST_DTYPES",
    "CompileUnavailableError",
    "autocast",
    "backward",
    "check_autocast_supported",
    "compile_model",
    "has_conv2d",
    "inputs_channels_last",
    "make_scaler",
    "to_channels_last",
]

#: The autocast dtype of each ``train.precision`` (``"fp32"``: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class CompileUnavailableError(RuntimeError):
    """``train.compile = true`` where :func:`torch.compile` cannot run (one-line message saying what to set)."""


@contextlib.contextmanager
def autocast(device_type: str, precision: str) -> Iterator[None]:
    """:func:`torch.autocast` to the dtype of ``precision`` on ``device_type``; nothing for ``"fp32"``."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type, dtype=dtype):
        yield


def check_autocast_supported(device_type: str, precision: str) -> None:
    """Raise ``ValueError`` (one line naming ``train.precision``) if this torch cannot autocast to ``precision``
    on ``device_type`` (older releases have no float16 autocast on the CPU and would silently run in float32)."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type, dtype=dtype):
                enabled = torch.is_autocast_enabled(device_type)
        except (RuntimeError, TypeError) as exc:
            enabled, caught = False, [str(exc)]  # type: ignore[list-item]
    if not enabled:
        reason = str(caught[0].message if hasattr(caught[0], "message") else caught[0]) if caught else "disabled"
        raise ValueError(
            f"train.precision = {precision!r} is not supported on {device_type!r} by torch {torch.__version__} "
            f"({reason.splitlines()[0]}); use 'fp32' or 'bf16', or a device that supports it"
        )


def make_scaler(device_type: str, precision: str) -> torch.amp.GradScaler | None:
    """The gradient scaler of an fp16 run (``None`` otherwise: bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device_type) if precision == "fp16" else None


def has_conv2d(model: nn.Module) -> bool:
    """Whether ``model`` has a 2-D convolution (a module whose 4-D tensors ``channels_last`` would reorder)."""
    return any(isinstance(module, nn.Conv2d) for module in model.modules())


def to_channels_last(model: nn.Module, model_name: str) -> None:
    """Put ``model``'s 4-D parameters in ``torch.channels_last``; ``ValueError`` for a model without 2-D
    convolutions, where the setting would silently do nothing (a config mistake, not a speed-up)."""
    if not has_conv2d(model):
        raise ValueError(
            f"train.channels_last = true needs a convolutional model (4-D inputs); model {model_name!r} has no "
            "2-D convolution: set channels_last = false"
        )
    model.to(memory_format=torch.channels_last)


def inputs_channels_last(inputs: Any) -> Any:
    """4-D input tensors in ``torch.channels_last`` (others, and dicts of token ids, unchanged)."""
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


_UNAVAILABLE = "set train.compile = false to train without it"


def compile_model(model: nn.Module) -> Callable[..., Any]:
    """``torch.compile(model)`` as a callable that shares ``model``'s parameters (``model`` itself, and so the
    checkpoints' ``state_dict``, keep their names: no ``_orig_mod.`` prefix).

    Where compilation is unavailable (an unsupported Python, no C++ compiler for the CPU backend, no Triton for
    the GPU one, any ``torch._dynamo`` or ``torch._inductor`` error when it really compiles: the first
    evaluation call, the first training call, the first backward pass through :func:`backward`) it raises
    :class:`CompileUnavailableError` with a one-line message telling the user to set ``compile = false``.
    An interruption that is not an :class:`Exception` (``KeyboardInterrupt``, a time budget's
    ``BaseException``) is re-raised as itself, also when the compiler stack has wrapped it.
    """
    try:
        compiled = _torch_compile(model)
    except Exception as exc:  # e.g. "Python 3.x not yet supported for torch.compile"
        _reraise_interruption(exc)
        raise CompileUnavailableError(
            f"torch.compile is unavailable here ({_first_line(exc)}); {_UNAVAILABLE}"
        ) from exc
    return _FirstCallGuard(compiled, model)


def _torch_compile(model: nn.Module) -> Callable[..., Any]:
    """:func:`torch.compile` (one place, so that tests can pass a backend)."""
    return torch.compile(model)


def backward(forward: Any, tensor: torch.Tensor) -> None:
    """``tensor.backward()``; through a compiled model's guard (its first backward pass compiles the backward
    graph, whose failure then gets the one-line :class:`CompileUnavailableError`)."""
    if isinstance(forward, _FirstCallGuard):
        forward.backward(tensor)
    else:
        tensor.backward()


class _FirstCallGuard:
    """Calls the compiled module; turns a compiler failure of its first call in each mode (evaluation: no
    gradients or ``eval()``; training: gradients and ``train()``, a different graph) and of the first backward
    pass into a clear message.  Its ``train``/``eval``/``training`` are the uncompiled module's (whose mode the
    compiled one follows)."""

    def __init__(self, compiled: Callable[..., Any], model: nn.Module) -> None:
        self.compiled, self.model = compiled, model
        self.done: set[str] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stage = "training call" if self.model.training and torch.is_grad_enabled() else "evaluation call"
        if stage in self.done:
            return self.compiled(*args, **kwargs)
        with _compile_errors(stage):
            result = self.compiled(*args, **kwargs)
        self.done.add(stage)
        return result

    def backward(self, tensor: torch.Tensor) -> None:
        if "backward pass" in self.done:
            tensor.backward()
            return
        with _compile_errors("backward pass"):
            tensor.backward()
        self.done.add("backward pass")

    def train(self, mode: bool = True) -> nn.Module:
        return self.model.train(mode)

    def eval(self) -> nn.Module:
        return self.model.eval()

    @property
    def training(self) -> bool:
        return self.model.training


@contextlib.contextmanager
def _compile_errors(stage: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        _reraise_interruption(exc)
        if not _is_compile_error(exc):
            raise
        raise CompileUnavailableError(
            f"torch.compile failed at the first {stage} ({_first_line(exc)}); {_UNAVAILABLE}"
        ) from exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from or during (``__cause__``/``__context__``, transitively)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        todo.extend(e for e in (error.__cause__, error.__context__) if e is not None)


def _reraise_interruption(exc: BaseException) -> None:
    """Re-raise the first non-:class:`Exception` in ``exc``'s chain (the compiler stack wraps what it catches:
    a time budget running out or a ``KeyboardInterrupt`` during compilation is not "compile unavailable")."""
    for error in _chain(exc):
        if not isinstance(error, Exception):
            raise error


def _is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the compiler stack (dynamo, inductor, a backend, a missing C++ compiler)."""
    for error in _chain(exc):
        module = type(error).__module__ or ""
        if module.startswith(("torch._dynamo", "torch._inductor", "torch.fx", "triton")):
            return True
        if isinstance(error, (FileNotFoundError, OSError)) and "compil" in str(error).lower():
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")
