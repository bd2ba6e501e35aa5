"""Video adapter: clip reading and sampling (decord, frame folders, DAVIS layout), a procedural video set,
frame-grid encoders, the contrastive random walk, future prediction and label-propagation evaluation.

Components are listed in ``components.py`` beside this file and imported on first lookup.
"""
