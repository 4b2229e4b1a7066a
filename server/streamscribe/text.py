"""How words are compared: one normal form for agreement between hypotheses, for matching the
live pass with the second pass, and for scoring against a reference."""

from __future__ import annotations

import re

_BETWEEN_WORDS = re.compile(r"[^\w']+|_")
"""Running text splits into words at anything but letters, digits and apostrophes."""


def word_key(text: str) -> str:
    """A word's identity: lower case, letters, digits and apostrophes only ("Americans," and
    "americans" are the same word; a punctuation-only piece has the empty key)."""
    return "".join(character for character in text.lower() if character.isalnum() or character == "'")


def word_keys(text: str) -> list[str]:
    """Running text as word keys ("Twenty-five U.S." is twenty, five, u, s); empty keys dropped."""
    return [key for piece in _BETWEEN_WORDS.split(text) if (key := word_key(piece))]
