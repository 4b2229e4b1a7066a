"""CTranslate2 Whisper to ggml on a small synthetic model.bin written here, byte for byte as
CTranslate2's model_spec.py lays it out: the header whisper.cpp reads, the tensors it looks up
by name, their shapes and types, the fused attention split, quantised weights scaled back."""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from streamscribe.asr.ctranslate2_model import Ctranslate2Model
from streamscribe.asr.ggml_export import (
    _bytes_to_unicode,
    _token_bytes,
    cached_ggml,
    export_ggml,
    plan_export,
    write_ggml,
)
from streamscribe.asr.ggml_file import FLOAT16, GGML_MAGIC, GgmlHparams, check_ggml_file
from streamscribe.errors import UnknownModel

# CTranslate2's type ids, in model_spec.py's order.
_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}
STATE, HEADS, FFN, AUDIO_CTX, TEXT_CTX, N_MELS = 8, 2, 32, 10, 6, 80
VOCABULARY = ["Ġthe", "Ċ", "Ã©", "<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]


def test_the_byte_alphabet_is_gpt2s_reversible_one() -> None:
    alphabet = _bytes_to_unicode()
    assert sorted(alphabet) == list(range(256))
    assert len(set(alphabet.values())) == 256
    assert alphabet[ord("a")] == "a" and alphabet[ord("!")] == "!" and alphabet[0xE9] == "é"
    assert alphabet[ord(" ")] == "Ġ" and alphabet[ord("\n")] == "Ċ" and alphabet[0] == "Ā"
    assert max(alphabet.values()) == chr(256 + 67)  # the 68 bytes that are not printable


def test_tokens_become_their_bytes_up_to_end_of_text() -> None:
    tokens = ["Ġthe", "Ċ", "Ã©", "!", "ĠÃ¼ber", "<|endoftext|>", "<|startoftranscript|>", "Ġafter"]
    assert _token_bytes(tokens) == [b" the", b"\n", "é".encode(), b"!", " über".encode()]


def test_a_vocabulary_without_end_of_text_is_not_whispers() -> None:
    with pytest.raises(UnknownModel, match="endoftext"):
        _token_bytes(["Ġthe", "Ċ"])


def test_a_character_outside_the_byte_alphabet_is_refused() -> None:
    with pytest.raises(UnknownModel, match="outside GPT-2's byte alphabet"):
        _token_bytes(["Ġthe", "€", "<|endoftext|>"])


@dataclass
class SyntheticModel:
    """The variables of a CTranslate2 model.bin, in order, and what to write it as."""

    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    spec: str = "WhisperSpec"
    bfloat16: set[str] = field(default_factory=set)
    """Variables (float32 here) stored as bfloat16."""

    def write(self, directory: Path, vocabulary: list[str] = VOCABULARY) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        out = bytearray(struct.pack("<I", 6) + _text(self.spec) + struct.pack("<I", 1))
        out += struct.pack("<I", len(self.variables))
        for name, value in self.variables.items():
            dtype = "bfloat16" if name in self.bfloat16 else value.dtype.name
            data = (
                (value.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
                if name in self.bfloat16
                else value.astype(value.dtype.newbyteorder("<")).tobytes()
            )
            out += _text(name) + struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape)
            out += struct.pack("<BI", _TYPE_IDS[dtype], len(data)) + data
        out += struct.pack("<I", len(self.aliases))
        for alias, target in self.aliases.items():
            out += _text(alias) + _text(target)
        (directory / "model.bin").write_bytes(bytes(out))
        (directory / "vocabulary.json").write_text(json.dumps(vocabulary), encoding="utf-8")
        return directory


def _text(value: str) -> bytes:
    encoded = value.encode() + b"\0"
    return struct.pack("<H", len(encoded)) + encoded


def whisper_variables() -> SyntheticModel:
    """A one-layer encoder and decoder, state 8, 2 heads, as CTranslate2's WhisperSpec names
    them; every array distinct (float16-exact values), scalars as the converter stores them."""
    counter = iter(range(1, 1000))

    def array(*shape: int) -> np.ndarray:
        start = 37 * next(counter)
        values = ((start + np.arange(np.prod(shape))) % 256) / 256 - 0.5  # exact in float16 and bfloat16
        return values.reshape(shape).astype(np.float16)

    def linear(prefix: str, rows: int, columns: int) -> dict[str, np.ndarray]:
        return {f"{prefix}/weight": array(rows, columns), f"{prefix}/bias": array(rows)}

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}/gamma": array(STATE), f"{prefix}/beta": array(STATE)}

    def block(prefix: str) -> dict[str, np.ndarray]:
        return {
            **norm(f"{prefix}/self_attention/layer_norm"),
            **linear(f"{prefix}/self_attention/linear_0", 3 * STATE, STATE),
            **linear(f"{prefix}/self_attention/linear_1", STATE, STATE),
            **norm(f"{prefix}/ffn/layer_norm"),
            **linear(f"{prefix}/ffn/linear_0", FFN, STATE),
            **linear(f"{prefix}/ffn/linear_1", STATE, FFN),
        }

    variables: dict[str, np.ndarray] = {
        "decoder/num_heads": np.array(HEADS, dtype=np.int16),
        "decoder/scale_embeddings": np.array(0, dtype=np.int8),
        "decoder/alignment_heads": np.array(1, dtype=np.int16),
        "decoder/embeddings/weight": array(len(VOCABULARY), STATE),
        **block("decoder/layer_0"),
        **norm("decoder/layer_0/attention/layer_norm"),
        **linear("decoder/layer_0/attention/linear_0", STATE, STATE),
        **linear("decoder/layer_0/attention/linear_1", 2 * STATE, STATE),
        **linear("decoder/layer_0/attention/linear_2", STATE, STATE),
        **norm("decoder/layer_norm"),
        "decoder/position_encodings/encodings": array(TEXT_CTX, STATE).astype(np.float32),
        "encoder/num_heads": np.array(HEADS, dtype=np.int16),
        **linear("encoder/conv1", STATE, N_MELS),
        **linear("encoder/conv2", STATE, STATE),
        **block("encoder/layer_0"),
        **norm("encoder/layer_norm"),
        "encoder/position_encodings/encodings": array(AUDIO_CTX, STATE),
    }
    variables["encoder/conv1/weight"] = array(STATE, N_MELS, 3)
    variables["encoder/conv2/weight"] = array(STATE, STATE, 3)
    return SyntheticModel(
        variables,
        aliases={"decoder/projection/weight": "decoder/embeddings/weight"},
        bfloat16={"decoder/position_encodings/encodings"},
    )


