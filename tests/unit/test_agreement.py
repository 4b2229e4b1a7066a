from itertools import pairwise

import pytest

from streamscribe.config import StreamSettings
from streamscribe.stream.agreement import LocalAgreement
from streamscribe.wire import Word


def words(*spec: tuple[str, float]) -> list[Word]:
    return [Word(text=text, start=start, end=start + 0.3, confidence=0.9) for text, start in spec]


def texts(found: list[Word]) -> list[str]:
    return [word.text for word in found]


def test_nothing_is_final_after_one_hypothesis() -> None:
    agreement = LocalAgreement(2)
    assert agreement.receive_hypothesis(words(("hello", 0.0), ("world", 0.4)), 0.0, 9.9) == []
    assert texts(agreement.tentative) == ["hello", "world"]


def test_common_prefix_of_two_hypotheses_is_committed_once() -> None:
    agreement = LocalAgreement(2)
    agreement.receive_hypothesis(words(("ask", 0.0), ("not", 0.4), ("what", 0.8)), 0.0, 9.9)
    committed = agreement.receive_hypothesis(
        words(("Ask", 0.0), ("not,", 0.4), ("when", 0.8), ("your", 1.2)), 0.0, 9.9
    )
    assert texts(committed) == ["Ask", "not,"]
    assert texts(agreement.tentative) == ["when", "your"]
    # The committed words are still in the decoded audio: they must not come out again.
    again = agreement.receive_hypothesis(
        words(("Ask", 0.0), ("not", 0.4), ("when", 0.8), ("you", 1.2)), 0.0, 9.9
    )
    assert texts(again) == ["when"]
    assert agreement.committed_count == 3


def test_three_way_agreement_needs_three_hypotheses() -> None:
    agreement = LocalAgreement(3)
    agreement.receive_hypothesis(words(("a", 0.0), ("b", 0.4)), 0.0, 9.9)
    assert agreement.receive_hypothesis(words(("a", 0.0), ("b", 0.4)), 0.0, 9.9) == []
    assert texts(agreement.receive_hypothesis(words(("a", 0.0), ("c", 0.4)), 0.0, 9.9)) == ["a"]


def test_a_re_timed_committed_word_is_not_emitted_twice() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("the", 0.0), ("lovely", 0.4), ("rose", 0.8)), 0.0)
    # Whisper places "rose" later this time; alignment still recognises it as committed.
    committed = agreement.flush(words(("the", 0.0), ("lovely", 0.45), ("rose", 1.05), ("princess", 1.4)), 0.0)
    assert texts(committed) == ["princess"]


def test_a_spoken_repetition_is_kept() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("he", 0.0), ("has", 0.3), ("gone", 0.6)), 0.0)
    committed = agreement.flush(
        words(("he", 0.0), ("has", 0.3), ("gone", 0.6), ("and", 0.9), ("gone", 1.1), ("for", 1.4)), 0.0
    )
    assert texts(committed) == ["and", "gone", "for"]


def test_audio_after_the_committed_words_is_all_fresh() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("one", 0.0), ("two", 0.4)), 0.0)
    # The decoded audio starts after "two" ended: "two" here is a new word, not a repeat.
    assert texts(agreement.flush(words(("two", 1.0), ("three", 1.4)), 0.8)) == ["two", "three"]


def test_committed_times_never_go_backwards() -> None:
    agreement = LocalAgreement(2)
    first = agreement.flush(words(("one", 0.0), ("two", 1.0)), 0.0)
    second = agreement.flush([Word(text="three", start=1.2, end=1.25, confidence=0.5)], 1.2)
    assert all(a.end <= b.start for a, b in pairwise([*first, *second]))


def test_commit_until_forces_only_words_that_end_in_time() -> None:
    agreement = LocalAgreement(2)
    agreement.receive_hypothesis(words(("early", 0.0), ("late", 5.0)), 0.0, 9.9)
    assert texts(agreement.commit_until(1.0)) == ["early"]
    assert agreement.tentative == []


def test_prompt_is_recent_committed_text_before_the_window() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("and", 0.0), ("so", 0.4), ("my", 0.8)), 0.0)
    assert agreement.recent_text(before_s=0.8, max_chars=200) == "and so"
    assert agreement.recent_text(before_s=10.0, max_chars=5) == "so my"


def test_words_near_the_end_of_the_audio_wait_for_more_audio() -> None:
    agreement = LocalAgreement(2, margin_s=0.5)
    hypothesis = words(("fled", 0.0), ("in", 0.4))  # "in" ends at 0.7
    agreement.receive_hypothesis(hypothesis, 0.0, 1.0)
    assert texts(agreement.receive_hypothesis(hypothesis, 0.0, 1.0)) == ["fled"]
    assert texts(agreement.receive_hypothesis(hypothesis, 0.0, 1.3)) == ["in"]


def test_a_word_still_revised_commits_as_the_newest_hypothesis_says_once_settled() -> None:
    agreement = LocalAgreement(2, margin_s=0.5, settle_s=1.5)
    assert agreement.receive_hypothesis(words(("polly", 0.0)), 0.0, 1.0) == []
    # Each hypothesis disagrees with the one before on the first word: agreement alone waits.
    assert agreement.receive_hypothesis(words(("Polychrome", 0.0), ("who", 1.2)), 0.0, 1.6) == []
    committed = agreement.receive_hypothesis(
        words(("Pollychrome", 0.0), ("who", 1.2), ("had", 1.6)), 0.0, 2.0
    )
    assert texts(committed) == ["Pollychrome"]
    assert texts(agreement.tentative) == ["who", "had"]
    # The words after it are still held to agreement.
    assert texts(agreement.receive_hypothesis(words(("who", 1.2), ("has", 1.6)), 0.0, 2.2)) == ["who"]


def test_a_settle_time_shorter_than_the_commit_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="settle_s"):
        StreamSettings(commit_margin_s=1.0, settle_s=0.5)
