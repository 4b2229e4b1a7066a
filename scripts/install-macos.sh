#!/usr/bin/env bash
# Install streamscribe on macOS with the whisper.cpp engine (pywhispercpp).
#
# On Apple silicon, pywhispercpp's PyPI wheel for macOS arm64 already carries whisper.cpp's Metal
# backend (libggml-metal, Metal library embedded), so the default install takes that wheel.
# --coreml builds pywhispercpp from its source release instead, with whisper.cpp's Core ML encoder
# support. On an Intel Mac there is no pywhispercpp wheel: it is built from source, CPU only.
#
#   scripts/install-macos.sh [--venv DIR] [--python PYTHON] [--coreml] [--source] [--no-check]
#
# Written for bash 3.2 (macOS's /bin/bash). Not run on a Mac by its author: see the README
# section "whisper.cpp and Metal" for what has and has not been verified.
set -euo pipefail

PYWHISPERCPP_PIN="1.5.1"  # the release the whisper.cpp engine is written against
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON=""
COREML=0
SOURCE=0
CHECK=1

usage() {
    cat <<EOF
usage: scripts/install-macos.sh [options]

Creates (or reuses) a virtual environment, installs streamscribe from this checkout
(pip install -e .) and pywhispercpp ${PYWHISPERCPP_PIN} for --engine whisper.cpp.

  --venv DIR       the virtual environment (default: $ROOT/.venv)
  --python PYTHON  the interpreter that creates it (default: the first of python3.13,
                   python3.12, python3.11, python3 that is 3.11 or newer)
  --coreml         build pywhispercpp from source with Core ML (Apple silicon only); the Core ML
                   encoder itself is a separate step, explained at the end
  --source         build pywhispercpp from source even where a wheel exists (Metal stays on)
  --no-check       skip the closing check that loads a model with whisper.cpp
  -h, --help       this text
EOF
}
say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --venv)
            [ $# -ge 2 ] || die "--venv needs a directory"
            VENV="$2"
            shift 2
            ;;
        --python)
            [ $# -ge 2 ] || die "--python needs an interpreter"
            PYTHON="$2"
            shift 2
            ;;
        --coreml) COREML=1; shift ;;
        --source) SOURCE=1; shift ;;
        --no-check) CHECK=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

# --- The machine -------------------------------------------------------------------------------

[ "$(uname -s)" = "Darwin" ] || die "this script is for macOS; on Linux follow README.md (Quick start)"

machine="$(uname -m)"
translated="$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)"
if [ "$translated" = "1" ]; then
    die "this shell runs under Rosetta (x86_64 emulation) on Apple silicon: an x86_64 install \
would have no Metal. Run it natively: arch -arm64 /bin/bash scripts/install-macos.sh"
fi

APPLE_SILICON=0
if [ "$machine" = "arm64" ]; then
    APPLE_SILICON=1
    say "Apple silicon (arm64): whisper.cpp will decode on the GPU with Metal"
else
    warn "this Mac is not Apple silicon ($machine): whisper.cpp will run on the CPU only (no Metal)"
    warn "pywhispercpp has no wheel for Intel Macs; it will be built from source (a few minutes)"
    if [ "$COREML" = "1" ]; then
        warn "--coreml is for Apple silicon (the Neural Engine); ignored here"
        COREML=0
    fi
    SOURCE=1
fi
if [ "$COREML" = "1" ]; then
    SOURCE=1
fi

macos_version="$(sw_vers -productVersion)"
macos_major="${macos_version%%.*}"
# The deployment target of a source build: major.0 from macOS 11 on; 10.x needs its minor (10.15).
deployment_target="$macos_major.0"
if [ "$macos_major" = "10" ]; then
    macos_rest="${macos_version#*.}"
    deployment_target="10.${macos_rest%%.*}"
fi
say "macOS $macos_version"
if [ "$COREML" = "1" ] && [ "$macos_major" -lt 14 ]; then
    warn "whisper.cpp recommends macOS 14 (Sonoma) or newer for Core ML; this is $macos_version"
fi

# Xcode's command line tools: the compiler for pywhispercpp's source build, and for the
# dependencies that PyPI has only as source for macOS (webrtcvad, which resemblyzer imports).
if ! xcode-select -p >/dev/null 2>&1 || ! xcrun --find clang >/dev/null 2>&1; then
    die "Xcode's command line tools are missing: run  xcode-select --install  and run this again"
fi
say "Xcode command line tools: $(xcode-select -p)"

# --- Python and the virtual environment --------------------------------------------------------

