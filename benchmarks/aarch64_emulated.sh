#!/usr/bin/env bash
# Correctness of an rpi bundle on emulated aarch64 (Raspberry Pi OS Bookworm: Debian 12 arm64,
# Python 3.11) against the same bundle run on this x86 host.
#
# It builds an arm64 Debian bookworm root with debootstrap (once; kept between runs), downloads
# the bundle's requirements as aarch64 wheels on the host, runs the bundle's own run.sh inside
# the root under qemu-user (QEMU_CPU=cortex-a76 = Pi 5 by default, cortex-a72 = Pi 4), runs the
# validator on the host too, and compares the two runs' predictions file by file. Results go to
# benchmarks/results/aarch64_emulated.json. Latency under emulation is 35-40x slower than a real
# board and says nothing about a Pi's speed: it is recorded, and labelled meaningless.
#
# Usage (root needed: debootstrap, chroot, mount):
#   benchmarks/aarch64_emulated.sh                      # tiny ALBERT, briefly trained, SST-2 dev
#   benchmarks/aarch64_emulated.sh --train-steps 0      # tiny ALBERT with random weights
#   benchmarks/aarch64_emulated.sh --bundle DIR         # an existing rpi bundle
#   benchmarks/aarch64_emulated.sh --artifacts DIR      # bundle this convert artifact first
#   benchmarks/aarch64_emulated.sh --stage root         # only build the arm64 root
#   benchmarks/aarch64_emulated.sh --clean              # unmount and delete the root
# Options: --work DIR (default /work/aarch64; root, wheels, scratch live there, never in the repo)
#          --cpu cortex-a76|cortex-a72   --data EVAL_FILE (default ../shared/data/sst2/dev.tsv)
#          --threads N (default 2)   --min-agreement 0.995   --out JSON
#          --onnx-graph plain|fused (default plain): the convert option of the files bundled
#          --train-steps N (default 300): fine-tune the tiny ALBERT for N steps on SST-2 train
#          before converting it. A random tiny ALBERT answers the same class for every row with
#          a near-constant margin, which makes agreement trivially 100 %; a few hundred steps give
#          varied predictions, some near the decision boundary. 0 keeps the random weights.
#
# Traps handled (see ../shared/AARCH64.md): binfmt_misc mounted and qemu-aarch64 enabled (flag F,
# so the root needs no qemu binary); qemu's default CPU advertises SVE/SME and int8 kernels then
# give wrong answers, so QEMU_CPU is set; onnxruntime segfaults on the host's x86 /proc/cpuinfo,
# so a Pi-like cpuinfo is bind-mounted over /proc/cpuinfo and /sys/devices/system/cpu is faked;
# pip does not fall back to lower manylinux tags, so every tag from manylinux2014 to 2_36 is
# passed; the host's PIP_* variables are dropped (env -i) so they cannot leak into the root.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=/work/aarch64
CPU=cortex-a76
DATA="$REPO/../shared/data/sst2/dev.tsv"
BUNDLE=""
ARTIFACTS=""
STAGE=all
TRAIN_STEPS=300
ONNX_GRAPH=plain
THREADS=2
MIN_AGREEMENT=0.995
OUT="$REPO/benchmarks/results/aarch64_emulated.json"
PYTHON="${PYTHON:-python3}"
[ -x /work/venv/bin/python ] && PYTHON="${PYTHON_HOST:-/work/venv/bin/python}"

while [ $# -gt 0 ]; do
  case "$1" in
    --work) WORK="$2"; shift 2 ;;
    --cpu) CPU="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --bundle) BUNDLE="$2"; shift 2 ;;
    --artifacts) ARTIFACTS="$2"; shift 2 ;;
    --stage) STAGE="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --train-steps) TRAIN_STEPS="$2"; shift 2 ;;
    --onnx-graph) ONNX_GRAPH="$2"; shift 2 ;;
    --min-agreement) MIN_AGREEMENT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --clean) STAGE=clean; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$CPU" in cortex-a76|cortex-a72) ;; *) echo "error: --cpu must be cortex-a76 or cortex-a72" >&2; exit 2 ;; esac
case "$ONNX_GRAPH" in plain|fused) ;; *) echo "error: --onnx-graph must be plain or fused" >&2; exit 2 ;; esac