@dataclass(frozen=True)
class GgmlTensor:
    shape: tuple[int, ...]
    """As numpy sees it: the file's dimensions reversed."""
    ggml_type: int
    data: np.ndarray


@dataclass(frozen=True)
class GgmlFile:
    hparams: tuple[int, ...]
    filters: np.ndarray
    tokens: list[bytes]
    tensors: dict[str, GgmlTensor]
    names: list[str]


def read_ggml(path: Path) -> GgmlFile:
    """Parse a ggml Whisper file the way whisper.cpp's loader does, to its last byte."""
    raw = path.read_bytes()
    position = 0

    def take(layout: str) -> tuple[int, ...]:
        nonlocal position
        values = struct.unpack_from(f"<{layout}", raw, position)
        position += struct.calcsize(f"<{layout}")
        return values

    def take_bytes(count: int) -> bytes:
        nonlocal position
        position += count
        assert position <= len(raw), "the file ends early"
        return raw[position - count : position]

    magic, *hparams = take("12i")
    assert magic == GGML_MAGIC
    rows, columns = take("2i")
    filters = np.frombuffer(take_bytes(4 * rows * columns), "<f4").reshape(rows, columns)
    (count,) = take("i")
    tokens = [take_bytes(take("i")[0]) for _ in range(count)]
    tensors: dict[str, GgmlTensor] = {}
    names: list[str] = []
    while position < len(raw):
        rank, name_length, ggml_type = take("3i")
        dims = take(f"{rank}i")
        name = take_bytes(name_length).decode()
        shape = tuple(reversed(dims))
        dtype = np.dtype("<f2" if ggml_type == 1 else "<f4")
        data = np.frombuffer(take_bytes(int(np.prod(shape)) * dtype.itemsize), dtype).reshape(shape)
        tensors[name] = GgmlTensor(shape, ggml_type, data)
        names.append(name)
    return GgmlFile(tuple(hparams), filters, tokens, tensors, names)


