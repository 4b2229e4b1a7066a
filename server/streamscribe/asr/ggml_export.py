"""Whisper in CTranslate2's format, written as the ggml file whisper.cpp loads.

The layout is the one whisper.cpp's own models/convert-pt-to-ggml.py writes (int32 little-endian
throughout): the magic "ggml"; n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels and the weight type
(1: float16); the mel filter bank (n_mels, n_fft / 2 + 1, then float32 rows); the byte strings
of the tokens below <|endoftext|> (a count, then a length and the bytes of each); then every
tensor: its rank, name length and type (0 float32, 1 float16), its dimensions innermost first, its
name and its data. Matrices are float16; vectors, the conv biases (as [n, 1]) and the positional
embeddings float32.

CTranslate2 fuses attention projections that whisper.cpp keeps apart: self-attention's
query/key/value are one matrix, cross-attention's key/value another, each with a key bias of
zeros. Whisper has no key bias, and dropping one is exact anyway: q.(k + b) shifts every score
of a query by the same amount, which softmax ignores.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import UnknownModel
from .ctranslate2_model import Ctranslate2Model

GGML_MAGIC = 0x67676D6C
_N_FFT = 400
_SAMPLE_RATE = 16000
_FLOAT32, _FLOAT16 = 0, 1
_END_OF_TEXT = "<|endoftext|>"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One tensor to write: its whisper.cpp name, shape, type, and how to get its data."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    source: str
    rows: slice | None = None
    """The part of the source matrix (or vector) it is, where CTranslate2 fused several."""

    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * (2 if self.ggml_type == _FLOAT16 else 4)


@dataclass(frozen=True, slots=True)
class GgmlPlan:
    """Everything the ggml file holds, computed from the CTranslate2 header and vocabulary alone:
    its exact size is known before a byte is written."""

    hparams: tuple[int, ...]
    tokens: list[bytes]
    tensors: list[Tensor]

    def size(self) -> int:
        n_mels = self.hparams[9]
        header = 4 * (1 + len(self.hparams)) + 8 + 4 * n_mels * (_N_FFT // 2 + 1)
        vocabulary = 4 + sum(4 + len(token) for token in self.tokens)
        tensors = sum(
            12 + 4 * len(tensor.shape) + len(tensor.name.encode()) + tensor.nbytes()
            for tensor in self.tensors
        )
        return header + vocabulary + tensors


def plan_export(model: Ctranslate2Model) -> GgmlPlan:
    """What to write for a CTranslate2 Whisper model; raises UnknownModel when it is not one, or
    holds a variable this mapping does not account for."""
    if model.spec != "WhisperSpec":
        raise UnknownModel(f"{model.directory} holds a {model.spec}, not a Whisper model")
    vocab_size, text_state = model.shape("decoder/embeddings/weight")
    audio_ctx, audio_state = model.shape("encoder/position_encodings/encodings")
    text_ctx = model.shape("decoder/position_encodings/encodings")[0]
    n_mels = model.shape("encoder/conv1/weight")[1]
    tensors = [*_encoder_tensors(model, audio_state), *_decoder_tensors(model, text_state)]
    _check_all_mapped(model, tensors)
    hparams = (
        vocab_size, audio_ctx, audio_state, model.scalar("encoder/num_heads"), _layers(model, "encoder"),
        text_ctx, text_state, model.scalar("decoder/num_heads"), _layers(model, "decoder"), n_mels, _FLOAT16,
    )  # fmt: skip
    return GgmlPlan(hparams, _token_bytes(model.vocabulary()), tensors)


def write_ggml(model: Ctranslate2Model, plan: GgmlPlan, out: Path) -> None:
    """Write the plan to out (through a temporary file beside it, renamed once complete and of
    the planned size)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with partial.open("wb") as sink:
            _write(model, plan, sink)
        if partial.stat().st_size != plan.size():
            raise UnknownModel(f"writing {out} gave {partial.stat().st_size} bytes, not {plan.size()}")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def export_ggml(model_dir: Path, out: Path) -> Path:
    """Convert the CTranslate2 model in model_dir to the ggml file out; returns out."""
    model = Ctranslate2Model(model_dir)
    write_ggml(model, plan_export(model), out)
    return out