ROOT="$WORK/root"
WHEELS="$WORK/wheels"
SCRATCH="$WORK/run"
mkdir -p "$WORK"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, chroot, mount)" >&2; exit 2; }; }

# ---------------------------------------------------------------------------------- mounts
unmount_root() {
  local m
  # deepest first
  for m in $(awk -v r="$ROOT" '$2 ~ "^"r"(/|$)" {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
trap 'unmount_root' EXIT

ensure_binfmt() {
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { echo "error: qemu-aarch64 binfmt is not enabled" >&2; exit 3; }
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { echo "error: qemu-aarch64 binfmt lacks flag F (install qemu-user-static)" >&2; exit 3; }
}

fake_cpu_files() {
  # /proc/cpuinfo of a Pi 5 (Cortex-A76) or Pi 4 (Cortex-A72), 4 cores, with the Features line
  # the real boards print; the Model line says that it is emulated.
  local part features board
  if [ "$CPU" = cortex-a76 ]; then
    part=0xd0b; board="Raspberry Pi 5"
    features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
  else
    part=0xd08; board="Raspberry Pi 4"
    features="fp asimd evtstrm crc32 cpuid"
  fi
  : > "$WORK/cpuinfo.$CPU"
  for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: %s\nCPU revision\t: 1\n\n' \
      "$i" "$features" "$part" >> "$WORK/cpuinfo.$CPU"
  done
  printf 'Model\t\t: %s (emulated: qemu-aarch64 %s)\n' "$board" "$CPU" >> "$WORK/cpuinfo.$CPU"
  # /sys is not mounted in the root: plain files stand in for the cpu topology onnxruntime reads.
  local cpu="$ROOT/sys/devices/system/cpu"
  mkdir -p "$cpu"
  for f in possible present online; do echo 0-3 > "$cpu/$f"; done
  for i in 0 1 2 3; do mkdir -p "$cpu/cpu$i"; done
}

mount_root() {
  mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/bundle" "$ROOT/wheels" "$ROOT/out"
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mount --bind "$WORK/cpuinfo.$CPU" "$ROOT/proc/cpuinfo"
  mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
  mount --bind "$WHEELS" "$ROOT/wheels"
  mount --bind "$SCRATCH/out" "$ROOT/out"
  [ -n "$BUNDLE" ] && mount --bind "$BUNDLE" "$ROOT/bundle"
  return 0
}

# ---------------------------------------------------------------------------------- stages
mirror() {
  # The machine's own Debian mirror (deb822 .sources first, then the one-line format).
  local m
  m=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
      | grep -v security | head -1 || true)
  [ -z "$m" ] && m=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security \
      | awk '{print $2}' | head -1 || true)
  [ -n "$m" ] || { echo "error: no Debian mirror in /etc/apt/sources*" >&2; exit 3; }
  echo "$m"
}

build_root() {
  need_root
  if [ -f "$ROOT/.edge-albert-root" ]; then log "arm64 root exists: $ROOT"; return; fi
  command -v debootstrap >/dev/null || { echo "error: apt-get install debootstrap qemu-user-static binfmt-support" >&2; exit 3; }
  ensure_binfmt
  local tmp="$ROOT.tmp" m; m=$(mirror)
  if [ -d "$tmp" ]; then ROOT="$tmp" unmount_root; rm -rf "$tmp"; fi
  log "debootstrap arm64 bookworm from $m into $tmp (minutes)"
  nice -n 10 debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip bookworm "$tmp" "$m" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 3; }
  chroot "$tmp" /usr/bin/python3 --version > "$tmp/.edge-albert-root"
  mv "$tmp" "$ROOT"
  log "root ready: $(cat "$ROOT/.edge-albert-root")"
}

download_wheels() {
  local req="$1"
  mkdir -p "$WHEELS"
  local plats=(--platform manylinux2014_aarch64)
  local v; for v in 17 24 26 27 28 29 30 31 32 33 34 35 36; do plats+=(--platform "manylinux_2_${v}_aarch64"); done
  log "downloading aarch64 wheels for $(grep -cv '^\s*#' "$req") requirements into $WHEELS"
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 "${plats[@]}" -r "$req" -d "$WHEELS"
  ls "$WHEELS" >&2
}

