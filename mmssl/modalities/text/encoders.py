"""Transformer text encoders from transformers configs, registered in ``ENCODERS`` (``modality="text"``).

Each wraps a whole transformers language model (``BertForMaskedLM`` / ``GPT2LMHeadModel``, random
init) so that the pre-trained weights export with ``save_pretrained`` and load back with
``AutoModelForMaskedLM`` / ``AutoModelForCausalLM``, and follows the toolkit contract::

    encoder(input_ids [B, L], attention_mask [B, L] | None)
        -> {"global": [B, D] mean of the last hidden states over real tokens, "tokens": [B, L, D]}

Without an attention mask, tokens equal to ``pad_token_id`` are treated as padding. The language
model head (``lm_logits``) is part of the encoder because it belongs to the exported model; the
evaluators use only ``global`` / ``tokens``.

- ``bert_small``: BERT (Devlin et al. 2019), bidirectional, for the masked LM. BERT-base is 768
  wide, 12 layers, 12 heads, 3072 MLP, 512 positions; the defaults here are CPU-sized.
- ``gpt2_small``: GPT-2 (Radford et al. 2019), causal, for next-token LM. GPT-2 small is 768 wide,
  12 layers, 12 heads, 1024 positions; the defaults here are CPU-sized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# transformers is imported inside the builders: importing its model classes takes seconds, and
# loading the registry (every mmssl command) should not pay that unless a text component is built.


class HFTextEncoder(nn.Module):
    """A transformers LM with the toolkit's encoder contract.

    Args:
        model: a ``*ForMaskedLM`` / ``*ForCausalLM`` model.
        head: attribute name of its language-model head (``cls`` for BERT, ``lm_head`` for GPT-2),
            which maps hidden states ``[..., D]`` to vocabulary logits ``[..., V]``.
        causal: whether each position attends only to earlier ones.
    """

    def __init__(self, model: PreTrainedModel, head: str, causal: bool) -> None:
        super().__init__()
        self.model = model
        self.head_name = head
        self.causal = causal
        self.out_dim: int = int(model.config.hidden_size)
        self.pad_token_id: int | None = model.config.pad_token_id
        self.vocab_size: int = int(model.config.vocab_size)
        self.max_length: int = int(
            getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
        )

    def attention_mask_for(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is not None:
            return attention_mask
        if self.pad_token_id is None:
            return torch.ones_like(input_ids)
        return (input_ids != self.pad_token_id).long()

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Last-layer hidden states ``[B, L, D]`` of the transformer body."""
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens exceeds max_length {self.max_length}")
        mask = self.attention_mask_for(input_ids, attention_mask)
        return self.model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """The model's own language-model head: ``[..., D]`` -> ``[..., V]``."""
        return getattr(self.model, self.head_name)(hidden)

    def lm_head_only_parameters(self) -> list[nn.Parameter]:
        """Parameters of the LM head that the transformer body does not share (the output embedding is
        tied to the input one, so it is not among them): unused by ``forward`` (``global`` / ``tokens``)."""
        body = {id(p) for p in self.model.base_model.parameters()}
        head = getattr(self.model, self.head_name)
        return [p for p in head.parameters() if id(p) not in body]

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> dict[str, Any]:
        mask = self.attention_mask_for(input_ids, attention_mask)
        tokens = self.hidden_states(input_ids, mask)
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return {"global": pooled, "tokens": tokens}


def bert_small(
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 512,
    max_length: int = 128,
    dropout: float = 0.1,
    pad_token_id: int = 0,
) -> HFTextEncoder:
    """A BERT masked LM from a ``BertConfig`` (random init; tied input/output embeddings).

    ``vocab_size`` must be at least the tokenizer's size; ``pad_token_id`` must be the tokenizer's
    (0 for the toolkit's WordPiece layout). ``dropout`` sets both hidden and attention dropout.
    """
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_length,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        type_vocab_size=2,
        pad_token_id=pad_token_id,
    )
    return HFTextEncoder(BertForMaskedLM(config), head="cls", causal=False)


def gpt2_small(
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    max_length: int = 128,
    dropout: float = 0.1,
    bos_token_id: int = 0,
    eos_token_id: int = 0,
    pad_token_id: int = 1,
) -> HFTextEncoder:
    """A GPT-2 causal LM from a ``GPT2Config`` (random init; tied input/output embeddings).

    Token ids default to the toolkit's byte-level BPE layout (``<|endoftext|>=0``, ``<pad>=1``).
    ``dropout`` sets the residual, embedding and attention dropout.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden_size,
        n_layer=num_layers,
        n_head=num_heads,
        n_positions=max_length,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    return HFTextEncoder(GPT2LMHeadModel(config), head="lm_head", causal=True)
