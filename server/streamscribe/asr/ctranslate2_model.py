"""Reads a CTranslate2 model directory without CTranslate2: model.bin's variables, the vocabulary.

model.bin (binary version 4 to 6, as CTranslate2's specs/model_spec.py writes it, little-endian):
a uint32 version, the spec's name (a uint16 length, then the bytes and a NUL) and a uint32
revision, a uint32 count of variables, each one a name, a uint8 rank, rank uint32 dimensions, a
uint8 type (float32, int8, int16, int32, float16, bfloat16, in this order) and a uint32 byte count
before its data, then a uint32 count of aliases, each two names (alias, variable). A quantised
weight (int8, int16) comes with a `<name>_scale` variable: value = stored / scale, per row.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import UnknownModel

_VERSIONS = range(4, 7)
_TYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class Variable:
    """Where a variable's data lies in model.bin, and what it holds."""

    shape: tuple[int, ...]
    dtype: str
    offset: int
    nbytes: int


class Ctranslate2Model:
    """One model directory; reading it checks the whole header, so a truncated or foreign file
    raises UnknownModel at once. Variables are read when asked for."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.model_bin = directory / "model.bin"
        if not self.model_bin.is_file():
            raise UnknownModel(f"{directory} holds no CTranslate2 model.bin")
        try:
            with self.model_bin.open("rb") as source:
                self.spec, self.variables, self.aliases = _read_header(source, self.model_bin.stat().st_size)
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise UnknownModel(f"{self.model_bin} is not a CTranslate2 model: {exc}") from exc
        except OSError as exc:
            raise UnknownModel.file_failed("read", self.model_bin, exc) from exc

    def shape(self, name: str) -> tuple[int, ...]:
        """The variable's shape; raises UnknownModel naming it when the model has none of that name."""
        return self.variable(name).shape

    def variable(self, name: str) -> Variable:
        """The variable `name` (or the one it is an alias of); raises UnknownModel naming it and the
        file when the model has none of that name."""
        variable = self.variables.get(self.aliases.get(name, name))
        if variable is None:
            raise UnknownModel(
                f"{self.model_bin} has no variable {name}: a model of another layout, or damaged"
            )
        return variable

    def array(self, name: str) -> np.ndarray:
        """The variable as stored (bfloat16 widened to float32), quantised weights scaled back to
        float32; raises UnknownModel naming it when the model has none of that name."""
        variable = self.variable(name)
        name = self.aliases.get(name, name)
        if variable.dtype == "bfloat16":
            raw = self._read(variable, np.dtype("<u2"))
            return (raw.astype(np.uint32) << 16).view(np.float32)
        value = self._read(variable, np.dtype(variable.dtype).newbyteorder("<"))
        scale_name = f"{name}_scale"
        if variable.dtype in ("int8", "int16") and scale_name in self.variables:
            scale = self.array(scale_name).astype(np.float32)
            rows = scale.reshape(-1, *([1] * (value.ndim - 1))) if scale.ndim else scale
            return value.astype(np.float32) / rows
        return value

    def scalar(self, name: str) -> int:
        """The variable's first value (a setting such as num_heads); raises UnknownModel naming it
        when the model has none of that name."""
        return int(self.array(name).reshape(-1)[0])

    def vocabulary(self) -> list[str]:
        """The tokens in id order, from vocabulary.json or vocabulary.txt (CTranslate2 writes one)."""
        as_json = self.directory / "vocabulary.json"
        as_text = self.directory / "vocabulary.txt"
        try:
            if as_json.is_file():
                tokens = json.loads(as_json.read_text(encoding="utf-8"))
                if isinstance(tokens, list) and all(isinstance(token, str) for token in tokens):
                    return tokens
                raise UnknownModel(f"{as_json} is not a list of tokens")
            if as_text.is_file():
                return as_text.read_text(encoding="utf-8").split("\n")[: self._vocabulary_size()]
        except ValueError as exc:  # not UTF-8, not JSON
            raise UnknownModel(f"{self.directory}: its vocabulary cannot be read: {exc}") from exc
        except OSError as exc:
            raise UnknownModel.file_failed("read the vocabulary of", self.directory, exc) from exc
        raise UnknownModel(f"{self.directory} has no vocabulary.json or vocabulary.txt")

    def _vocabulary_size(self) -> int:
        """vocabulary.txt ends with a newline: the token count comes from the embeddings."""
        embeddings = next((name for name in self.variables if name.endswith("embeddings/weight")), None)
        if embeddings is None:
            raise UnknownModel(f"{self.model_bin} has no embeddings to size its vocabulary by")
        return self.variables[embeddings].shape[0]

    def _read(self, variable: Variable, dtype: np.dtype) -> np.ndarray:
        count = variable.nbytes // dtype.itemsize
        try:
            with self.model_bin.open("rb") as source:
                source.seek(variable.offset)
                data = np.fromfile(source, dtype=dtype, count=count)
        except OSError as exc:
            raise UnknownModel.file_failed("read", self.model_bin, exc) from exc
        if data.size != count:
            raise UnknownModel(f"{self.model_bin} ends inside a variable: it is truncated")
        return data.reshape(variable.shape)


def _read_header(source: BinaryIO, file_size: int) -> tuple[str, dict[str, Variable], dict[str, str]]:
    def unpack(layout: str) -> tuple[int, ...]:
        size = struct.calcsize(f"<{layout}")
        return struct.unpack(f"<{layout}", source.read(size))

    def text() -> str:
        (length,) = unpack("H")
        return source.read(length).rstrip(b"\0").decode("utf-8")

    (version,) = unpack("I")
    if version not in _VERSIONS:
        raise ValueError(
            f"binary version {version}; this reader knows {_VERSIONS.start} to {_VERSIONS.stop - 1}"
        )
    spec = text()
    unpack("I")  # the spec's revision
    (count,) = unpack("I")
    variables: dict[str, Variable] = {}
    for _ in range(count):
        name = text()
        (rank,) = unpack("B")
        shape = unpack(f"{rank}I")
        type_id, nbytes = unpack("B")[0], unpack("I")[0]
        if type_id >= len(_TYPES):
            raise ValueError(f"variable {name} has an unknown type {type_id}")
        variables[name] = Variable(shape, _TYPES[type_id], source.tell(), nbytes)
        if source.tell() + nbytes > file_size:
            raise ValueError(f"the file ends inside variable {name}: it is truncated")
        source.seek(nbytes, 1)
    (alias_count,) = unpack("I")
    aliases = {text(): text() for _ in range(alias_count)}
    return spec, variables, aliases