def whisper_cpp_names(audio_layers: int, text_layers: int) -> set[str]:
    """The tensors whisper.cpp's whisper_model_load looks up, each exactly once."""
    linear = ("weight", "bias")
    attention = [f"{part}.{kind}" for part in ("query", "value", "out") for kind in linear] + ["key.weight"]
    names = {"encoder.positional_embedding", "decoder.positional_embedding", "decoder.token_embedding.weight"}
    names |= {f"{stem}.{kind}" for stem in ("encoder.conv1", "encoder.conv2", "encoder.ln_post", "decoder.ln")
              for kind in linear}  # fmt: skip
    for stack, layers in (("encoder", audio_layers), ("decoder", text_layers)):
        for layer in range(layers):
            block = f"{stack}.blocks.{layer}"
            names |= {
                f"{block}.{part}.{kind}"
                for part in ("mlp_ln", "mlp.0", "mlp.2", "attn_ln")
                for kind in linear
            }
            names |= {f"{block}.attn.{name}" for name in attention}
            if stack == "decoder":
                names |= {f"{block}.cross_attn_ln.{kind}" for kind in linear}
                names |= {f"{block}.cross_attn.{name}" for name in attention}
    return names


@pytest.fixture
def synthetic() -> SyntheticModel:
    return whisper_variables()


def test_the_planned_size_is_the_size_written_and_the_header_is_whisper_cpps(
    tmp_path: Path, synthetic: SyntheticModel
) -> None:
    model = Ctranslate2Model(synthetic.write(tmp_path / "model"))
    plan = plan_export(model)
    out = tmp_path / "out" / "ggml-synthetic.bin"
    write_ggml(model, plan, out)
    assert out.stat().st_size == plan.size()
    assert check_ggml_file(out) == plan.hparams
    with pytest.raises(UnknownModel, match="is not a ggml Whisper model"):
        check_ggml_file(tmp_path / "model" / "model.bin")
    assert [p.name for p in out.parent.iterdir()] == [out.name], "a temporary file was left"

    written = read_ggml(out)
    vocab = len(VOCABULARY)
    assert written.hparams == (vocab, AUDIO_CTX, STATE, HEADS, 1, TEXT_CTX, STATE, HEADS, 1, N_MELS, 1)
    assert plan.hparams == GgmlHparams(*written.hparams)
    assert written.filters.shape == (N_MELS, 201) and written.filters.max() > 0
    assert written.tokens == [b" the", b"\n", "é".encode()]
    assert sorted(written.names) == sorted(whisper_cpp_names(1, 1)), "missing, unexpected or repeated tensors"


def test_tensor_shapes_and_types_follow_whisper_cpp(tmp_path: Path, synthetic: SyntheticModel) -> None:
    out = export_ggml(synthetic.write(tmp_path / "model"), tmp_path / "ggml.bin")
    tensors = read_ggml(out).tensors
    for conv in ("conv1", "conv2"):
        bias = tensors[f"encoder.{conv}.bias"]
        assert bias.shape == (STATE, 1) and bias.ggml_type == 0
        np.testing.assert_array_equal(bias.data[:, 0], synthetic.variables[f"encoder/{conv}/bias"])
    assert tensors["encoder.conv1.weight"].shape == (STATE, N_MELS, 3)
    assert tensors["encoder.conv2.weight"].shape == (STATE, STATE, 3)
    assert tensors["encoder.positional_embedding"].shape == (AUDIO_CTX, STATE)
    assert tensors["decoder.positional_embedding"].shape == (TEXT_CTX, STATE)
    assert tensors["decoder.token_embedding.weight"].shape == (len(VOCABULARY), STATE)
    assert tensors["decoder.blocks.0.mlp.0.weight"].shape == (FFN, STATE)
    assert tensors["decoder.blocks.0.mlp.2.weight"].shape == (STATE, FFN)
    for name, tensor in tensors.items():
        float32 = tensor.data.ndim == 1 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding"))
        assert tensor.ggml_type == (0 if float32 else 1), f"{name} {tensor.shape} has type {tensor.ggml_type}"
    # Values survive: a float16 matrix as it was, a bfloat16 variable widened exactly.
    np.testing.assert_array_equal(
        tensors["encoder.conv1.weight"].data, synthetic.variables["encoder/conv1/weight"]
    )
    np.testing.assert_array_equal(
        tensors["decoder.positional_embedding"].data,
        synthetic.variables["decoder/position_encodings/encodings"],
    )


