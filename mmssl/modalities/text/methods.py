"""Language-model pre-training methods: masked LM (``mlm``) and next-token LM (``clm``).

Both take packed blocks ``{"input_ids": [B, L], "attention_mask": [B, L]}`` and a text encoder
(:mod:`mmssl.modalities.text.encoders`) whose language-model head they train:

- ``mlm`` (BERT, Devlin et al. 2019): corrupt the block with
  :func:`~mmssl.modalities.text.mlm_masking.mask_tokens` (15% of non-special tokens; 80%
  ``[MASK]``, 10% random, 10% kept), run the bidirectional encoder on the corrupted block and
  minimise the cross-entropy of the original token at the selected positions only. The head runs
  on those positions alone (about 15% of the tokens), which gives the same loss as running it
  everywhere and ignoring label -100, at a fraction of the cost.
- ``clm`` (GPT-2, Radford et al. 2019): ``L = -1/T sum_t log p(x_{t+1} | x_{<=t})`` over real
  (non-padding) targets: :func:`causal_lm_loss` shifts the labels by one, as transformers'
  ``*ForCausalLM`` does internally with ``labels = input_ids``.

After training, ``save_figures`` (the pipeline's hook for the trained method) exports the model
and its tokenizer with ``save_pretrained`` to ``<run_dir>/hf_model`` and, for ``clm``, writes greedy
and sampled continuations to ``<run_dir>/generations.txt``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmssl.core.method import Method
from mmssl.data import DataBundle
from mmssl.modalities.text.encoders import HFTextEncoder
from mmssl.modalities.text.export import export_pretrained
from mmssl.modalities.text.extras import LanguageData
from mmssl.modalities.text.generation import write_generations
from mmssl.modalities.text.keys import ATTENTION_MASK, INPUT_IDS
from mmssl.modalities.text.mlm_masking import IGNORE_INDEX, mask_tokens
from mmssl.modalities.text.tokenizer import check_special_ids


def causal_lm_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy: the logits ``[B, L, V]`` at ``t`` are scored against ``labels[:, t + 1]``.

    Labels equal to -100 (padding) are ignored. ``reduction``: ``mean`` over scored targets, or
    ``sum`` (for token-weighted averages across batches).
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    targets = labels[:, 1:].reshape(-1)
    return F.cross_entropy(shifted_logits, targets, ignore_index=IGNORE_INDEX, reduction=reduction)


class _LanguageModel(Method):
    """Shared pieces: the tokenizer, token throughput of training, export after training."""

    consumes = frozenset({INPUT_IDS, ATTENTION_MASK})

    causal: bool
    name: str

    def __init__(self, encoder: HFTextEncoder, tokenizer: Any, export: bool) -> None:
        super().__init__()
        if not isinstance(encoder, HFTextEncoder):
            raise ValueError(
                f"text LM methods need a text encoder (bert_small, gpt2_small), got {type(encoder)}"
            )
        if encoder.causal != self.causal:
            kind = "a causal (gpt2_small)" if self.causal else "a bidirectional (bert_small)"
            raise ValueError(f"method '{self.name}' needs {kind} encoder; got {type(encoder.model).__name__}")
        if len(tokenizer) > encoder.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(tokenizer)} tokens but the encoder's vocab_size is "
                f"{encoder.vocab_size}; set encoder.vocab_size >= {len(tokenizer)}"
            )
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.export = export
        # Training throughput: real (non-padding) tokens seen, from the first training forward to
        # the end of the last optimiser step (data loading between steps included).
        self._tokens_seen: Tensor | None = None
        self._t_first: float | None = None
        self._t_last: float | None = None

    def _count_tokens(self, attention_mask: Tensor) -> None:
        if not self.training:
            return
        if self._t_first is None:
            self._t_first = time.perf_counter()
        n = attention_mask.sum().detach()
        self._tokens_seen = n if self._tokens_seen is None else self._tokens_seen + n

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        self._t_last = time.perf_counter()

    @property
    def train_tokens_per_s(self) -> float | None:
        """Real tokens per second of training so far (None before the first optimiser step)."""
        if self._tokens_seen is None or self._t_first is None or self._t_last is None:
            return None
        return float(self._tokens_seen) / max(self._t_last - self._t_first, 1e-9)

    def save_figures(self, figures_dir: Path, data: DataBundle, device: torch.device) -> None:
        """Export to ``<run_dir>/hf_model`` (``figures_dir`` is ``<run_dir>/figures``)."""
        if self.export:
            export_pretrained(self.encoder, self.tokenizer, Path(figures_dir).parent / "hf_model")


class MaskedLanguageModel(_LanguageModel):
    """BERT's masked LM on a bidirectional text encoder (see the module docstring)."""

    causal = False
    name = "mlm"

    def __init__(
        self,
        encoder: HFTextEncoder,
        tokenizer: Any,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        export: bool = True,
    ) -> None:
        super().__init__(encoder, tokenizer, export)
        if tokenizer.mask_token_id is None:
            raise ValueError("masked LM needs a tokenizer with a mask token (data.tokenizer_kind: wordpiece)")
        check_special_ids(tokenizer, {"pad_token_id": encoder.pad_token_id}, "encoder")
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.mask_token_id = int(tokenizer.mask_token_id)
        self.vocab_size = len(tokenizer)
        self.special_ids = sorted(set(tokenizer.all_special_ids))

    def mask(self, input_ids: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(corrupted inputs, labels)``; padding is a special token, so it is never selected."""
        return mask_tokens(
            input_ids,
            mask_token_id=self.mask_token_id,
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            generator=generator,
        )

    def masked_logits(
        self, input_ids: Tensor, attention_mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Logits ``[S, V]`` at the ``S`` selected positions and their targets ``[S]``."""
        inputs, labels = self.mask(input_ids, generator)
        hidden = self.encoder.hidden_states(inputs, attention_mask)
        selected = labels != IGNORE_INDEX
        return self.encoder.lm_logits(hidden[selected]), labels[selected]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        self._count_tokens(attention_mask)
        logits, targets = self.masked_logits(input_ids, attention_mask)
        if targets.numel() == 0:  # nothing selected (tiny batch): a zero loss that keeps the graph
            return {"loss": logits.sum() * 0.0}
        loss = F.cross_entropy(logits.float(), targets)
        acc = (logits.argmax(dim=-1) == targets).float().mean()
        return {"loss": loss, "mlm_acc": acc.detach()}


class CausalLanguageModel(_LanguageModel):
    """GPT-2's next-token LM on a causal text encoder (see the module docstring)."""

    causal = True
    name = "clm"

    def __init__(self, encoder: HFTextEncoder, tokenizer: Any, export: bool = True, samples: int = 4) -> None:
        super().__init__(encoder, tokenizer, export)
        check_special_ids(
            tokenizer,
            {"pad_token_id": encoder.pad_token_id, "eos_token_id": encoder.model.config.eos_token_id},
            "encoder",
        )
        self.samples = samples

    def logits_and_labels(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        hidden = self.encoder.hidden_states(input_ids, attention_mask)
        return self.encoder.lm_logits(hidden), labels

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        self._count_tokens(attention_mask)
        logits, labels = self.logits_and_labels(input_ids, attention_mask)
        return {"loss": causal_lm_loss(logits, labels)}

    def save_figures(self, figures_dir: Path, data: DataBundle, device: torch.device) -> None:
        super().save_figures(figures_dir, data, device)
        language = data.find_extra(LanguageData)
        val = language.val_blocks if language is not None else None
        if self.samples > 0 and val is not None and len(val) > 0:
            write_generations(
                self.encoder.model,
                self.tokenizer,
                val,
                Path(figures_dir).parent / "generations.txt",
                num_prompts=self.samples,
                device=device,
            )


def _tokenizer_of(data: DataBundle, method: str) -> Any:
    """The dataset's tokenizer (its :class:`LanguageData`); a ConfigError naming ``method`` if absent."""
    return data.extra(LanguageData, needed_by=f"method '{method}' (for the tokenizer)").tokenizer


def mlm(
    encoder: nn.Module,
    data: DataBundle,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    export: bool = True,
) -> MaskedLanguageModel:
    """BERT masked LM: select ``mlm_probability`` of the non-special tokens; of them replace
    ``mask_replace_prob`` by ``[MASK]`` and ``random_replace_prob`` by a random token; predict the
    originals. ``export``: save the trained model + tokenizer to ``<run_dir>/hf_model``."""
    return MaskedLanguageModel(
        encoder,  # type: ignore[arg-type]
        _tokenizer_of(data, "mlm"),
        mlm_probability=mlm_probability,
        mask_replace_prob=mask_replace_prob,
        random_replace_prob=random_replace_prob,
        export=export,
    )


def clm(
    encoder: nn.Module,
    data: DataBundle,
    export: bool = True,
    samples: int = 4,
) -> CausalLanguageModel:
    """Next-token LM (GPT-2): cross-entropy of each token given the ones before it.

    ``export``: save the trained model + tokenizer to ``<run_dir>/hf_model``; ``samples``: how many
    validation prompts get a greedy and a sampled continuation in ``<run_dir>/generations.txt``.
    """
    return CausalLanguageModel(encoder, _tokenizer_of(data, "clm"), export=export, samples=samples)  # type: ignore[arg-type]