make_bundle() {
  [ -n "$BUNDLE" ] && return
  local conv="$ARTIFACTS"
  if [ -z "$conv" ]; then
    conv="$SCRATCH/conv-steps$TRAIN_STEPS-$ONNX_GRAPH"
    if [ ! -f "$conv/manifest.json" ]; then
      local train; train="$(dirname "$DATA")/train.tsv"
      local ea; ea="$(dirname "$PYTHON")/edge-albert"; [ -x "$ea" ] || ea=edge-albert
      local model="$SCRATCH/model"
      log "tiny ALBERT ($TRAIN_STEPS training steps), converted with calibration on $DATA"
      OMP_NUM_THREADS=1 nice -n 10 "$ea" tokenizer train --data "$train" --vocab-size 1000 --out "$SCRATCH/tok" --force
      OMP_NUM_THREADS=1 nice -n 10 "$ea" model init --shape tiny --tokenizer "$SCRATCH/tok" --out "$model" --force
      if [ "$TRAIN_STEPS" -gt 0 ]; then
        OMP_NUM_THREADS=1 nice -n 10 "$ea" finetune --model "$model" --train "$train" --dev "$DATA" \
          --set finetune.max_steps="$TRAIN_STEPS" --set finetune.learning_rate=0.001 \
          --set finetune.threads=1 --set finetune.checkpoint_every=0 --out "$SCRATCH/trained" --force
        model="$SCRATCH/trained"
      fi
      OMP_NUM_THREADS=1 nice -n 10 "$ea" convert --model "$model" --out "$conv" --calibration "$DATA" \
        --onnx-graph "$ONNX_GRAPH" --force
    fi
  fi
  BUNDLE="$SCRATCH/bundle"
  log "bundling $conv for rpi -> $BUNDLE"
  # the CLI group (bundle_cli.py holds the command, not a __main__)
  OMP_NUM_THREADS=1 nice -n 10 "$PYTHON" -m edge_albert bundle --artifacts "$conv" \
    --target rpi --data "$DATA" --out "$BUNDLE" --force
}

run_host() {
  log "host (x86) run of the validator"
  ( cd "$BUNDLE" && OMP_NUM_THREADS="$THREADS" nice -n 10 "$PYTHON" -m edge_albert.apps.validate . \
      --threads "$THREADS" --save-logits --out "$SCRATCH/out/host_results.json" )
}

run_emulated() {
  need_root
  ensure_binfmt
  fake_cpu_files
  mount_root
  log "emulated aarch64 ($CPU) run of the bundle's run.sh (venv in the root, wheels offline)"
  local t0; t0=$(date +%s)
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU="$CPU" VENV=/opt/edge-albert-venv WHEELS=/wheels \
    EDGE_ALBERT_DEVICE_NOTE="emulated: qemu-user $(qemu-aarch64-static --version | head -1 | awk '{print $3}') QEMU_CPU=$CPU on x86; latency meaningless" \
    nice -n 10 chroot "$ROOT" /bin/bash /bundle/run.sh --threads "$THREADS" --save-logits \
    --out /out/arm_results.json
  echo $(( $(date +%s) - t0 )) > "$SCRATCH/out/emulated_seconds"
  unmount_root
}