def test_fused_attention_is_split_query_key_value_in_that_order(
    tmp_path: Path, synthetic: SyntheticModel
) -> None:
    fused = np.concatenate([np.full((STATE, STATE), value, np.float16) for value in (1.0, 2.0, 3.0)])
    fused += (np.arange(3 * STATE * STATE).reshape(3 * STATE, STATE) / 1024).astype(np.float16)
    fused_bias = np.concatenate([np.full(STATE, value, np.float16) for value in (-1.0, -2.0, -3.0)])
    cross = np.concatenate([np.full((STATE, STATE), value, np.float16) for value in (5.0, 6.0)])
    cross_bias = np.concatenate([np.full(STATE, value, np.float16) for value in (-5.0, -6.0)])
    for stack in ("encoder", "decoder"):
        synthetic.variables[f"{stack}/layer_0/self_attention/linear_0/weight"] = fused
        synthetic.variables[f"{stack}/layer_0/self_attention/linear_0/bias"] = fused_bias
    synthetic.variables["decoder/layer_0/attention/linear_1/weight"] = cross
    synthetic.variables["decoder/layer_0/attention/linear_1/bias"] = cross_bias
    tensors = read_ggml(export_ggml(synthetic.write(tmp_path / "model"), tmp_path / "ggml.bin")).tensors

    rows = [slice(0, STATE), slice(STATE, 2 * STATE), slice(2 * STATE, 3 * STATE)]
    for block in ("encoder.blocks.0", "decoder.blocks.0"):
        for part, part_rows in zip(("query", "key", "value"), rows, strict=True):
            weight = tensors[f"{block}.attn.{part}.weight"]
            assert weight.shape == (STATE, STATE)
            np.testing.assert_array_equal(weight.data, fused[part_rows], err_msg=f"{block} {part}")
        np.testing.assert_array_equal(tensors[f"{block}.attn.query.bias"].data, fused_bias[rows[0]])
        np.testing.assert_array_equal(tensors[f"{block}.attn.value.bias"].data, fused_bias[rows[2]])
        assert f"{block}.attn.key.bias" not in tensors
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.key.weight"].data, cross[:STATE])
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.value.weight"].data, cross[STATE:])
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.value.bias"].data, cross_bias[STATE:])
    assert "decoder.blocks.0.cross_attn.key.bias" not in tensors


def test_an_int8_weight_is_scaled_back_per_row(tmp_path: Path, synthetic: SyntheticModel) -> None:
    quantised = (
        np.arange(-64, -64 + FFN * STATE, dtype=np.int16).reshape(FFN, STATE).clip(-127, 127).astype(np.int8)
    )
    scale = (2.0 ** (np.arange(FFN) % 5)).astype(np.float32)  # powers of two: exact in float16
    synthetic.variables["encoder/layer_0/ffn/linear_0/weight"] = quantised
    synthetic.variables["encoder/layer_0/ffn/linear_0/weight_scale"] = scale
    tensors = read_ggml(export_ggml(synthetic.write(tmp_path / "model"), tmp_path / "ggml.bin")).tensors
    weight = tensors["encoder.blocks.0.mlp.0.weight"]
    assert weight.ggml_type == 1 and weight.shape == (FFN, STATE)
    np.testing.assert_array_equal(weight.data, quantised.astype(np.float32) / scale[:, None])
    assert weight.data[1, 0] == (-64 + STATE) / 2  # divided by row 1's scale, 2


def test_a_truncated_model_bin_is_refused_with_the_reason(tmp_path: Path, synthetic: SyntheticModel) -> None:
    directory = synthetic.write(tmp_path / "model")
    model_bin = directory / "model.bin"
    whole = model_bin.read_bytes()
    model_bin.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UnknownModel, match="truncated") as caught:
        Ctranslate2Model(directory)
    assert str(model_bin) in caught.value.message
    model_bin.write_bytes(whole[:10])  # inside the spec's name
    with pytest.raises(UnknownModel, match="is not a CTranslate2 model"):
        Ctranslate2Model(directory)


def test_a_directory_without_model_bin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match=r"no CTranslate2 model\.bin"):
        Ctranslate2Model(tmp_path)


def test_another_binary_version_is_refused(tmp_path: Path, synthetic: SyntheticModel) -> None:
    model_bin = synthetic.write(tmp_path / "model") / "model.bin"
    model_bin.write_bytes(struct.pack("<I", 7) + model_bin.read_bytes()[4:])
    with pytest.raises(UnknownModel, match="binary version 7"):
        Ctranslate2Model(tmp_path / "model")


