"""The generic data layer: the bundle a dataset builder returns, batch keys, the declaration of what a
data source produces, map-dataset wrappers, N-view transforms and the skip-bad-files policy.

Nothing here knows a modality; every modality adapter builds on it.
"""

from mmssl.data.bundle import DataBundle
from mmssl.data.keys import BatchKey, batch_key, check_batch_keys
from mmssl.data.multiview import MultiViewTransform
from mmssl.data.skip import SkipBadFiles, SkippedWhileLoading
from mmssl.data.source import DataSource, data_source
from mmssl.data.wrappers import LabelledItems, MultiViewItems, SingleItems

__all__ = [
    "BatchKey",
    "DataBundle",
    "DataSource",
    "LabelledItems",
    "MultiViewItems",
    "MultiViewTransform",
    "SingleItems",
    "SkipBadFiles",
    "SkippedWhileLoading",
    "batch_key",
    "check_batch_keys",
    "data_source",
]
