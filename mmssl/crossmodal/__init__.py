"""Cross-modal self-supervision: two encoders from two modalities, one shared space.

- :mod:`~mmssl.crossmodal.method`: ``crossmodal_contrastive`` (:class:`CrossModalContrastive`, CLIP-style
  symmetric InfoNCE with a learnable temperature) pairing the recipe's encoder with a partner tower from
  the registry.
- :mod:`~mmssl.crossmodal.retrieval`: ``retrieval`` evaluator, R@K in both directions on held-out pairs.
- :mod:`~mmssl.crossmodal.few_shot`: ``modality_few_shot`` evaluator, N-shot probe of any one tower.
- :mod:`~mmssl.crossmodal.zero_shot`: ``zero_shot`` evaluator, classification by prompt embeddings
  ("a photo of a {}") averaged per class, for image-text towers.
- :mod:`~mmssl.crossmodal.image_text`: image-caption data (the built-in procedural captions and a
  JSONL/CSV ``image,caption`` reader) for CLIP-style pretraining with an image and a text tower.
- :mod:`~mmssl.crossmodal.specs`: nested ``{key: {name, ...}}`` sections checked against a registry.
"""

from mmssl.crossmodal.few_shot import modality_few_shot, select_tower
from mmssl.crossmodal.method import CrossModalContrastive
from mmssl.crossmodal.retrieval import embed_pairs, recall_at_k, retrieval_evaluator, retrieval_ranks

__all__ = [
    "CrossModalContrastive",
    "embed_pairs",
    "modality_few_shot",
    "recall_at_k",
    "retrieval_evaluator",
    "retrieval_ranks",
    "select_tower",
]
