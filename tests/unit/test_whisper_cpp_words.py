"""whisper.cpp's tokens grouped into words, and the alignment heads picked from a ggml header."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from streamscribe.asr.ggml_file import FLOAT16, GgmlHparams
from streamscribe.asr.whisper_cpp_engine import _unspaced_groups, _word_groups, alignment_heads, load_outcome


def words(pieces: list[bytes]) -> list[str]:
    """The text of each group, as the engine joins it (before stripping)."""
    return [b"".join(pieces[index] for index in group).decode() for group in _word_groups(pieces)]


def test_a_leading_space_starts_a_word_and_word_pieces_join_it() -> None:
    pieces = [b" Hello", b" un", b"believ", b"able", b" world"]
    assert _word_groups(pieces) == [[0], [1, 2, 3], [4]]


def test_the_first_token_starts_a_word_even_without_a_space() -> None:
    assert words([b"Yes", b" indeed"]) == ["Yes", " indeed"]


def test_trailing_punctuation_joins_the_word_before() -> None:
    pieces = [b" Hello", b",", b" world", b".", b"?!"]
    assert _word_groups(pieces) == [[0, 1], [2, 3, 4]]
    assert words(pieces) == [" Hello,", " world.?!"]


def test_an_opening_quote_or_parenthesis_joins_the_word_after() -> None:
    assert words([b" He", b" said", b" (", b"quietly", b")", b" no"]) == [" He", " said", " (quietly)", " no"]
    assert words([b' "', b"Yes", b',"', b" he", b" said"]) == [' "Yes,"', " he", " said"]
    assert words([b'"', b"Yes"]) == ['"Yes']


def test_a_closing_quote_joins_the_word_before_not_the_next() -> None:
    pieces = [b" He", b" said", b' "', b"yes", b'"', b" and", b" left", b"."]
    assert words(pieces) == [" He", " said", ' "yes"', " and", " left."]


def test_a_hyphen_inside_a_word_keeps_it_one_word() -> None:
    assert words([b" a", b" well", b"-", b"known", b" fact"]) == [" a", " well-known", " fact"]


def test_an_opening_mark_at_the_end_is_a_group_of_its_own() -> None:
    assert _word_groups([b" Hi", b" ("]) == [[0], [1]]


def test_a_character_split_across_two_tokens_stays_one_word() -> None:
    cafe = " café".encode()
    pieces = [cafe[:-1], cafe[-1:], b" ok"]  # "é" is two bytes: the cut lies inside it
    assert pieces[0].endswith(b"\xc3") and pieces[1] == b"\xa9"
    assert _word_groups(pieces) == [[0, 1], [2]]
    assert words(pieces) == [" café", " ok"]
    shalom = " שלום".encode()  # "ש" is b"\xd7\xa9": neither byte is a letter in Latin-1
    assert words([b" x", shalom[:2], shalom[2:]]) == [" x", " שלום"]


def test_no_tokens_no_words() -> None:
    assert _word_groups([]) == []


OPENAI_SIZES = {
    # name: (n_vocab, n_audio_layer, n_text_state, n_text_layer, n_mels) -> preset
    "tiny.en": ((51864, 4, 384, 4, 80), "WHISPER_AHEADS_TINY_EN"),
    "tiny": ((51865, 4, 384, 4, 80), "WHISPER_AHEADS_TINY"),
    "base.en": ((51864, 6, 512, 6, 80), "WHISPER_AHEADS_BASE_EN"),
    "base": ((51865, 6, 512, 6, 80), "WHISPER_AHEADS_BASE"),
    "small": ((51865, 12, 768, 12, 80), "WHISPER_AHEADS_SMALL"),
    "medium.en": ((51864, 24, 1024, 24, 80), "WHISPER_AHEADS_MEDIUM_EN"),
    "large-v3": ((51866, 32, 1280, 32, 128), "WHISPER_AHEADS_LARGE_V3"),
    "large-v3-turbo": ((51866, 32, 1280, 4, 128), "WHISPER_AHEADS_LARGE_V3_TURBO"),
    "large-v2": ((51865, 32, 1280, 32, 80), "WHISPER_AHEADS_N_TOP_MOST"),
    # distil-whisper: OpenAI's encoder, a decoder of 2 or 4 layers that the presets' heads lie past
    "distil-small.en": ((51864, 12, 768, 4, 80), "WHISPER_AHEADS_N_TOP_MOST"),
    "distil-medium.en": ((51864, 24, 1024, 2, 80), "WHISPER_AHEADS_N_TOP_MOST"),
    "distil-large-v3": ((51866, 32, 1280, 2, 128), "WHISPER_AHEADS_N_TOP_MOST"),
    "unknown size": ((51865, 8, 640, 8, 80), "WHISPER_AHEADS_N_TOP_MOST"),
    "unknown vocabulary": ((51000, 4, 384, 4, 80), "WHISPER_AHEADS_N_TOP_MOST"),
}


def test_a_language_without_spaces_has_a_word_per_token_and_whole_characters() -> None:
    """Chinese: each token is a word, a character whose UTF-8 bytes straddle two tokens is one
    word, not two broken halves, and the full stop ends the word before it."""
    split = "\u4e16".encode()  # 世 in three bytes
    pieces = ["\u4f60\u597d".encode(), split[:2], split[2:], "\u754c".encode(), "\u3002".encode()]
    groups = _unspaced_groups(pieces)
    assert groups == [[0], [1, 2], [3, 4]]
    assert [b"".join(pieces[n] for n in group).decode() for group in groups] == ["你好", "世", "界。"]


def hparams_of(
    n_vocab: int, n_audio_layer: int, n_text_state: int, n_text_layer: int, n_mels: int
) -> GgmlHparams:
    """The hyper-parameters of a Whisper of these dimensions (encoder as wide as the decoder, 64-wide
    heads, OpenAI's contexts)."""
    heads = n_text_state // 64
    return GgmlHparams(
        n_vocab, 1500, n_text_state, heads, n_audio_layer, 448, n_text_state, heads, n_text_layer, n_mels, FLOAT16
    )  # fmt: skip


@pytest.mark.parametrize(("dimensions", "preset"), OPENAI_SIZES.values(), ids=OPENAI_SIZES.keys())
def test_the_alignment_heads_are_those_of_the_model_of_these_dimensions(
    dimensions: tuple[int, int, int, int, int], preset: str
) -> None:
    assert alignment_heads(hparams_of(*dimensions)) == preset


def test_every_preset_named_is_one_the_binding_has() -> None:
    binding = pytest.importorskip("_pywhispercpp")
    for dimensions, preset in OPENAI_SIZES.values():
        assert hasattr(binding.whisper_alignment_heads_preset, alignment_heads(hparams_of(*dimensions))), (
            preset
        )


def test_the_header_is_read_from_the_file_and_says_if_multilingual(tmp_path: Path) -> None:
    hparams = (51866, 1500, 1280, 20, 32, 448, 1280, 20, 4, 128, 1)
    path = tmp_path / "ggml-model.bin"
    path.write_bytes(struct.pack("<12i", 0x67676D6C, *hparams) + b"rest of the file")
    with path.open("rb") as source:
        header = GgmlHparams.read(source)
    assert header == GgmlHparams(
        n_vocab=51866, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
        n_text_ctx=448, n_text_state=1280, n_text_head=20, n_text_layer=4, n_mels=128, ftype=1,
    )  # fmt: skip
    assert header.multilingual
    assert alignment_heads(header) == "WHISPER_AHEADS_LARGE_V3_TURBO"
    assert not hparams_of(51864, 4, 384, 4, 80).multilingual


INFO, ERROR = 2, 4
LOADED_ON_CPU = [
    (INFO, "whisper_init_with_params_no_state: use gpu    = 1\n"),
    (INFO, "whisper_backend_init_gpu: device 0: CPU (type: 0)\n"),
    (INFO, "whisper_backend_init_gpu: no GPU found\n"),
]


@pytest.mark.parametrize(
    ("messages", "use_gpu", "outcome"),
    [
        (LOADED_ON_CPU, True, ("cpu", None)),
        (LOADED_ON_CPU, False, ("cpu", None)),
        ([(INFO, "whisper_backend_init_gpu: using MTL0 backend\n")], True, ("metal", None)),
        ([(INFO, "whisper_backend_init_gpu: using CUDA0 backend\n")], True, ("cuda", None)),
        ([(INFO, "whisper_backend_init_gpu: using MTL0 backend\n")], False, ("cpu", None)),
        (  # Core ML without an encoder: whisper.cpp goes on with Metal
            [
                (INFO, "whisper_backend_init_gpu: using MTL0 backend\n"),
                (ERROR, "whisper_init_state: failed to load Core ML model from 'm-encoder.mlmodelc'\n"),
            ],
            True,
            ("metal", None),
        ),
        ([(ERROR, "whisper_backend_init_gpu: failed to initialize MTL0 backend\n")], True, ("cpu", None)),
    ],
)
def test_a_load_that_went_on_tells_where_it_decodes(
    messages: list[tuple[int, str]], use_gpu: bool, outcome: tuple[str, None]
) -> None:
    assert load_outcome(messages, use_gpu) == outcome


@pytest.mark.parametrize(
    "errors",
    [
        [
            "whisper_model_load: tensor 'encoder.positional_embedding' has wrong size in model file\n",
            "whisper_model_load: shape: [384, 1500, 1], expected: [384, 1000, 1]\n",
            "whisper_init_with_params_no_state: failed to load model\n",
        ],
        ["whisper_init_state: whisper_kv_cache_init() failed for self-attention cache\n"],
        ["whisper_init_state: aheads_masks_init() failed for alignment heads masks\n"],
    ],
)
def test_any_other_error_while_loading_refuses_the_context(errors: list[str]) -> None:
    """whisper.cpp answers these with a context that crashes when used: each is a refusal that
    quotes what whisper.cpp said."""
    _, refusal = load_outcome([*LOADED_ON_CPU, *((ERROR, error) for error in errors)], True)
    assert refusal is not None
    assert all(error.strip() in refusal for error in errors)
