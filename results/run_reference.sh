#!/usr/bin/env bash
# The reference pruning sweeps of cubist-audit, as committed under results/prune.
# Resumable: runs already in the store are skipped, so rerunning finishes an interrupted sweep.
#   bash results/run_reference.sh [WIDTHS...]      (default: 3 323 16 8; 323 = widths 3,2,3, the fewest-weights
#                                                   architecture of phase 1; 425 = (4,2,5), 4 = (4,4,4))
# Every width uses the paper's whole pruning grid (lr 0.05,0.1,0.2 x cosine,step,constant) with
# SEEDS (default 3) independent inits per grid point: every run its own init.
# SEEDS=1 bash results/run_reference.sh 32   runs width 32 with one init per grid point.
# METHODS="imp lrr" bash results/run_reference.sh 32   runs a subset (to split a sweep over processes).
# Iterative methods (imp, lrr and their PILoT combinations) run the sparsest paper's imp_LTH
# protocol: exactly 5 rounds with geometric targets (--cycles 5).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/prune}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-3}
read -ra ALL_METHODS <<< "$(python results/variants.py list reference)"   # results/variants.py
if [ -n "${METHODS:-}" ]; then read -ra METHODS <<< "$METHODS"; else METHODS=("${ALL_METHODS[@]}"); fi
widths=("$@")
[ ${#widths[@]} -gt 0 ] || widths=(3 323 16 8)

flags_for() { python results/variants.py flags "$1"; }   # method variant -> cubist prune flags
for m in "${METHODS[@]}"; do flags_for "$m" > /dev/null; done   # an unknown variant stops here, before any work

grid="--lrs 0.05,0.1,0.2 --schedules cosine,step,constant"   # the paper's pruning grid
for w in "${widths[@]}"; do
  case "$w" in
    3) arch="--widths 3,3,3"; nnz=15,20,25 ;;
    323) arch="--widths 3,2,3"; nnz=15,18,20 ;;
    425) arch="--widths 4,2,5"; nnz=15,20,25,27,30 ;;
    4) arch="--widths 4,4,4"; nnz=15,20,25,30,40 ;;
    16) arch="--width 16"; nnz=15,20,25,30,40,50,65 ;;
    *) arch="--width $w"; nnz=15,20,25,30,40,50,65 ;;
  esac
  for m in "${METHODS[@]}"; do
    echo "== width $w: $m"
    # shellcheck disable=SC2046
    cubist prune $(flags_for "$m") $arch --nnz $nnz $grid --seeds "$SEEDS" --out "$OUT" --jobs "$JOBS" --quiet
  done
done