def cached_ggml(model_dir: Path, cache_dir: Path, name: str) -> Path:
    """The ggml form of model_dir in cache_dir, converted on first use and again whenever the file
    there is not of the size the model gives (a conversion cut short, another model of the name)."""
    model = Ctranslate2Model(model_dir)
    plan = plan_export(model)
    out = cache_dir / "ggml" / f"ggml-{_cache_name(name, model_dir)}.bin"
    if not (out.is_file() and out.stat().st_size == plan.size()):
        write_ggml(model, plan, out)
    return out


def is_ggml_file(path: Path) -> bool:
    with path.open("rb") as source:
        head = source.read(4)
    return len(head) == 4 and struct.unpack("<I", head)[0] == GGML_MAGIC


def _cache_name(name: str, model_dir: Path) -> str:
    """An embedded model by its name; a directory by its own name and a digest of its path and of
    its model.bin's size and time, so that a model retrained in place is converted anew."""
    if re.fullmatch(r"[\w.-]+", name) and not Path(name).expanduser().is_dir():
        return name
    stat = (model_dir / "model.bin").stat()
    identity = f"{model_dir.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return f"{model_dir.resolve().name}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _encoder_tensors(model: Ctranslate2Model, state: int) -> Iterator[Tensor]:
    for conv in ("conv1", "conv2"):
        yield _matrix(model, f"encoder.{conv}.weight", f"encoder/{conv}/weight")
        yield Tensor(f"encoder.{conv}.bias", (state, 1), _FLOAT32, f"encoder/{conv}/bias")
    yield Tensor(
        "encoder.positional_embedding",
        model.shape("encoder/position_encodings/encodings"),
        _FLOAT32,
        "encoder/position_encodings/encodings",
    )
    for layer in range(_layers(model, "encoder")):
        source, target = f"encoder/layer_{layer}", f"encoder.blocks.{layer}"
        yield from _self_attention(model, source, target, state)
        yield from _feed_forward(model, source, target)
    yield from _norm("encoder/layer_norm", "encoder.ln_post", state)


def _decoder_tensors(model: Ctranslate2Model, state: int) -> Iterator[Tensor]:
    yield Tensor(
        "decoder.positional_embedding",
        model.shape("decoder/position_encodings/encodings"),
        _FLOAT32,
        "decoder/position_encodings/encodings",
    )
    yield _matrix(model, "decoder.token_embedding.weight", "decoder/embeddings/weight")
    for layer in range(_layers(model, "decoder")):
        source, target = f"decoder/layer_{layer}", f"decoder.blocks.{layer}"
        yield from _self_attention(model, source, target, state)
        cross = f"{source}/attention"
        yield from _norm(f"{cross}/layer_norm", f"{target}.cross_attn_ln", state)
        yield from _linear(model, f"{cross}/linear_0", f"{target}.cross_attn.query", state)
        yield _part(f"{target}.cross_attn.key.weight", f"{cross}/linear_1/weight", 0, state)
        yield from _linear(model, f"{cross}/linear_1", f"{target}.cross_attn.value", state, part=1)
        yield from _linear(model, f"{cross}/linear_2", f"{target}.cross_attn.out", state)
        yield from _feed_forward(model, source, target)
    yield from _norm("decoder/layer_norm", "decoder.ln", state)


def _self_attention(model: Ctranslate2Model, source: str, target: str, state: int) -> Iterator[Tensor]:
    attention = f"{source}/self_attention"
    yield from _norm(f"{attention}/layer_norm", f"{target}.attn_ln", state)
    yield from _linear(model, f"{attention}/linear_0", f"{target}.attn.query", state, part=0)
    yield _part(f"{target}.attn.key.weight", f"{attention}/linear_0/weight", 1, state)
    yield from _linear(model, f"{attention}/linear_0", f"{target}.attn.value", state, part=2)
    yield from _linear(model, f"{attention}/linear_1", f"{target}.attn.out", state)


def _feed_forward(model: Ctranslate2Model, source: str, target: str) -> Iterator[Tensor]:
    ffn = f"{source}/ffn"
    yield from _norm(f"{ffn}/layer_norm", f"{target}.mlp_ln", model.shape(f"{ffn}/layer_norm/gamma")[0])
    yield from _linear(model, f"{ffn}/linear_0", f"{target}.mlp.0", None)
    yield from _linear(model, f"{ffn}/linear_1", f"{target}.mlp.2", None)