def test_a_model_that_is_not_whisper_is_refused(tmp_path: Path, synthetic: SyntheticModel) -> None:
    synthetic.spec = "TransformerSpec"
    model = Ctranslate2Model(synthetic.write(tmp_path / "model"))
    with pytest.raises(UnknownModel, match="TransformerSpec, not a Whisper model"):
        plan_export(model)


def test_a_variable_the_mapping_does_not_know_is_named(tmp_path: Path, synthetic: SyntheticModel) -> None:
    synthetic.variables["decoder/layer_0/gate/weight"] = np.ones((STATE, STATE), np.float16)
    model = Ctranslate2Model(synthetic.write(tmp_path / "model"))
    with pytest.raises(UnknownModel, match="decoder/layer_0/gate/weight"):
        plan_export(model)


def test_a_vocabulary_without_end_of_text_is_refused_before_writing(
    tmp_path: Path, synthetic: SyntheticModel
) -> None:
    directory = synthetic.write(tmp_path / "model", vocabulary=["Ġthe", "Ċ", "Ã©", "a", "b", "c"])
    with pytest.raises(UnknownModel, match="endoftext"):
        export_ggml(directory, tmp_path / "ggml.bin")
    assert not (tmp_path / "ggml.bin").exists()


def test_the_cli_summary_names_encoder_then_decoder_layers() -> None:
    turbo = GgmlHparams(51866, 1500, 1280, 20, 32, 448, 1280, 20, 4, 128, FLOAT16)
    assert turbo.describe() == "32+4 layers, 1280 wide, 51866 tokens, float16"


@pytest.mark.parametrize(
    "variable",
    [
        "encoder/num_heads",  # a setting, read as a scalar
        "decoder/embeddings/weight",  # a shape the plan is made from (and an alias's target)
        "encoder/layer_0/self_attention/layer_norm/beta",  # read only when its tensor is written
    ],
)
def test_a_missing_variable_is_refused_naming_it_and_the_file(
    tmp_path: Path, synthetic: SyntheticModel, variable: str
) -> None:
    del synthetic.variables[variable]
    directory = synthetic.write(tmp_path / "model")
    out = tmp_path / "ggml.bin"
    with pytest.raises(UnknownModel, match=f"has no variable {re.escape(variable)}") as caught:
        export_ggml(directory, out)
    assert str(directory / "model.bin") in caught.value.message
    assert not out.exists() and not list(tmp_path.glob("*.tmp")), "a file was left"


def test_the_cached_conversion_is_named_after_its_source_and_new_weights_get_a_new_one(
    tmp_path: Path, synthetic: SyntheticModel
) -> None:
    """README: the digest is of the source model.bin's path, size and time; earlier conversions
    stay in the cache until removed."""
    directory = synthetic.write(tmp_path / "model")
    cache = tmp_path / "cache"
    first = cached_ggml(directory, cache, "synthetic")
    assert first.parent == cache / "ggml" and re.fullmatch(r"ggml-synthetic-[0-9a-f]{12}\.bin", first.name)
    converted = first.read_bytes()
    written_ns = first.stat().st_mtime_ns
    assert cached_ggml(directory, cache, "synthetic") == first
    assert first.stat().st_mtime_ns == written_ns, "converted again though nothing changed"

    model_bin = directory / "model.bin"
    source = model_bin.stat()
    os.utime(model_bin, ns=(source.st_atime_ns, source.st_mtime_ns + 5_000_000_000))
    second = cached_ggml(directory, cache, "synthetic")
    assert second != first and re.fullmatch(r"ggml-synthetic-[0-9a-f]{12}\.bin", second.name)
    assert second.read_bytes() == converted, "the same weights convert to the same bytes"
    assert first.read_bytes() == converted, "the earlier conversion stays until removed"
    assert sorted(path.name for path in (cache / "ggml").iterdir()) == sorted([first.name, second.name])


def test_a_cache_that_cannot_be_written_is_refused_naming_it(
    tmp_path: Path, synthetic: SyntheticModel
) -> None:
    """Not an OSError, which the command line would report as a server it cannot reach."""
    directory = synthetic.write(tmp_path / "model")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")  # refused even to root
    with pytest.raises(UnknownModel, match="cannot write") as caught:
        cached_ggml(directory, blocker, "synthetic")
    assert str(blocker) in caught.value.message
    model = Ctranslate2Model(directory)
    out = blocker / "ggml.bin"
    with pytest.raises(UnknownModel, match=f"cannot write {re.escape(str(out))}"):
        write_ggml(model, plan_export(model), out)
