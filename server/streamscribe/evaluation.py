"""Word error rate and word alignment, for tests and benchmarks (no extra dependencies)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalise_text(text: str) -> list[str]:
    """Lower case, punctuation removed, hyphens split, whitespace collapsed: the WER tokens."""
    return _NON_WORD.sub(" ", text.lower().replace("-", " ")).replace(" '", " ").split()


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein alignment: (edit count, pairs (ref_index, hyp_index) of exactly matched words)."""
    rows, cols = len(reference) + 1, len(hypothesis) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            same = reference[i - 1] == hypothesis[j - 1]
            cost[i][j] = min(cost[i - 1][j - 1] + (0 if same else 1), cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    matches: list[tuple[int, int]] = []
    i, j = rows - 1, cols - 1
    while i > 0 and j > 0:
        same = reference[i - 1] == hypothesis[j - 1]
        if cost[i][j] == cost[i - 1][j - 1] + (0 if same else 1):
            if same:
                matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    matches.reverse()
    return cost[-1][-1], matches


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    errors, _ = align(ref, hyp)
    return errors / len(ref)
