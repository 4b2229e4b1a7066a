"""The ggml file whisper.cpp loads: its hyper-parameters, its tensor names, and a check of a file.

Layout (int32 little-endian throughout), as whisper.cpp's models/convert-pt-to-ggml.py writes it:
the magic "ggml"; n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels and the weight type; the mel filter
bank (n_mels, n_fft / 2 + 1, then float32 rows); the vocabulary (a count, then each token's
length and bytes); then every tensor: its rank, name length and type, its dimensions innermost
first, its name and its data.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import UnknownModel

GGML_MAGIC = 0x67676D6C
N_FFT = 400
FLOAT32, FLOAT16 = 0, 1
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2),
}  # fmt: skip
"""ggml tensor types whisper.cpp files use: (values per block, bytes per block); float32,
float16, the q4/q5/q8 types, the k-quants and bfloat16."""
_WEIGHT_TYPES = {0: "float32", 1: "float16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1"}
"""whisper.cpp's ftype numbers (less its 1000s of quantisation version), as they are called."""


@dataclass(frozen=True, slots=True)
class GgmlHparams:
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int
    ftype: int

    @classmethod
    def read(cls, source: BinaryIO) -> GgmlHparams:
        head = source.read(48)
        if len(head) < 48 or struct.unpack_from("<I", head)[0] != GGML_MAGIC:
            raise UnknownModel(f"{getattr(source, 'name', 'the file')} is not a ggml Whisper model")
        return cls(*struct.unpack_from("<11i", head, 4))

    def pack(self) -> bytes:
        return struct.pack("<12i", GGML_MAGIC, *astuple(self))

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865

    def describe(self) -> str:
        """As in "4+4 layers, 384 wide, 51864 tokens, float16"."""
        weights = _WEIGHT_TYPES.get(self.ftype % 1000, f"type {self.ftype}")
        return f"{self.n_audio_layer}+{self.n_text_layer} layers, {self.n_audio_state} wide, {self.n_vocab} tokens, {weights}"


def tensor_names(hparams: GgmlHparams) -> list[str]:
    """Every tensor whisper.cpp loads for a model of these dimensions; a file must hold each once."""
    linear = (
        "query.weight",
        "query.bias",
        "key.weight",
        "value.weight",
        "value.bias",
        "out.weight",
        "out.bias",
    )
    norm = ("weight", "bias")
    block = [
        *(f"attn.{name}" for name in linear), *(f"attn_ln.{name}" for name in norm),
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", *(f"mlp_ln.{name}" for name in norm),
    ]  # fmt: skip
    cross = [*(f"cross_attn.{name}" for name in linear), *(f"cross_attn_ln.{name}" for name in norm)]
    return [
        "encoder.conv1.weight", "encoder.conv1.bias", "encoder.conv2.weight", "encoder.conv2.bias",
        "encoder.positional_embedding", "encoder.ln_post.weight", "encoder.ln_post.bias",
        *(f"encoder.blocks.{layer}.{name}" for layer in range(hparams.n_audio_layer) for name in block),
        "decoder.positional_embedding", "decoder.token_embedding.weight", "decoder.ln.weight", "decoder.ln.bias",
        *(f"decoder.blocks.{layer}.{name}" for layer in range(hparams.n_text_layer) for name in [*block, *cross]),
    ]  # fmt: skip


def tensor_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """The bytes of a tensor's data; raises UnknownModel for a type whisper.cpp files do not use."""
    if ggml_type not in _BLOCKS:
        raise UnknownModel(f"ggml tensor type {ggml_type} is not one whisper.cpp models use")
    values, nbytes = _BLOCKS[ggml_type]
    count = 1
    for dimension in shape:
        count *= dimension
    return count // values * nbytes


def check_ggml_file(path: Path) -> GgmlHparams:
    """The file's hyper-parameters, once its whole table is read: every tensor whisper.cpp needs,
    each once and of its full size, and nothing after the last. Raises UnknownModel saying what
    is wrong: whisper.cpp itself answers a bad file with a context that crashes when used."""
    size = path.stat().st_size
    with path.open("rb") as source:
        hparams = GgmlHparams.read(source)
        try:
            _skip_filters_and_vocabulary(source)
            seen = _tensor_table(source, size)
        except struct.error as exc:
            raise UnknownModel(f"{path} ends early: it is truncated") from exc
    expected = tensor_names(hparams)
    missing = [name for name in expected if name not in seen]
    unknown = [name for name in seen if name not in set(expected)]
    if missing or unknown:
        raise UnknownModel(
            f"{path} is not a whisper.cpp model of its dimensions: missing {missing[:3]}, unknown {unknown[:3]}"
        )
    return hparams


def _skip_filters_and_vocabulary(source: BinaryIO) -> None:
    n_mels, n_fft = _ints(source, 2)
    source.seek(4 * n_mels * n_fft, 1)
    (tokens,) = _ints(source, 1)
    for _ in range(tokens):
        (length,) = _ints(source, 1)
        source.seek(length, 1)


def _tensor_table(source: BinaryIO, file_size: int) -> set[str]:
    seen: set[str] = set()
    while source.tell() < file_size:
        rank, name_length, ggml_type = _ints(source, 3)
        if not 0 < rank <= 4:
            raise UnknownModel(
                f"{getattr(source, 'name', 'the file')} has a tensor of rank {rank}: it is damaged"
            )
        shape = _ints(source, rank)
        name = source.read(name_length).decode("utf-8", errors="replace")
        if name in seen:
            raise UnknownModel(f"{getattr(source, 'name', 'the file')} holds {name} twice")
        seen.add(name)
        source.seek(tensor_nbytes(ggml_type, shape), 1)
    if source.tell() != file_size:
        raise UnknownModel(
            f"{getattr(source, 'name', 'the file')} ends inside its last tensor: it is truncated"
        )
    return seen


def _ints(source: BinaryIO, count: int) -> tuple[int, ...]:
    return struct.unpack(f"<{count}i", source.read(4 * count))
