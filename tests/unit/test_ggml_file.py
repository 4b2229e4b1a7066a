"""The ggml file check whisper.cpp's files go through before whisper.cpp sees them (whisper.cpp
answers a bad file with a context that crashes when used): the synthetic export of
test_ggml_export.py passes, and each kind of damage is refused with what is wrong."""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from faster_whisper.transcribe import get_compression_ratio

from streamscribe.asr.filters import compression_ratio, looks_hallucinated
from streamscribe.asr.ggml_export import export_ggml
from streamscribe.asr.ggml_file import (
    FLOAT16,
    FLOAT32,
    GGML_MAGIC,
    N_FFT,
    GgmlHparams,
    check_ggml_file,
    tensor_names,
)
from streamscribe.errors import UnknownModel

from .test_ggml_export import (
    AUDIO_CTX,
    HEADS,
    N_MELS,
    STATE,
    TEXT_CTX,
    VOCABULARY,
    read_ggml,
    whisper_cpp_names,
    whisper_variables,
)

SYNTHETIC_HPARAMS = GgmlHparams(
    len(VOCABULARY), AUDIO_CTX, STATE, HEADS, 1, TEXT_CTX, STATE, HEADS, 1, N_MELS, FLOAT16
)
TINY_EN = GgmlHparams(51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, FLOAT16)


@dataclass(frozen=True)
class TensorRecord:
    """Where one tensor lies in the file: its header (rank, name length, type, dims), name, data."""

    start: int
    type_at: int
    name_at: int
    name: bytes
    end: int


def tensor_records(raw: bytes) -> list[TensorRecord]:
    """The tensor table of a well-formed file, walked independently of the code under test."""
    position = 48
    rows, columns = struct.unpack_from("<2i", raw, position)
    position += 8 + 4 * rows * columns
    (count,) = struct.unpack_from("<i", raw, position)
    position += 4
    for _ in range(count):
        position += 4 + struct.unpack_from("<i", raw, position)[0]
    records = []
    while position < len(raw):
        start = position
        rank, name_length, ggml_type = struct.unpack_from("<3i", raw, position)
        dims = struct.unpack_from(f"<{rank}i", raw, position + 12)
        name_at = position + 12 + 4 * rank
        values = 1
        for dimension in dims:
            values *= dimension
        position = name_at + name_length + values * {FLOAT32: 4, FLOAT16: 2}[ggml_type]
        records.append(
            TensorRecord(start, start + 8, name_at, raw[name_at : name_at + name_length], position)
        )
    assert position == len(raw)
    return records


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    return export_ggml(whisper_variables().write(tmp_path / "model"), tmp_path / "ggml.bin")


def refused(path: Path, raw: bytes, match: str) -> str:
    """The message check_ggml_file refuses these bytes with; it must name the file."""
    path.write_bytes(raw)
    with pytest.raises(UnknownModel, match=match) as caught:
        check_ggml_file(path)
    assert str(path) in caught.value.message, caught.value.message
    return caught.value.message


def test_the_synthetic_export_passes_and_gives_its_hyper_parameters(exported: Path) -> None:
    assert check_ggml_file(exported) == SYNTHETIC_HPARAMS
    assert GgmlHparams(*read_ggml(exported).hparams) == SYNTHETIC_HPARAMS


def test_a_file_that_does_not_start_with_the_magic_is_refused(exported: Path, tmp_path: Path) -> None:
    raw = exported.read_bytes()
    assert raw[:4] == struct.pack("<I", GGML_MAGIC) == b"lmgg"
    for magic in (b"GGUF", b"ggml", bytes(4)):  # a llama.cpp file, the magic byte-swapped, zeros
        refused(tmp_path / "not-ggml.bin", magic + raw[4:], "is not a ggml Whisper model")
    refused(tmp_path / "text.bin", b"hello, I am not a model at all" * 10, "is not a ggml Whisper model")


@pytest.mark.parametrize("size", [0, 4, 47])
def test_a_file_shorter_than_the_header_is_refused(exported: Path, tmp_path: Path, size: int) -> None:
    refused(tmp_path / "short.bin", exported.read_bytes()[:size], "is not a ggml Whisper model")


def test_a_file_cut_anywhere_is_refused_as_truncated(exported: Path, tmp_path: Path) -> None:
    raw = exported.read_bytes()
    records = tensor_records(raw)
    cuts = {
        "in the filter bank's shape": 50,
        "in the filter bank": 48 + 8 + 4 * N_MELS * 100,
        "in the vocabulary": records[0].start - 3,
        "in a tensor's header": records[5].start + 6,
        "in a tensor's name": records[5].name_at + 3,
        "in a tensor's data": records[5].end - 1,
        "in the last tensor's data": len(raw) - 1,
    }
    for where, cut in cuts.items():
        assert 48 < cut < len(raw), where
        message = refused(tmp_path / "cut.bin", raw[:cut], "truncated")
        assert "ends" in message, (where, message)


