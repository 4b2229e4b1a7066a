from streamscribe.asr.engine import AsrWord
from streamscribe.asr.faster_whisper_engine import _squeezed_tail_start


def test_a_squeezed_thank_you_after_speech_is_cut() -> None:
    words = [
        AsrWord("all", 74.8, 75.0, 0.9),
        AsrWord("busy.", 75.0, 75.28, 0.95),
        AsrWord("Thank", 75.28, 75.28, 0.6),
        AsrWord("you.", 75.28, 75.40, 0.9),
    ]
    assert _squeezed_tail_start(words) == 2


def test_real_words_at_the_end_are_kept() -> None:
    words = [
        AsrWord("the", 58.33, 58.55, 0.9),
        AsrWord("new", 58.55, 58.69, 0.9),
        AsrWord("king.", 58.69, 59.01, 0.9),
    ]
    assert _squeezed_tail_start(words) == 3
    assert _squeezed_tail_start([]) == 0


def test_one_squeezed_word_does_not_take_real_words_with_it() -> None:
    words = [
        AsrWord("replied", 58.33, 58.33, 0.9),
        AsrWord("the", 58.33, 58.55, 0.9),
        AsrWord("new", 58.55, 58.57, 0.9),
        AsrWord("king.", 58.57, 58.77, 0.9),
    ]
    assert _squeezed_tail_start(words) == 4
