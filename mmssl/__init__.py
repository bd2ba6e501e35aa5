"""mmssl: self-supervised learning beyond still images."""

__version__ = "0.1.0"