def test_a_file_missing_its_last_tensor_names_it(exported: Path, tmp_path: Path) -> None:
    raw = exported.read_bytes()
    last = tensor_records(raw)[-1]
    message = refused(tmp_path / "short.bin", raw[: last.start], "missing")
    assert last.name.decode() in message


def test_a_renamed_tensor_is_refused_naming_both_names(exported: Path, tmp_path: Path) -> None:
    raw = bytearray(exported.read_bytes())
    record = next(record for record in tensor_records(bytes(raw)) if record.name == b"encoder.ln_post.weight")
    raw[record.name_at : record.name_at + len(record.name)] = b"encoder.ln_post.weighz"  # same length
    message = refused(tmp_path / "renamed.bin", bytes(raw), "is not a whisper.cpp model of its dimensions")
    assert "encoder.ln_post.weight" in message and "encoder.ln_post.weighz" in message


def test_a_tensor_held_twice_is_refused(exported: Path, tmp_path: Path) -> None:
    raw = exported.read_bytes()
    record = tensor_records(raw)[3]
    refused(
        tmp_path / "twice.bin", raw + raw[record.start : record.end], f"holds {record.name.decode()} twice"
    )


def test_a_tensor_type_whisper_cpp_does_not_use_is_refused(exported: Path, tmp_path: Path) -> None:
    raw = bytearray(exported.read_bytes())
    record = tensor_records(bytes(raw))[0]
    assert struct.unpack_from("<i", raw, record.type_at)[0] in (FLOAT32, FLOAT16)
    for unknown_type in (4, 5, 99, -1):  # 4 and 5 were q4_2 and q4_3, removed from ggml
        struct.pack_into("<i", raw, record.type_at, unknown_type)
        message = refused(
            tmp_path / "typed.bin",
            bytes(raw),
            f"tensor type {unknown_type} is not one whisper.cpp models use",
        )
        assert record.name.decode() in message


@pytest.mark.parametrize("trailing", [1, 5, 12, 15])
def test_bytes_after_the_last_tensor_are_refused_as_damage_not_truncation(
    exported: Path, tmp_path: Path, trailing: int
) -> None:
    """Fewer bytes than a tensor header after a whole file: not a file cut short."""
    message = refused(
        tmp_path / "trailing.bin",
        exported.read_bytes() + bytes(range(1, trailing + 1)),
        f"has {trailing} bytes after its last tensor: it is damaged",
    )
    assert "truncated" not in message


def test_a_tensor_header_after_the_last_tensor_is_refused(exported: Path, tmp_path: Path) -> None:
    refused(tmp_path / "trailing.bin", exported.read_bytes() + bytes(16), "rank 0: it is damaged")


