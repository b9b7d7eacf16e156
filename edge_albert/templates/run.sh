#!/usr/bin/env bash
# Validate this bundle on the device (Raspberry Pi OS Bookworm, 64-bit; any Linux with Python 3.11).
#   bash run.sh                          create a venv (./.venv, or $VENV), install requirements.txt,
#                                        run the validator; writes ./device_results.json
#   bash run.sh --no-venv                use $PYTHON (default python3) as it is (also: EDGE_ALBERT_NO_VENV=1)
#   WHEELS=/path bash run.sh             install offline from a folder of wheels
# Other arguments go to the validator: --threads N, --models a,b, --out FILE, --device-name NAME.
# Then, on the host: edge-albert report --merge device_results.json REPORT_DIR
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PYTHON="${PYTHON:-python3}"
USE_VENV=1
[ "${EDGE_ALBERT_NO_VENV:-0}" = 1 ] && USE_VENV=0
args=()
for a in "$@"; do
  if [ "$a" = --no-venv ]; then USE_VENV=0; else args+=("$a"); fi
done
case "$(uname -m)" in
  aarch64|arm64|x86_64) ;;
  *) echo "warning: $(uname -m): onnxruntime and ai-edge-litert publish wheels for 64-bit systems;" \
          "install the 64-bit Raspberry Pi OS" >&2 ;;
esac
if [ "$USE_VENV" = 1 ]; then
  VENV="${VENV:-$HERE/.venv}"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if ! cmp -s requirements.txt "$VENV/.edge-albert-requirements"; then
    pip_args=(install --disable-pip-version-check -r requirements.txt)
    [ -n "${WHEELS:-}" ] && pip_args+=(--no-index --find-links "$WHEELS")
    "$VENV/bin/python" -m pip "${pip_args[@]}"
    cp requirements.txt "$VENV/.edge-albert-requirements"
  fi
  PYTHON="$VENV/bin/python"
fi
exec "$PYTHON" -m edge_albert.apps.validate . ${args[@]+"${args[@]}"}