python_ok() {
    # 3.11 or newer, and (on Apple silicon) a native arm64 build
    "$1" - "$APPLE_SILICON" <<'EOF' >/dev/null 2>&1
import platform, sys
needs_arm64 = sys.argv[1] == "1"
ok = sys.version_info >= (3, 11) and (platform.machine() == "arm64" or not needs_arm64)
sys.exit(0 if ok else 1)
EOF
}

if [ -x "$VENV/bin/python" ]; then
    python_ok "$VENV/bin/python" \
        || die "$VENV exists but its Python is older than 3.11 or not arm64: remove it or pass --venv"
    say "using the virtual environment $VENV"
else
    if [ -z "$PYTHON" ]; then
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
                PYTHON="$candidate"
                break
            fi
        done
        [ -n "$PYTHON" ] || die "no Python 3.11+ (native arm64 on Apple silicon) found: install one \
(python.org's installer or Homebrew's python@3.11 on /opt/homebrew) or pass --python"
    else
        command -v "$PYTHON" >/dev/null 2>&1 || die "no interpreter $PYTHON"
        python_ok "$PYTHON" || die "$PYTHON is older than 3.11, or not a native arm64 build"
    fi
    say "creating the virtual environment $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PYTHON" -m venv "$VENV"
fi

PY="$VENV/bin/python"
"$PY" -m pip install --upgrade pip

# --- pywhispercpp ------------------------------------------------------------------------------
# Before streamscribe, which depends on pywhispercpp: pip then finds it satisfied instead of
# fetching (or, on an Intel Mac, building without the fixes below) a copy of its own.

if [ "$SOURCE" = "0" ]; then
    say "installing pywhispercpp $PYWHISPERCPP_PIN from its macOS arm64 wheel (built with Metal)"
    "$PY" -m pip install --only-binary pywhispercpp "pywhispercpp==$PYWHISPERCPP_PIN"
else
    # pywhispercpp's setup.py hands every environment variable to CMake as -D<NAME>=<VALUE>,
    # which is how GGML_METAL and WHISPER_COREML reach whisper.cpp's build. Two more settings:
    #  - CMAKE_ARGS sets the libraries' install rpath to @loader_path: without it a plain pip
    #    source install of 1.5.x links _pywhispercpp against the temporary build directory and
    #    fails to import (libwhisper not found; pywhispercpp issue #170);
    #  - --no-cache-dir: pip's wheel cache ignores environment variables, so a wheel built
    #    earlier without Core ML would otherwise be reused.
    metal=0
    coreml=0
    archflags=""
    if [ "$APPLE_SILICON" = "1" ]; then
        metal=1
        archflags="-arch arm64"
    fi
    if [ "$COREML" = "1" ]; then
        coreml=1
        say "building pywhispercpp $PYWHISPERCPP_PIN from source with Metal and Core ML (several minutes)"
    else
        say "building pywhispercpp $PYWHISPERCPP_PIN from source (GGML_METAL=$metal; several minutes)"
    fi
    env GGML_METAL="$metal" \
        WHISPER_COREML="$coreml" \
        WHISPER_COREML_ALLOW_FALLBACK="$coreml" \
        CMAKE_ARGS="-DCMAKE_INSTALL_RPATH=@loader_path -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON" \
        MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-$deployment_target}" \
        ARCHFLAGS="$archflags" \
        "$PY" -m pip install --no-cache-dir --force-reinstall --no-deps \
        --no-binary pywhispercpp "pywhispercpp==$PYWHISPERCPP_PIN"
    # --no-deps above: its dependencies (numpy, requests, tqdm, platformdirs) from wheels
    "$PY" -m pip install "pywhispercpp==$PYWHISPERCPP_PIN"
fi

# --- streamscribe ------------------------------------------------------------------------------

say "installing streamscribe from $ROOT (pip install -e .; PyPI's torch for macOS arm64 has MPS, unused here: diarization runs on the CPU)"
"$PY" -m pip install -e "$ROOT"

# --- What was built ----------------------------------------------------------------------------

system_info="$("$PY" -c 'import _pywhispercpp as pw; print(pw.whisper_print_system_info())')" \
    || die "pywhispercpp was installed but does not import; see the messages above"
say "whisper.cpp: $system_info"
case "$system_info" in
    *"MTL :"* | *"METAL = 1"*) has_metal=1 ;;
    *) has_metal=0 ;;
esac
case "$system_info" in
    *"COREML = 1"*) has_coreml=1 ;;
    *) has_coreml=0 ;;