def test_a_quantised_tensor_is_accepted_at_its_block_size(exported: Path, tmp_path: Path) -> None:
    """README: `--model` runs quantised whisper.cpp files: q8_0 (ggml type 8) holds 32 values in
    34 bytes (a float16 scale, 32 int8). A q8_0 file (ftype 7) with one such tensor passes; one
    byte less or more of it does not."""
    raw = exported.read_bytes()
    record = next(r for r in tensor_records(raw) if r.name == b"decoder.blocks.0.mlp.2.weight")
    values = STATE * 32  # 32 inputs (the feed-forward width) per row: rows are whole q8_0 blocks
    header = struct.pack("<5i", 2, len(record.name), 8, 32, STATE) + record.name
    quantised = bytearray(raw[: record.start] + header + bytes(values // 32 * 34) + raw[record.end :])
    struct.pack_into("<i", quantised, 44, 7)  # the file's ftype: q8_0
    path = tmp_path / "q8_0.bin"
    path.write_bytes(bytes(quantised))
    hparams = check_ggml_file(path)
    assert hparams.ftype == 7 and hparams.describe().endswith(", q8_0")
    assert hparams.n_text_state == STATE
    end = record.start + len(header) + values // 32 * 34
    refused(tmp_path / "short.bin", bytes(quantised[: end - 1] + quantised[end:]), "damaged|truncated")
    refused(tmp_path / "long.bin", bytes(quantised[:end] + b"\0" + quantised[end:]), "damaged")


def test_damaged_lengths_and_counts_are_refused_before_they_are_used(exported: Path, tmp_path: Path) -> None:
    """A damaged count must not seek backwards (EINVAL, an OSError) or read gigabytes."""
    raw = exported.read_bytes()
    filters_at, vocabulary_at = 48, 48 + 8 + 4 * N_MELS * (N_FFT // 2 + 1)
    first_token_at = vocabulary_at + 4
    record = tensor_records(raw)[2]

    def damaged(offset: int, value: int) -> bytes:
        copy = bytearray(raw)
        struct.pack_into("<i", copy, offset, value)
        return bytes(copy)

    cases = {
        "n_mels": (damaged(filters_at, -80), "mel filters are -80 by 201: it is damaged"),
        "n_fft": (damaged(filters_at + 4, -1), "mel filters are 80 by -1: it is damaged"),
        "token count": (
            damaged(vocabulary_at, -3),
            f"says it has -3 tokens of {len(VOCABULARY)}: it is damaged",
        ),
        "too many tokens": (damaged(vocabulary_at, 1 << 30), f"has {1 << 30} tokens of {len(VOCABULARY)}: "),
        "token length": (damaged(first_token_at, -4), "a token of -4 bytes: it is damaged"),
        "huge token": (damaged(first_token_at, 1 << 30), f"a token of {1 << 30} bytes: it is damaged"),
        "name length": (damaged(record.start + 4, -7), "a tensor name of -7 bytes: it is damaged"),
        "huge name": (damaged(record.start + 4, 1 << 30), f"a tensor name of {1 << 30} bytes: it is damaged"),
        "dimension": (damaged(record.start + 12, -8), r"the shape \(-8,.*\): it is damaged"),
        "layers": (damaged(4 + 4 * 4, 1 << 30), r"1073741824\+1 layers: it is damaged"),
    }
    for what, (content, match) in cases.items():
        message = refused(tmp_path / f"{what}.bin", content, match)
        assert "truncated" not in message, (what, message)
    huge = damaged(record.start + 12, 1 << 30)  # a dimension past the end of the file: not a seek error
    refused(
        tmp_path / "huge-dimension.bin", huge, f"ends inside tensor {record.name.decode()}: it is truncated"
    )


def test_a_file_that_cannot_be_read_is_refused_naming_it(tmp_path: Path) -> None:
    """An UnknownModel, not an OSError (the command line reports those as a server it cannot reach)."""
    with pytest.raises(UnknownModel, match=f"cannot read {re.escape(str(tmp_path))}: ") as caught:
        check_ggml_file(tmp_path)  # a directory: unreadable as a file even to root
    assert "Is a directory" in caught.value.message


def test_tensor_names_are_exactly_those_the_exporter_writes_and_whisper_cpp_loads(exported: Path) -> None:
    names = tensor_names(SYNTHETIC_HPARAMS)
    assert len(names) == len(set(names)), "a name listed twice"
    assert sorted(names) == sorted(read_ggml(exported).names)
    assert set(names) == whisper_cpp_names(1, 1)
    tiny = tensor_names(TINY_EN)
    assert set(tiny) == whisper_cpp_names(4, 4) and len(tiny) == len(set(tiny))
    assert "decoder.blocks.3.cross_attn.key.weight" in tiny and "encoder.blocks.4.attn.key.weight" not in tiny


def test_hyper_parameters_pack_to_the_header_and_read_back() -> None:
    packed = TINY_EN.pack()
    assert packed == struct.pack("<12i", GGML_MAGIC, 51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)
    assert GgmlHparams.read(io.BytesIO(packed + b"the rest")) == TINY_EN
    assert not TINY_EN.multilingual
    assert GgmlHparams(51865, 1500, 384, 6, 4, 448, 384, 6, 4, 80, FLOAT16).multilingual


@pytest.mark.parametrize(
    ("hparams", "described"),
    [
        (TINY_EN, "4+4 layers, 384 wide, 51864 tokens, float16"),
        (GgmlHparams(51866, 1500, 1280, 20, 32, 448, 1280, 20, 4, 128, FLOAT32), "32+4 layers, 1280 wide, 51866 tokens, float32"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 2008), "6+6 layers, 512 wide, 51865 tokens, q5_0"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 42), "6+6 layers, 512 wide, 51865 tokens, type 42"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 2042), "6+6 layers, 512 wide, 51865 tokens, type 42"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1010), "6+6 layers, 512 wide, 51865 tokens, q2_k"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 11), "6+6 layers, 512 wide, 51865 tokens, q3_k"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 2012), "6+6 layers, 512 wide, 51865 tokens, q4_k"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 13), "6+6 layers, 512 wide, 51865 tokens, q5_k"),
        (GgmlHparams(51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1014), "6+6 layers, 512 wide, 51865 tokens, q6_k"),
    ],
)  # fmt: skip
def test_hyper_parameters_describe_the_model(hparams: GgmlHparams, described: str) -> None:
    assert hparams.describe() == described


TEXTS = [
    "And so my fellow Americans, ask not what your country can do for you.",
    " the the the the the the the the the the the the the the the the the the the the",
    "café über naïve — 世界你好",
    "a",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_compression_ratio_is_zlibs_and_faster_whispers(text: str) -> None:
    encoded = text.encode()
    assert compression_ratio(text) == pytest.approx(len(encoded) / len(zlib.compress(encoded)))
    assert compression_ratio(text) == pytest.approx(get_compression_ratio(text))


def test_a_repetition_loop_compresses_past_the_limit_and_speech_does_not() -> None:
    assert looks_hallucinated(compression_ratio(TEXTS[1]), 0.0, 0.0)
    assert not looks_hallucinated(compression_ratio(TEXTS[0]), 0.0, 0.0)
    assert compression_ratio("") == 0.0
