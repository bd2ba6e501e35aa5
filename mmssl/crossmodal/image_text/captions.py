"""Captions generated from a picture's attributes: what the built-in image–text set says about a picture.

A picture has three attributes, each from a small vocabulary: a ``shape`` (circle ... cross), a ``fill``
texture (plain, striped, checkered, dotted) and a ``colour`` (red ... pink). Its caption names all three
through one of several templates (``"a red striped triangle"``, ``"a triangle in red, striped"`` ...), so
the words, not their order, carry the content, and the text tower has to read the whole caption.

Combinations are indexed ``0 .. num_combinations - 1`` in shape-major order (:func:`combination`), which is
how the held-out set enumerates distinct pictures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: shapes drawn by :func:`mmssl.procedural.shapes.shape_mask` (the spiral is left out: it reads as a texture)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
#: fill textures: plain, or a pattern of :func:`mmssl.procedural.shapes.texture_mask` (adjective -> pattern)
FILLS: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")
FILL_PATTERNS: dict[str, str | None] = {
    "plain": None,
    "striped": "stripes",
    "checkered": "checker",
    "dotted": "dots",
}
#: named colours with their sRGB value (0-255); saturated, so none reads as the grey background
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 135, 20),
    "yellow": (235, 220, 35),
    "green": (40, 165, 50),
    "cyan": (30, 195, 215),
    "blue": (35, 65, 215),
    "purple": (135, 45, 195),
    "pink": (240, 115, 190),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
#: caption templates; each names every attribute exactly once
TEMPLATES: tuple[str, ...] = (
    "a {colour} {fill} {shape}",
    "a photo of a {colour} {fill} {shape}",
    "a {fill} {shape} in {colour}",
    "a {shape} that is {colour} and {fill}",
    "a picture of a {fill} {colour} {shape}",
    "the {shape} is {colour} and {fill}",
)
#: attribute name -> its vocabulary, in the order of :class:`Attributes`' fields
VOCABULARIES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "fill": FILLS, "colour": COLOUR_NAMES}


@dataclass(frozen=True)
class Attributes:
    """Class indices of one picture: ``SHAPES[shape]``, ``FILLS[fill]``, ``COLOUR_NAMES[colour]``."""

    shape: int
    fill: int
    colour: int

    def names(self) -> dict[str, str]:
        """``{"shape": "triangle", "fill": "striped", "colour": "red"}``."""
        return {key: vocab[getattr(self, key)] for key, vocab in VOCABULARIES.items()}

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.shape, self.fill, self.colour)


def num_combinations() -> int:
    """How many distinct (shape, fill, colour) pictures the vocabulary describes."""
    return len(SHAPES) * len(FILLS) * len(COLOUR_NAMES)


def combination(index: int) -> Attributes:
    """The ``index``-th combination in shape-major order (``index`` modulo :func:`num_combinations`)."""
    index %= num_combinations()
    per_shape = len(FILLS) * len(COLOUR_NAMES)
    shape, rest = divmod(index, per_shape)
    fill, colour = divmod(rest, len(COLOUR_NAMES))
    return Attributes(shape, fill, colour)


_ARTICLE_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def caption(attributes: Attributes, template: int = 0) -> str:
    """The caption of a picture through ``TEMPLATES[template]``, e.g. ``"a red striped triangle"`` (``"an"``
    before a vowel: ``"an orange ring"``)."""
    return _ARTICLE_BEFORE_VOWEL.sub("an ", TEMPLATES[template].format(**attributes.names()))


def all_captions(attributes: Attributes) -> list[str]:
    """The caption through every template, in template order."""
    return [caption(attributes, t) for t in range(len(TEMPLATES))]
