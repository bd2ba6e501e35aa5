"""Video adapter: clip reading and sampling (decord, frame folders, DAVIS layout), a procedural video set,
frame-grid encoders, the contrastive random walk, future prediction and label-propagation evaluation.

Submodules register their components; ``mmssl.registry`` imports them by name.
"""