compare() {
  log "comparing host and emulated predictions"
  local note="bundle $BUNDLE as given"
  [ -n "$ARTIFACTS" ] && note="convert artifact $ARTIFACTS, bundled for rpi with the eval set $DATA"
  if [ -z "$GIVEN_BUNDLE" ] && [ -z "$ARTIFACTS" ]; then
    note="tiny ALBERT (28k parameters), $TRAIN_STEPS fine-tuning steps on SST-2 train (0 = random weights), int8-static calibrated on SST-2 dev; agreement and logit error across CPUs need no accurate model"
  fi
  "$PYTHON" - "$SCRATCH/out" "$OUT" "$MIN_AGREEMENT" "$CPU" "$BUNDLE" "$note" "$REPO/benchmarks" <<'EOF'
import json, sys, platform, subprocess
from pathlib import Path
import numpy as np
out_dir, dest, minimum, cpu, bundle = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
model_note = sys.argv[6]
host = json.loads((out_dir / "host_results.json").read_text())
arm = json.loads((out_dir / "arm_results.json").read_text())
hl = np.load(out_dir / "host_results.logits.npz")
al = np.load(out_dir / "arm_results.logits.npz")
assert host["eval"]["sha256"] == arm["eval"]["sha256"], "different eval sets"
arm_rows = {r["name"]: r for r in arm["artifacts"]}
files, failures = [], []
for row in host["artifacts"]:
    name = row["name"]
    if name not in arm_rows:
        failures.append(f"{name}: did not run on aarch64")
        continue
    a, h = np.asarray(arm["predictions"][name]), np.asarray(host["predictions"][name])
    agree = float(np.mean(a == h))
    diff = np.abs(al[name] - hl[name])
    srt = np.sort(hl[name], axis=1)
    top2 = srt[:, -1] - srt[:, -2]
    gated = row["precision"].startswith("int8") and row["format"] in ("tflite", "onnx", "ort")
    ok = agree >= minimum
    if gated and not ok:
        failures.append(f"{name}: agreement {agree:.4f} < {minimum}")
    ar = arm_rows[name]
    files.append({
        "name": name, "format": row["format"], "precision": row["precision"], "gated": gated,
        "rows": len(h), "agreement_arm_vs_x86": round(agree, 6),
        "disagreeing_rows": int(np.sum(a != h)),
        "x86_predicted_class_counts": np.bincount(h, minlength=hl[name].shape[1]).tolist(),
        "x86_top2_logit_margin": {"min": float(top2.min()), "median": float(np.median(top2))},
        "max_abs_logit_diff_arm_vs_x86": float(diff.max()),
        "mean_abs_logit_diff_arm_vs_x86": float(diff.mean()),
        "accuracy": {"x86": row["accuracy"], "aarch64": ar["accuracy"]},
        "agreement_with_stored_float": {"x86": row["agreement"], "aarch64": ar["agreement"]},
        "latency_ms_p50": {"x86": row["latency_ms"]["p50"], "aarch64_emulated": ar["latency_ms"]["p50"]},
    })
secs = (out_dir / "emulated_seconds").read_text().strip() if (out_dir / "emulated_seconds").exists() else None
qemu = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
result = {
    "what": "agreement of an rpi bundle's predictions: emulated aarch64 (Raspberry Pi OS Bookworm root, Python 3.11) vs the x86 host, same bundle, same eval set",
    "latency_note": "latency under qemu-user emulation is 35-40x slower than real hardware and meaningless for a Pi; only x86 latency is a measurement",
    "model_note": model_note,
    "eval": host["eval"], "min_agreement": minimum, "passed": not failures, "failures": failures,
    "emulation": {"qemu": qemu, "QEMU_CPU": cpu, "cpuinfo": "fake Raspberry Pi cpuinfo bind-mounted", "wall_seconds_emulated_run": int(secs) if secs else None},
    "x86": {"device": host["device"]}, "aarch64": {"device": arm["device"]},
    "bundle": bundle, "files": files,
}
sys.path.insert(0, sys.argv[7])
from _common import dump_json  # paths relative to the repo
dump_json(dest, result)
w = max(len(f["name"]) for f in files)
print(f"{'file':<{w}}  agreement  max|dlogit|  acc x86  acc arm  classes(x86)  min margin")
for f in files:
    print(f"{f['name']:<{w}}  {f['agreement_arm_vs_x86']:9.4f}  {f['max_abs_logit_diff_arm_vs_x86']:10.2e}  {f['accuracy']['x86']:.4f}   {f['accuracy']['aarch64']:.4f}   {f['x86_predicted_class_counts']}  {f['x86_top2_logit_margin']['min']:.2e}")
print(f"wrote {dest}; {'PASSED' if not failures else 'FAILED: ' + '; '.join(failures)}")
sys.exit(0 if not failures else 1)
EOF
}

case "$STAGE" in
  clean) need_root; unmount_root; rm -rf "$ROOT" "$ROOT.tmp"; log "removed $ROOT"; exit 0 ;;
  root) build_root; exit 0 ;;
  all) ;;
  *) echo "error: --stage must be root or all" >&2; exit 2 ;;
esac

T0=$(date +%s)
GIVEN_BUNDLE="$BUNDLE"
need_root
mkdir -p "$SCRATCH/out"
rm -f "$SCRATCH/out"/*.json "$SCRATCH/out"/*.npz "$SCRATCH/out/emulated_seconds"
build_root
make_bundle
BUNDLE="$(cd "$BUNDLE" && pwd)"
download_wheels "$BUNDLE/requirements.txt"
run_host
run_emulated
compare
log "total $(( $(date +%s) - T0 )) s"
