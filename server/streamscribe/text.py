"""How words are compared: one normal form for agreement between hypotheses, for matching the
live pass with the second pass, and for scoring against a reference."""

from __future__ import annotations

import re

_TOKEN_BREAKS = re.compile("[\\s\\-\u2013\u2014/]+")
"""Where running text splits into words: whitespace, hyphens and dashes, slashes."""


def word_key(text: str) -> str:
    """A word's identity: lower case, letters, digits and apostrophes only ("Americans," and
    "americans" are the same word; a punctuation-only piece has the empty key)."""
    return "".join(character for character in text.lower() if character.isalnum() or character == "'").strip("'")


def word_keys(text: str) -> list[str]:
    """Running text as word keys: split at spaces, hyphens and slashes; empty keys dropped."""
    return [key for piece in _TOKEN_BREAKS.split(text) if (key := word_key(piece))]
