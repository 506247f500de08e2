#!/usr/bin/env bash
# The GPU check: every solution notebook under nbval on CUDA, then the training benchmark.
#
#   bash benchmarks/gpu_check.sh          # PYTHON=... to choose the interpreter (default .venv/bin/python, else python3)
#
# Prints one line per notebook (seconds, passed or failed) and the benchmark's medians, CPU and
# CUDA side by side. Without CUDA it says so in one line and exits with status 2. Run it
# whenever a GPU machine is at hand and copy its table into the README's Performance section.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: CUDA is not available to $PYTHON (no GPU, or a CPU-only torch); nothing was run"
  exit 2
fi
export TUTOR_DEVICE=cuda  # every notebook's setup() and the main job pick this device
logs=$(mktemp -d)
"$PYTHON" -c 'import torch; print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")'
printf '%-28s %8s  %s\n' "solution notebook (nbval)" seconds result
failed=0
for nb in solutions/*/*.ipynb; do
  name=$(basename "$nb" .ipynb)
  start=$(date +%s.%N)
  if "$PYTHON" -m pytest -p no:cacheprovider -q "$nb" >"$logs/$name.log" 2>&1; then
    result=passed
  else
    result="FAILED: see $logs/$name.log"
    failed=1
  fi
  printf "%-28s %8.1f  %s\n" "$name" "$(awk -v a="$start" -v b="$(date +%s.%N)" "BEGIN { print b - a }")" "$result"
done
echo
"$PYTHON" benchmarks/benchmark.py --repeats 3 || failed=1
exit $failed
