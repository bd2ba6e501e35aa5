"""Two-view methods, one per file, built on :class:`mmssl.core.two_view.TwoViewMethod`.

SimCLR, MoCo (queue / end-to-end / memory-bank negatives) and BYOL. A new two-view method is one more
file here and one line in :mod:`mmssl.core.components`.
"""
