import itertools

from streamscribe.stream.agreement import LocalAgreement, normalise
from streamscribe.wire import Word


def words(*spec: tuple[str, float]) -> list[Word]:
    return [Word(text=text, start=start, end=start + 0.3, confidence=0.9) for text, start in spec]


def test_nothing_is_final_after_one_hypothesis() -> None:
    agreement = LocalAgreement(2)
    assert agreement.receive_hypothesis(words(("hello", 0.0), ("world", 0.4))) == []
    assert [w.text for w in agreement.tentative] == ["hello", "world"]


def test_common_prefix_of_two_hypotheses_is_committed_once() -> None:
    agreement = LocalAgreement(2)
    agreement.receive_hypothesis(words(("ask", 0.0), ("not", 0.4), ("what", 0.8)))
    committed = agreement.receive_hypothesis(words(("Ask", 0.0), ("not,", 0.4), ("when", 0.8), ("your", 1.2)))
    assert [w.text for w in committed] == ["Ask", "not,"]
    assert [w.text for w in agreement.tentative] == ["when", "your"]
    # The committed words are still in the window: they must not come out again.
    again = agreement.receive_hypothesis(words(("Ask", 0.0), ("not", 0.4), ("when", 0.8), ("you", 1.2)))
    assert [w.text for w in again] == ["when"]
    assert agreement.committed_count == 3


def test_three_way_agreement_needs_three_hypotheses() -> None:
    agreement = LocalAgreement(3)
    agreement.receive_hypothesis(words(("a", 0.0), ("b", 0.4)))
    assert agreement.receive_hypothesis(words(("a", 0.0), ("b", 0.4))) == []
    assert [w.text for w in agreement.receive_hypothesis(words(("a", 0.0), ("c", 0.4)))] == ["a"]


def test_overlap_with_committed_tail_is_dropped_even_with_shifted_times() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("the", 0.0), ("lovely", 0.4), ("rose", 0.8)))
    # Whisper re-times the last committed word a little later; the n-gram check removes it.
    committed = agreement.flush(words(("rose", 1.05), ("princess", 1.4)))
    assert [w.text for w in committed] == ["princess"]


def test_committed_times_never_go_backwards() -> None:
    agreement = LocalAgreement(2)
    first = agreement.flush(words(("one", 0.0), ("two", 1.0)))
    second = agreement.flush([Word(text="three", start=1.2, end=1.25, confidence=0.5)])
    timeline = [*first, *second]
    assert all(a.end <= b.start for a, b in itertools.pairwise(timeline))


def test_commit_until_forces_only_words_that_end_in_time() -> None:
    agreement = LocalAgreement(2)
    agreement.receive_hypothesis(words(("early", 0.0), ("late", 5.0)))
    assert [w.text for w in agreement.commit_until(1.0)] == ["early"]
    assert agreement.tentative == []


def test_prompt_is_recent_committed_text_before_the_window() -> None:
    agreement = LocalAgreement(2)
    agreement.flush(words(("and", 0.0), ("so", 0.4), ("my", 0.8)))
    assert agreement.recent_text(before_s=0.8, max_chars=200) == "and so"
    assert agreement.recent_text(before_s=10.0, max_chars=5) == "so my"


def test_normalise_ignores_case_and_punctuation() -> None:
    assert normalise("Americans,") == normalise("americans") == "americans"
    assert normalise("don't") == "don't"
