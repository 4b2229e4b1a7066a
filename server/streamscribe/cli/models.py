"""streamscribe models export-ggml: a CTranslate2 Whisper model as the ggml file whisper.cpp loads.

`serve --engine whisper.cpp` converts on first use into the model cache by itself; this writes
the file where the caller says, to copy to another machine or hand to whisper.cpp's own tools.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..asr.ggml_export import export_ggml
from ..asr.ggml_file import check_ggml_file
from ..asr.models import ctranslate2_dir
from ..config import load_settings


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="convert the models the server runs")
    actions = models.add_subparsers(dest="action", required=True, help="export-ggml")
    export = actions.add_parser(
        "export-ggml",
        help="write a CTranslate2 Whisper model as a ggml file for whisper.cpp, and print its size "
        "and hyper-parameters",
    )
    export.add_argument(
        "model",
        help="tiny.en or base (embedded; base is assembled in STREAMSCRIBE_MODEL_CACHE_DIR), or a "
        "CTranslate2 Whisper model directory",
    )
    export.add_argument("out", type=Path, help="the ggml file to write; one already there is replaced")
    export.set_defaults(handler=_export_ggml)


def _export_ggml(args: argparse.Namespace) -> int:
    """Convert. A model that cannot be found, read, assembled or converted, or an out that cannot
    be written, raises UnknownModel with the file and the reason, which `main` prints as one line
    (status 2)."""
    out: Path = args.out.absolute()
    if out.is_dir():
        return _failed(f"cannot write {out}: it is a directory; give the file to write")
    model_dir = ctranslate2_dir(args.model, load_settings().model_cache_dir)
    hparams = check_ggml_file(export_ggml(model_dir, out))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {hparams.describe()}")
    return 0


def _failed(reason: str) -> int:
    print(f"error: {reason}", file=sys.stderr)
    return 2
