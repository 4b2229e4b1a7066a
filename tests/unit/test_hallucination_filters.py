import pytest

from streamscribe.asr.engine import AsrWord
from streamscribe.asr.filters import without_squeezed_tail

CASES = {
    "a squeezed 'Thank you.' after speech is cut": (
        [("all", 74.8, 75.0), ("busy.", 75.0, 75.28), ("Thank", 75.28, 75.28), ("you.", 75.28, 75.40)],
        2,
    ),
    "real words at the end are kept": (
        [("the", 58.33, 58.55), ("new", 58.55, 58.69), ("king.", 58.69, 59.01)],
        3,
    ),
    "one squeezed word does not take real words with it": (
        [("replied", 58.33, 58.33), ("the", 58.33, 58.55), ("new", 58.55, 58.57), ("king.", 58.57, 58.77)],
        4,
    ),
    "nothing to cut in nothing": ([], 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_squeezed_tail(case: str) -> None:
    spec, kept = CASES[case]
    words = [AsrWord(text, start, end, 0.9) for text, start, end in spec]
    assert without_squeezed_tail(words) == words[:kept]
