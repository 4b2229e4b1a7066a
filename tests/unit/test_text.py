"""One normal form for words: agreement, the merge of passes and WER all compare with it."""

from streamscribe.text import word_key, word_keys


def test_a_word_key_ignores_case_punctuation_and_quotes() -> None:
    assert word_key("Americans,") == word_key("americans") == "americans"
    assert word_key("don't") == "don't"
    assert word_key("'quoted'") == "quoted"
    assert word_key("...") == "", "a punctuation-only piece is no word"
    assert word_key("Café") == "café"


def test_running_text_splits_at_spaces_hyphens_dashes_and_slashes() -> None:
    assert word_keys("Twenty-five don't!  and/or\u2014yes .") == ["twenty", "five", "don't", "and", "or", "yes"]
