"""What every pretraining method is: an ``nn.Module`` with an encoder, a loss and declared hooks.

The one trainer and the pipeline talk to methods only through this class::

    method = Builder(encoder, data, **options)     # data: the run's DataBundle
    out = method(batch)                             # {"loss": scalar, ...more scalars to log}
    method.on_train_step_end(step, total_steps)     # after every optimiser step (EMA teachers, phases)

``consumes`` lists the batch keys ``forward`` reads; the recipe loader checks them against the keys the
dataset produces (:mod:`mmssl.data.keys`) before anything is built. A method whose needs depend on its
options overrides :meth:`consumed_keys`. Optional hooks have no-op defaults, so nothing is looked up by
name: :meth:`extra_encoders` (more encoders to save, e.g. cross-modal towers) and :meth:`save_figures`
(pictures of what the method does).

A registered method is a ``Method`` subclass, or a function annotated to return one (a preset of a
shared class, e.g. ``simclr`` of the two-view method): :func:`method_class` reads that annotation.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mmssl.errors import ConfigError


class Method(nn.Module):
    """Base class of every pretraining method (see the module docstring)."""

    #: batch keys ``forward`` reads
    consumes: ClassVar[frozenset[str]] = frozenset()

    encoder: nn.Module

    @classmethod
    def consumed_keys(cls, options: Mapping[str, Any]) -> frozenset[str]:
        """The batch keys ``forward`` reads when built with ``options`` (the recipe's ``method`` section)."""
        return frozenset(str(k) for k in cls.consumes)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch) -> {{'loss': ...}}")

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Called by the trainer after optimiser step ``step`` (1-based) of ``total_steps``."""

    def extra_encoders(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """More encoders to save beside ``encoder.pt``: ``{key: (module, {"name", "kwargs"})}``."""
        return {}

    def save_figures(self, folder: Path, data: Any, device: torch.device) -> None:
        """Save pictures of what the method does (reconstructions, colourisations ...) under ``folder``."""


def method_class(builder: Callable[..., Any], name: str = "") -> type[Method]:
    """The :class:`Method` subclass a builder makes: the builder itself, or its return annotation."""
    if isinstance(builder, type) and issubclass(builder, Method):
        return builder
    returned = typing.get_type_hints(builder).get("return")
    if isinstance(returned, type) and issubclass(returned, Method):
        return returned
    raise ConfigError(
        f"method '{name or getattr(builder, '__name__', builder)}' must be a Method subclass or a function "
        f"annotated to return one (got return annotation {returned!r})"
    )
