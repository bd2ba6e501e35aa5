"""Any timm model as an image encoder: ``encoder: {name: timm, model: resnet10t}``.

The model is built with ``timm.create_model(model, pretrained=False, num_classes=0, **options)`` (never
pretrained: nothing is downloaded; initial weights come from a local file with ``encoder.weights``, see
:func:`mmssl.encoders.build_encoder`) and follows the toolkit contract, ``{"global": [B, D],
"tokens": [B, N, D]}`` with ``D = out_dim = model.num_features``:

- ``tokens``: ``model.forward_features(x)``. A feature map (``[B, C, h, w]``, or ``[B, h, w, C]`` for the
  models whose ``output_fmt`` is ``NHWC``, e.g. Swin) gives its ``h*w`` cells; a token sequence
  (ViT-like, ``[B, T, D]``) gives its patch tokens, the ``model.num_prefix_tokens`` class/register
  tokens dropped.
- ``global``: the model's own pooling, ``model.forward_head(features, pre_logits=True)`` (average pool for
  CNNs, the class token or the token mean for ViTs, as the model is configured). A model whose head adds
  a hidden layer of another width (``head_hidden_size != num_features``, e.g. MobileNetV3) gets the mean of
  its tokens instead, so that ``global`` and ``tokens`` share ``out_dim``.

Initial weights (``weights: PATH``) may be a bare timm state dict; a ViT's position table trained at
another image size is resampled to this model's grid (:meth:`TimmEncoder.adapt_initial_weights`).
``mmssl export RUN --format timm`` writes the inner model's own state dict (:mod:`mmssl.export.timm_keys`),
rebuilt by the same ``timm.create_model`` call (:attr:`TimmEncoder.create_args`).

timm is an optional dependency (``pip install mmssl[timm]``); it is imported only when such an encoder is
built.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmssl.errors import ConfigError

log = logging.getLogger(__name__)

TIMM_EXTRA = "pip install mmssl[timm]"


def import_timm() -> Any:
    """The ``timm`` module, or a :class:`ConfigError` naming the extra that installs it."""
    try:
        import timm
    except ImportError as err:
        raise ConfigError(
            f"encoder 'timm' needs the timm package, which is not installed ({err}); install it with "
            f"`{TIMM_EXTRA}`"
        ) from None
    return timm


class TimmEncoder(nn.Module):
    """A timm model (``self.model``, classifier removed) wrapped to return ``{"global", "tokens"}``.

    ``create_args``: the keyword arguments ``timm.create_model(name, pretrained=False, num_classes=0,
    **create_args)`` was called with (``in_chans``, ``img_size``, ...), so that an export rebuilds the very
    same model."""

    def __init__(self, model: nn.Module, name: str, create_args: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.model_name = name
        self.create_args: dict[str, Any] = dict(create_args or {})
        self.out_dim: int = int(model.num_features)
        self.num_prefix_tokens: int = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.channels_last_output = str(getattr(model, "output_fmt", "NCHW")) == "NHWC"
        head_dim = getattr(model, "head_hidden_size", None)
        self.own_pooling = head_dim is None or int(head_dim) == self.out_dim

    def tokens_of(self, features: torch.Tensor) -> torch.Tensor:
        """``forward_features`` output -> ``[B, N, out_dim]`` tokens (no prefix tokens)."""
        if features.ndim == 4:
            if self.channels_last_output:
                return features.flatten(1, 2)
            return features.flatten(2).transpose(1, 2)
        if features.ndim == 3:
            return features[:, self.num_prefix_tokens :]
        raise ValueError(
            f"timm model '{self.model_name}' gave forward_features of shape {tuple(features.shape)}; "
            "expected a feature map [B, C, h, w] or tokens [B, T, D]"
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.model.forward_features(x)
        tokens = self.tokens_of(features)
        if self.own_pooling:
            pooled = self.model.forward_head(features, pre_logits=True)
        else:
            pooled = tokens.mean(dim=1)
        return {"global": pooled.flatten(1), "tokens": tokens}

    def adapt_initial_weights(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict for ``encoder.weights`` as this wrapper names it: a bare timm state dict (keys
        without the ``model.`` prefix) is prefixed, the classifier entries of a timm checkpoint saved
        with its head (``pretrained_cfg["classifier"]``, absent here: ``num_classes=0``) are dropped, and
        a ViT's absolute position table of another grid (trained at another ``img_size``) is resampled to
        this model's grid with timm's own ``resample_abs_pos_embed``, as timm does when it loads a
        checkpoint into a model of another size (bicubic; prefix positions kept; no antialiasing, as
        the toolkit's ViT)."""
        own = self.state_dict()
        if not any(k.startswith("model.") for k in state):
            state = {f"model.{k}": v for k, v in state.items()}
        heads = getattr(self.model, "pretrained_cfg", {}).get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        prefixes = tuple(f"model.{h}." for h in heads)
        state = {k: v for k, v in state.items() if k in own or not k.startswith(prefixes)}
        key = "model.pos_embed"
        table, mine = state.get(key), own.get(key)
        grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
        if (
            table is not None
            and mine is not None
            and grid is not None
            and table.ndim == mine.ndim == 3
            and table.shape[-1] == mine.shape[-1]  # another width: reported as a shape mismatch
            and table.shape != mine.shape
        ):
            state[key] = self._resample_pos_embed(table, tuple(int(g) for g in grid))
        return state

    def _resample_pos_embed(self, table: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        from timm.layers import resample_abs_pos_embed

        # the prefix (class / register) tokens have positions unless the model adds them after the table
        prefix = 0 if getattr(self.model, "no_embed_class", False) else self.num_prefix_tokens
        cells = table.shape[1] - prefix
        side = math.isqrt(max(cells, 0))
        if cells <= 0 or side * side != cells:
            raise ValueError(
                f"{self.model_name}: pos_embed of shape {tuple(table.shape)} is not {prefix} prefix "
                "position(s) and a square grid, so it cannot be resampled to this model's grid "
                f"{'x'.join(map(str, grid))}"
            )
        log.info(
            "initial weights: %s pos_embed resampled from a %dx%d to a %s grid (bicubic)",
            self.model_name,
            side,
            side,
            "x".join(map(str, grid)),
        )
        return resample_abs_pos_embed(
            table, new_size=list(grid), num_prefix_tokens=prefix, interpolation="bicubic", antialias=False
        )


def timm_encoder(
    model: str,
    img_size: int | None = None,
    in_chans: int = 3,
    **kwargs: Any,
) -> TimmEncoder:
    """Any timm model (``timm.list_models()``) as an encoder, randomly initialised; ``out_dim`` is the
    model's ``num_features``.

    ``model``: the timm name (``resnet50``, ``convnext_tiny``, ``vit_small_patch16_224`` ...).
    ``img_size``: the input side, for the models that take it (ViTs: set it to the image size).
    ``in_chans``: input channels (3 for RGB).
    Any other key is passed to ``timm.create_model`` (``patch_size``, ``drop_path_rate``, ``global_pool``
    ...). ``weights: PATH`` (every encoder) loads initial weights from a local file.
    """
    timm = import_timm()
    if not timm.is_model(model):
        from mmssl.registry import closest

        raise ConfigError(
            f"'encoder.model': unknown timm model '{model}'{closest(model, timm.list_models())}; "
            "see timm.list_models()"
        )
    options: dict[str, Any] = {"in_chans": int(in_chans), **kwargs}
    if img_size is not None:
        options["img_size"] = int(img_size)
    try:
        net = timm.create_model(model, pretrained=False, num_classes=0, **options)
    except TypeError as err:  # an option the model's constructor does not take
        raise ConfigError(f"encoder 'timm', model '{model}': {err}") from None
    return TimmEncoder(net, model, options)


__all__ = ["TIMM_EXTRA", "TimmEncoder", "import_timm", "timm_encoder"]
