"""Modality-free self-supervised objectives, one per file."""

from mmssl.core.losses.info_nce import info_nce, nt_xent
from mmssl.core.losses.masked_reconstruction import masked_reconstruction_loss
from mmssl.core.losses.multi_view_nt_xent import multi_view_nt_xent
from mmssl.core.losses.pairwise_group import pairwise_group_contrastive
from mmssl.core.losses.regression import byol_regression, simsiam_loss
from mmssl.core.losses.symmetric_info_nce import LearnableTemperature, symmetric_info_nce

__all__ = [
    "LearnableTemperature",
    "byol_regression",
    "info_nce",
    "masked_reconstruction_loss",
    "multi_view_nt_xent",
    "nt_xent",
    "pairwise_group_contrastive",
    "simsiam_loss",
    "symmetric_info_nce",
]
