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
_WEIGHT_TYPES = {
    0: "float32", 1: "float16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1",
    10: "q2_k", 11: "q3_k", 12: "q4_k", 13: "q5_k", 14: "q6_k",
}  # fmt: skip
"""whisper.cpp's ftype numbers (less its 1000s of quantisation version), as they are called."""
_MAX_LAYERS = 256
"""More encoder or decoder layers than any Whisper has (large: 32): a damaged count, refused
before a list of its tensor names is made."""
_MAX_NAME_BYTES = 4096
"""The longest tensor name or token a file may hold (Whisper's are under 100 bytes): a damaged
length, refused before it is read."""
_SMALLEST_TENSOR_HEADER = 16
"""Rank, name length, type and one dimension: fewer bytes after the last tensor are no tensor."""


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
        version_less = self.ftype % 1000  # whisper.cpp adds 1000 times the quantisation version
        weights = _WEIGHT_TYPES.get(version_less, f"type {version_less}")
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
    is wrong (naming the file), a file that cannot be read included: whisper.cpp itself answers
    a bad file with a context that crashes when used."""
    try:
        size = path.stat().st_size
        with path.open("rb") as source:
            hparams = GgmlHparams.read(source)
            layers = (hparams.n_audio_layer, hparams.n_text_layer)
            if not all(0 < count <= _MAX_LAYERS for count in layers):
                raise UnknownModel(f"{path} says it has {layers[0]}+{layers[1]} layers: it is damaged")
            expected = tensor_names(hparams)
            try:
                _skip_filters_and_vocabulary(path, source, size, hparams.n_vocab)
                seen = _tensor_table(path, source, size, set(expected))
            except struct.error as exc:
                raise UnknownModel(f"{path} ends early: it is truncated") from exc
    except OSError as exc:
        raise UnknownModel.file_failed("read", path, exc) from exc
    known = set(expected)
    missing = [name for name in expected if name not in seen]
    unknown = [name for name in seen if name not in known]
    if missing or unknown:
        raise UnknownModel(
            f"{path} is not a whisper.cpp model of its dimensions: missing {missing[:3]}, unknown {unknown[:3]}"
        )
    return hparams


def _skip_filters_and_vocabulary(path: Path, source: BinaryIO, file_size: int, n_vocab: int) -> None:
    n_mels, n_fft = _ints(source, 2)
    if n_mels < 0 or n_fft < 0:
        raise UnknownModel(f"{path} says its mel filters are {n_mels} by {n_fft}: it is damaged")
    _skip(path, source, 4 * n_mels * n_fft, file_size, "its mel filters")
    (tokens,) = _ints(source, 1)
    if not 0 <= tokens <= n_vocab:  # the ordinary tokens: fewer than the model's vocabulary
        raise UnknownModel(f"{path} says it has {tokens} tokens of {n_vocab}: it is damaged")
    for _ in range(tokens):
        (length,) = _ints(source, 1)
        if not 0 <= length <= _MAX_NAME_BYTES:
            raise UnknownModel(f"{path} has a token of {length} bytes: it is damaged")
        _skip(path, source, length, file_size, "its vocabulary")


def _tensor_table(path: Path, source: BinaryIO, file_size: int, expected: set[str]) -> set[str]:
    seen: set[str] = set()
    while (left := file_size - source.tell()) > 0:
        if left < _SMALLEST_TENSOR_HEADER and expected <= seen:
            raise UnknownModel(f"{path} has {left} bytes after its last tensor: it is damaged")
        rank, name_length, ggml_type = _ints(source, 3)
        if not 0 < rank <= 4:
            raise UnknownModel(f"{path} has a tensor of rank {rank}: it is damaged")
        if not 0 <= name_length <= _MAX_NAME_BYTES:
            raise UnknownModel(f"{path} has a tensor name of {name_length} bytes: it is damaged")
        shape = _ints(source, rank)
        raw_name = source.read(name_length)
        if len(raw_name) < name_length:
            raise UnknownModel(f"{path} ends inside a tensor's name: it is truncated")
        name = raw_name.decode("utf-8", errors="replace")
        if min(shape) < 0:
            raise UnknownModel(f"{path} gives tensor {name} the shape {shape}: it is damaged")
        if name in seen:
            raise UnknownModel(f"{path} holds {name} twice")
        seen.add(name)
        try:
            nbytes = tensor_nbytes(ggml_type, shape)
        except UnknownModel as exc:
            raise UnknownModel(f"{path}, tensor {name}: {exc.message}") from exc
        _skip(path, source, nbytes, file_size, f"tensor {name}")
    return seen


def _skip(path: Path, source: BinaryIO, count: int, file_size: int, what: str) -> None:
    """Past `count` bytes of `what`; a file that ends first is truncated (no seek past its end:
    a damaged length can be larger than any offset the system takes)."""
    if source.tell() + count > file_size:
        raise UnknownModel(f"{path} ends inside {what}: it is truncated")
    source.seek(count, 1)


def _ints(source: BinaryIO, count: int) -> tuple[int, ...]:
    return struct.unpack(f"<{count}i", source.read(4 * count))