esac
if [ "$APPLE_SILICON" = "1" ] && [ "$has_metal" = "0" ]; then
    warn "this pywhispercpp has no Metal backend (no 'MTL' in the line above): it will decode on"
    warn "the CPU. Rerun with --source to build it here with Metal."
fi
if [ "$COREML" = "1" ] && [ "$has_coreml" = "0" ]; then
    warn "--coreml was asked for, but the build reports COREML = 0"
fi

# --- A model on the device ---------------------------------------------------------------------

if [ "$CHECK" = "1" ]; then
    say "checking: tiny.en converted to ggml (into the model cache) and loaded by streamscribe's engine"
    # Through streamscribe's engine, not pywhispercpp alone: whisper.cpp answers a failed load with
    # a context all the same; the engine reads whisper.cpp's load messages and raises
    # UnknownModel with the reason, and names the device it decodes on ("metal" with Metal).
    check_code='from streamscribe.asr.models import resolve_ggml
from streamscribe.asr.whisper_cpp_engine import WhisperCppEngine
from streamscribe.config import load_settings
s = load_settings()
e = WhisperCppEngine("tiny.en", resolve_ggml("tiny.en", s.model_cache_dir), "auto", 0, 1)
print("whisper.cpp decodes on", e.device)'
    if loaded="$("$PY" -c "$check_code")"; then
        say "$loaded"
        if [ "$APPLE_SILICON" = "1" ] && [ "$loaded" != "whisper.cpp decodes on metal" ]; then
            warn "whisper.cpp did not start Metal: it decodes on the CPU (see the messages above)"
        fi
    else
        die "whisper.cpp could not load tiny.en: the reason is in the messages above"
    fi
fi

# --- Core ML: the encoder is a separate step ---------------------------------------------------

cache_dir="${STREAMSCRIBE_MODEL_CACHE_DIR:-$HOME/.cache/streamscribe}"
if [ "$COREML" = "1" ]; then
    cat <<EOF

Core ML: this build runs Whisper's encoder on the Neural Engine when it finds a compiled Core ML
encoder beside the ggml file it loads, named after it:
    ggml-tiny.en.bin  ->  ggml-tiny.en-encoder.mlmodelc   (a directory)
The conversions streamscribe makes by itself in $cache_dir/ggml/ are named after a digest of
their source (ggml-tiny.en-<digest>.bin), which no encoder's name matches. Export the model to a
name of your own, put the encoder beside it and serve that file:
    $VENV/bin/streamscribe models export-ggml tiny.en models/ggml-tiny.en.bin
    (then models/ggml-tiny.en-encoder.mlmodelc beside it: the encoder, made as below)
    $VENV/bin/streamscribe serve --engine whisper.cpp --model models/ggml-tiny.en.bin
Without one, whisper.cpp logs "failed to load Core ML model" and carries on with Metal (this build
allows that fallback).

THE ENCODER CANNOT BE MADE FROM WHAT STREAMSCRIBE SHIPS. whisper.cpp makes it with
models/generate-coreml-model.sh, which needs the original PyTorch Whisper weights (openai-whisper
downloads OpenAI's checkpoint by name), torch, coremltools and ane_transformers, and Xcode's
coremlc; streamscribe's embedded models are CTranslate2 files only. An encoder made from
OpenAI's checkpoint of the same name is right only if the embedded model is that unmodified
checkpoint, which has not been verified. If you accept that, in a separate Python 3.11 venv:
    git clone https://github.com/ggml-org/whisper.cpp && cd whisper.cpp
    pip install openai-whisper coremltools ane_transformers
    ./models/generate-coreml-model.sh tiny.en      # writes models/ggml-tiny.en-encoder.mlmodelc
then copy that models/ggml-tiny.en-encoder.mlmodelc beside your models/ggml-tiny.en.bin.
The first load on a machine is slow while macOS compiles the model for the Neural Engine.
EOF
fi

# --- How to verify ---------------------------------------------------------------------------

device_note="metal"
[ "$APPLE_SILICON" = "1" ] || device_note="cpu"
cat <<EOF

Installed. To verify:

  $PY -c "import _pywhispercpp as pw; print(pw.whisper_print_system_info())"
      Metal: the line has "MTL : EMBED_LIBRARY = 1" (whisper.cpp 1.8; older builds print
      "METAL = 1"); Core ML builds have "COREML = 1".

  $VENV/bin/streamscribe serve --engine whisper.cpp --device auto
      (the first start converts the embedded model to ggml in $cache_dir/ggml/)

  curl -s http://127.0.0.1:8000/healthz
      expect "engine":"whisper.cpp" and "device":"$device_note"
EOF