def _linear(
    model: Ctranslate2Model, source: str, target: str, state: int | None, part: int | None = None
) -> Iterator[Tensor]:
    """A projection's weight and bias; `part` picks one state-sized block of a fused one."""
    if part is None:
        yield _matrix(model, f"{target}.weight", f"{source}/weight")
        yield Tensor(f"{target}.bias", model.shape(f"{source}/bias"), _FLOAT32, f"{source}/bias")
        return
    assert state is not None
    yield _part(f"{target}.weight", f"{source}/weight", part, state)
    rows = slice(part * state, (part + 1) * state)
    yield Tensor(f"{target}.bias", (state,), _FLOAT32, f"{source}/bias", rows)


def _part(target: str, source: str, part: int, state: int) -> Tensor:
    return Tensor(target, (state, state), _FLOAT16, source, slice(part * state, (part + 1) * state))


def _matrix(model: Ctranslate2Model, target: str, source: str) -> Tensor:
    return Tensor(target, model.shape(source), _FLOAT16, source)


def _norm(source: str, target: str, state: int) -> Iterator[Tensor]:
    yield Tensor(f"{target}.weight", (state,), _FLOAT32, f"{source}/gamma")
    yield Tensor(f"{target}.bias", (state,), _FLOAT32, f"{source}/beta")


def _layers(model: Ctranslate2Model, stack: str) -> int:
    layer = re.compile(rf"{stack}/layer_(\d+)/")
    return len({match[1] for name in model.variables if (match := layer.match(name))})


def _check_all_mapped(model: Ctranslate2Model, tensors: list[Tensor]) -> None:
    """Every array of the model is written (scalars are settings; quantisation scales are used
    where their weight is read)."""
    used = {tensor.source for tensor in tensors}
    for name, variable in model.variables.items():
        if variable.shape and name not in used and not name.endswith("_scale"):
            raise UnknownModel(f"{model.model_bin}: no whisper.cpp tensor for {name} {variable.shape}")


def _token_bytes(tokens: list[str]) -> list[bytes]:
    """The byte strings of the ordinary tokens: CTranslate2 keeps GPT-2's printable stand-ins
    for bytes (bytes_to_unicode); whisper.cpp wants the bytes, and makes the special tokens from
    n_vocab itself."""
    if _END_OF_TEXT not in tokens:
        raise UnknownModel(f"the vocabulary has no {_END_OF_TEXT}: not a Whisper tokenizer")
    decoder = {stand_in: byte for byte, stand_in in _bytes_to_unicode().items()}
    try:
        return [
            bytes(decoder[character] for character in token) for token in tokens[: tokens.index(_END_OF_TEXT)]
        ]
    except KeyError as exc:
        raise UnknownModel(f"the vocabulary has a character outside GPT-2's byte alphabet: {exc}") from exc


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte alphabet: printable bytes stand for themselves, the other 68 map
    to code points from 256 up, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [byte for byte in range(256) if byte not in printable]
    mapping = {byte: chr(byte) for byte in printable}
    mapping.update({byte: chr(256 + n) for n, byte in enumerate(others)})
    return mapping


def _mel_filters(n_mels: int) -> np.ndarray:
    """The Slaney-scale filter bank Whisper computes its log-mel input with (n_mels, 201)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return np.asarray(FeatureExtractor.get_mel_filters(_SAMPLE_RATE, _N_FFT, n_mels), dtype=np.float32)


def _write(model: Ctranslate2Model, plan: GgmlPlan, sink: BinaryIO) -> None:
    sink.write(struct.pack(f"<{1 + len(plan.hparams)}i", GGML_MAGIC, *plan.hparams))
    filters = _mel_filters(plan.hparams[9])
    sink.write(struct.pack("<2i", *filters.shape))
    sink.write(filters.astype("<f4").tobytes())
    sink.write(struct.pack("<i", len(plan.tokens)))
    for token in plan.tokens:
        sink.write(struct.pack("<i", len(token)) + token)
    for tensor in plan.tensors:
        data = model.array(tensor.source)
        if tensor.rows is not None:
            data = data[tensor.rows]
        data = data.reshape(tensor.shape).astype("<f2" if tensor.ggml_type == _FLOAT16 else "<f4")
        name = tensor.name.encode()
        dims = tensor.shape[::-1]
        sink.write(struct.pack(f"<3i{len(dims)}i", len(dims), len(name), tensor.ggml_type, *dims) + name)
        sink.write(np.ascontiguousarray(data).tobytes())
