"""Whisper in CTranslate2's format, written as the ggml file whisper.cpp loads (asr/ggml_file.py).

As whisper.cpp's own models/convert-pt-to-ggml.py does: the hyper-parameters, the mel filter bank,
the byte strings of the tokens below <|endoftext|>, then every tensor, matrices float16 and
vectors, the conv biases (as [n, 1]) and the positional embeddings float32.

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
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import UnknownModel
from .ctranslate2_model import Ctranslate2Model
from .ggml_file import FLOAT16, FLOAT32, N_FFT, GgmlHparams, tensor_names, tensor_nbytes

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
        return tensor_nbytes(self.ggml_type, self.shape)


@dataclass(frozen=True, slots=True)
class GgmlPlan:
    """Everything the ggml file holds, computed from the CTranslate2 header and vocabulary alone:
    its exact size is known before a byte is written."""

    hparams: GgmlHparams
    tokens: list[bytes]
    tensors: list[Tensor]

    def size(self) -> int:
        header = len(self.hparams.pack()) + 8 + 4 * self.hparams.n_mels * (N_FFT // 2 + 1)
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
    hparams = GgmlHparams(
        vocab_size, audio_ctx, audio_state, model.scalar("encoder/num_heads"), _layers(model, "encoder"),
        text_ctx, text_state, model.scalar("decoder/num_heads"), _layers(model, "decoder"), n_mels, FLOAT16,
    )  # fmt: skip
    if sorted(tensor.name for tensor in tensors) != sorted(tensor_names(hparams)):
        raise UnknownModel(
            f"{model.model_bin}: its tensors are not those whisper.cpp loads for its dimensions"
        )
    return GgmlPlan(hparams, _token_bytes(model.vocabulary()), tensors)


def write_ggml(model: Ctranslate2Model, plan: GgmlPlan, out: Path) -> None:
    """Write the plan to out, through a temporary file beside it that is renamed once complete
    and of the planned size (a reader never sees half a file, two writers never share one).
    Raises UnknownModel naming out and the reason when it cannot be written (a directory that
    cannot be made or written to, a full disk)."""
    if out.parent.exists() and not out.parent.is_dir():  # mkdir would say "File exists"
        raise UnknownModel(f"cannot write {out}: {out.parent} is not a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise UnknownModel.file_failed("write", out, exc) from exc
    partial = Path(name)
    try:
        with os.fdopen(handle, "wb") as sink:
            _write(model, plan, sink)
            sink.flush()
            os.fsync(sink.fileno())
        if partial.stat().st_size != plan.size():
            raise UnknownModel(f"writing {out} gave {partial.stat().st_size} bytes, not {plan.size()}")
        partial.replace(out)
    except OSError as exc:
        raise UnknownModel.file_failed("write", out, exc) from exc
    finally:
        partial.unlink(missing_ok=True)


def export_ggml(model_dir: Path, out: Path) -> Path:
    """Convert the CTranslate2 model in model_dir to the ggml file out; returns out."""
    model = Ctranslate2Model(model_dir)
    write_ggml(model, plan_export(model), out)
    return out


def cached_ggml(model_dir: Path, cache_dir: Path, name: str) -> Path:
    """The ggml form of model_dir in cache_dir, converted on first use. The file is named after
    the model.bin it came from (path, size and time), so new weights are converted anew, and
    converted again whenever it is not of the planned size (a conversion cut short). Earlier
    conversions stay until removed. Raises UnknownModel naming the file and the reason when the
    model cannot be read or the cache written."""
    model = Ctranslate2Model(model_dir)
    plan = plan_export(model)
    try:
        out = cache_dir / "ggml" / f"ggml-{_cache_name(name, model_dir)}.bin"
        if out.is_file() and out.stat().st_size == plan.size():
            return out
    except OSError as exc:
        raise UnknownModel.file_failed("convert into", cache_dir / "ggml", exc) from exc
    write_ggml(model, plan, out)
    return out


def _cache_name(name: str, model_dir: Path) -> str:
    """The model's name (or its directory's), then a digest of its model.bin's path, size and time."""
    stat = (model_dir / "model.bin").stat()
    identity = f"{model_dir.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    readable = name if re.fullmatch(r"[\w.-]+", name) else model_dir.resolve().name
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _encoder_tensors(model: Ctranslate2Model, state: int) -> Iterator[Tensor]:
    for conv in ("conv1", "conv2"):
        yield _matrix(model, f"encoder.{conv}.weight", f"encoder/{conv}/weight")
        yield Tensor(f"encoder.{conv}.bias", (state, 1), FLOAT32, f"encoder/{conv}/bias")
    yield Tensor(
        "encoder.positional_embedding",
        model.shape("encoder/position_encodings/encodings"),
        FLOAT32,
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
        FLOAT32,
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
        yield Tensor(f"{target}.bias", model.shape(f"{source}/bias"), FLOAT32, f"{source}/bias")
        return
    assert state is not None
    yield _part(f"{target}.weight", f"{source}/weight", part, state)
    rows = slice(part * state, (part + 1) * state)
    yield Tensor(f"{target}.bias", (state,), FLOAT32, f"{source}/bias", rows)


def _part(target: str, source: str, part: int, state: int) -> Tensor:
    return Tensor(target, (state, state), FLOAT16, source, slice(part * state, (part + 1) * state))


def _matrix(model: Ctranslate2Model, target: str, source: str) -> Tensor:
    return Tensor(target, model.shape(source), FLOAT16, source)


def _norm(source: str, target: str, state: int) -> Iterator[Tensor]:
    yield Tensor(f"{target}.weight", (state,), FLOAT32, f"{source}/gamma")
    yield Tensor(f"{target}.bias", (state,), FLOAT32, f"{source}/beta")


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

    return np.asarray(FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels), dtype=np.float32)


def _write(model: Ctranslate2Model, plan: GgmlPlan, sink: BinaryIO) -> None:
    sink.write(plan.hparams.pack())
    filters = _mel_filters(plan.hparams.n_mels)
    sink.write(struct.pack("<2i", *filters.shape))
    sink.write(filters.astype("<f4").tobytes())
    sink.write(struct.pack("<i", len(plan.tokens)))
    for token in plan.tokens:
        sink.write(struct.pack("<i", len(token)) + token)
    for tensor in plan.tensors:
        data = model.array(tensor.source)
        if tensor.rows is not None:
            data = data[tensor.rows]
        data = data.reshape(tensor.shape).astype("<f2" if tensor.ggml_type == FLOAT16 else "<f4")
        name = tensor.name.encode()
        dims = tensor.shape[::-1]
        sink.write(struct.pack(f"<3i{len(dims)}i", len(dims), len(name), tensor.ggml_type, *dims) + name)
        sink.write(np.ascontiguousarray(data).tobytes())
