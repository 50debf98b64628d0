#!/usr/bin/env bash
# The sparsest paper's fixed-init experiment at 95% ("given the optimal width and initialization";
# issue 12 item 3, ALGORITHMS.md §3), from the best (3,3,3) init of the committed phase-1 store.
# Resumable: every stage skips what its store (or the checkpoint file) already holds, so rerunning
# finishes an interrupted experiment.
#
#   bash results/run_fixed_init.sh                    (everything, into results/fixed_init)
#   OUT=/tmp/x STAGES="init widths" bash results/run_fixed_init.sh    (some stages)
#
# Stages, and the exact commands with the defaults (OUT=results/fixed_init, SEEDS=3, JOBS=2):
#  init    cubist search best-init --store results/search_widths --widths 3,3,3 --target 0.95
#                --out results/fixed_init/init_333.pt
#          the width-16 init behind the best (3,3,3) phase-1 run (run 3df0e7e132980c94, train accuracy
#          0.9622, lr 0.05 cosine, seed index 2; checkpoint 91da1f65c686a936), checked by retraining
#          that run from it (identical row).
#  widths  cubist search widths --init-checkpoint results/fixed_init/init_333.pt --fewer-params-than 3,3,3
#                --target 0.95 --lrs 0.05,0.1 --schedules cosine,step,constant --seeds 3
#                --out results/fixed_init/search_widths --jobs 2 --quiet
#          phase 1 from that init: the 93 architectures with fewer than 37 parameters (weights and
#          biases of the dense (3,3,3)), 6 grid points x 3 data orders = 1,674 runs.
#  masks   cubist search masks --widths A --init-checkpoint results/fixed_init/init_333.pt
#                --symmetry labelled --target 0.95 --lrs 0.05,0.1 --schedules cosine,step,constant
#                --seeds 3 --out results/fixed_init/search_masks --jobs 2 --quiet
#          phase 2: A = the fewest-weights architecture phase 1 found reaching 0.95 (read from
#          widths.txt; the paper's was 3,2,2: 4,375 labelled masks), every labelled mask (orbits are
#          refused with a fixed init), sparsest level first, stopping after the first level reached.
#  prune   for each METHOD of results/run_reference.sh (18 variants) and W in (--widths 3,3,3) (--width 16)
#          (PRUNE_AT="opt 16"; e.g. PRUNE_AT=16 for width 16 alone):
#          cubist prune FLAGS(METHOD) W --nnz 15,16,...,26 --lrs 0.05,0.1,0.2 --schedules cosine,step,constant
#                --seeds 3 --init-checkpoint results/fixed_init/init_333.pt --out results/fixed_init/prune
#                --jobs 2 --quiet
#          every run the width-W slice of the same init; the 3 seed indices are 3 data orders per
#          grid point (12 budgets x 9 grid points x 3 = 324 runs per method and width; 11,664 runs).
#          PRUNE_GRID=results/overparam: each variant at the one grid point the matrix froze for it
#          (results/overparam/reduced_grid.json: its best point in results/prune at width 16, random
#          inits), 36 runs per method and width; METHODS may then name any of `variants.py list all`
#          (the 22 of the matrix: 1,584 runs), e.g.
#            STAGES=prune PRUNE_GRID=results/overparam METHODS="$(python results/variants.py list all)" \
#              bash results/run_fixed_init.sh
#
# Time on this 2-core machine. A timed slice (OUT=/tmp/..., JOBS=2, beside other sweeps: load
# average 5-10, so every number here is several times an idle machine's):
#   STAGES=init                                                          36 s (one 50-epoch run, numba cache)
#   STAGES=widths SEEDS=1 SEARCH_LRS=0.05 SCHEDULES=cosine              93 runs in 122 s
#   STAGES=masks  MASK_WIDTHS=3,2,2 MAX_NNZ=10 SEEDS=1 SEARCH_LRS=0.05 SCHEDULES=cosine
#                                                                        72 masks, 72 runs in 69 s
#   STAGES=prune  METHODS=gmp SEEDS=3 PRUNE_LRS=0.1 SCHEDULES=cosine    36 runs at (3,3,3) + 36 at width 16
#                                                                        in 503 s (8.4 and 14.2 s per run
#                                                                        per worker, chunks of 18)
# Estimate for the whole experiment. The slice ran 5-20x slower per run than the same engines did
# for the committed stores (gmp: 1.7 s per run at (3,3,3), 0.7 s at width 16 in results/prune), so
# the estimate scales the committed per-run costs by the run counts:
#   init   ~30 s.
#   widths 1,674 runs; results/search_widths trained 30,720 dense runs in 969 s: ~1-2 min idle
#          (the slice's rate, 0.8 runs/s, would give ~35 min).
#   masks  18 runs per labelled mask; if phase 1 gives (3,2,2) as in the paper, levels 10-12 hold
#          1,548 masks (27,864 runs), the whole (3,2,2) 4,375 (78,750 runs); phase 2 of (3,3,3)
#          ran at 68 runs/s: ~7-20 min idle.
#   prune  324 runs per method and width (11,664 in all); the committed per-run costs of the 18
#          variants sum to 98.5 s at (3,3,3) and ~72 s at width 16 (lrr+pilot at 16 extrapolated):
#          324 x (98.5 + 72) s / 2 jobs = ~7.7 h (larger chunks than the committed sweeps': less).
#   In all about 8 hours with JOBS=2 on an idle machine (2-3x that beside other sweeps); each stage
#   can run alone (STAGES=...) and resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/fixed_init}
SOURCE=${SOURCE:-results/search_widths}     # the committed phase-1 store (random inits, 10 per grid point)
INIT_WIDTHS=${INIT_WIDTHS:-3,3,3}           # the architecture whose best init is used (the dense benchmark)
OPT_WIDTHS=${OPT_WIDTHS:-3,3,3}             # the optimal width the pruners run at (beside width 16)
TARGET=${TARGET:-0.95}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-3}                           # data orders per grid point (the init is fixed)
EPOCHS=${EPOCHS:-50}
SEARCH_LRS=${SEARCH_LRS:-0.05,0.1}          # the search's grid
PRUNE_LRS=${PRUNE_LRS:-0.05,0.1,0.2}        # the pruning grid
PRUNE_AT=${PRUNE_AT:-opt 16}                # the prune stage's architectures: opt (OPT_WIDTHS), or equal widths W
PRUNE_GRID=${PRUNE_GRID:-}                  # a matrix store: each variant at its frozen reduced grid point instead
SCHEDULES=${SCHEDULES:-cosine,step,constant}
NNZ=${NNZ:-15,16,17,18,19,20,21,22,23,24,25,26}   # the paper's fixed-init budgets at 95%
MAX_NNZ=${MAX_NNZ:-}                        # phase 2: only levels up to this total weight nnz (slices)
STAGES=${STAGES:-init widths masks prune}
CHECK=${CHECK:-exact}                       # best-init: exact on the CPU model of SOURCE (an Intel Xeon), else close
read -ra ALL_METHODS <<< "$(python results/variants.py list reference)"   # results/variants.py
if [ -n "${METHODS:-}" ]; then read -ra METHODS <<< "$METHODS"; else METHODS=("${ALL_METHODS[@]}"); fi
read -ra stages <<< "$STAGES"
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

flags_for() { python results/variants.py flags "$1"; }   # method variant -> cubist prune flags
for m in "${METHODS[@]}"; do flags_for "$m" > /dev/null; done   # an unknown variant stops here, before any work

mkdir -p "$OUT"
INIT="$OUT/init_${INIT_WIDTHS//,/}.pt"
search_grid="--target $TARGET --lrs $SEARCH_LRS --schedules $SCHEDULES --seeds $SEEDS --epochs $EPOCHS"

if want init; then
  echo "== init: best ($INIT_WIDTHS) phase-1 init of $SOURCE"
  if [ -f "$INIT" ]; then
    echo "$INIT exists"
  else
    cubist search best-init --store "$SOURCE" --widths "$INIT_WIDTHS" --target "$TARGET" --check "$CHECK" --out "$INIT"
  fi
fi

if want widths; then
  echo "== phase 1 from $INIT: architectures with fewer parameters than ($INIT_WIDTHS)"
  # shellcheck disable=SC2086
  cubist search widths --init-checkpoint "$INIT" --fewer-params-than "$INIT_WIDTHS" $search_grid \
    --out "$OUT/search_widths" --jobs "$JOBS" --quiet | tee "$OUT/search_widths.txt"
fi

if want masks; then
  arch=${MASK_WIDTHS:-}
  if [ -z "$arch" ] && [ -f "$OUT/search_widths.txt" ]; then
    arch=$(sed -n 's/^fewest weights reaching [0-9.]* in some run: \([0-9][0-9,]*[0-9]\) (.*/\1/p' \
           "$OUT/search_widths.txt" | head -n 1)
  fi
  if [ -z "$arch" ]; then
    echo "== phase 2 skipped: phase 1 found no architecture reaching $TARGET (or has not run; MASK_WIDTHS=...)"
  else
    echo "== phase 2 from $INIT: labelled masks of ($arch)"
    limit=()
    [ -n "$MAX_NNZ" ] && limit=(--max-nnz "$MAX_NNZ")
    # shellcheck disable=SC2086
    cubist search masks --widths "$arch" --init-checkpoint "$INIT" --symmetry labelled $search_grid \
      "${limit[@]}" --out "$OUT/search_masks" --jobs "$JOBS" --quiet | tee "$OUT/search_masks.txt"
  fi
fi

if want prune; then
  archs=()
  for a in $PRUNE_AT; do
    if [ "$a" = opt ]; then archs+=("--widths $OPT_WIDTHS"); else archs+=("--width $a"); fi
  done
  declare -A grid   # each variant's grid, looked up once, before any training
  for m in "${METHODS[@]}"; do
    grid[$m]="--lrs $PRUNE_LRS --schedules $SCHEDULES"
    if [ -n "$PRUNE_GRID" ]; then   # the matrix's point (results/overparam.py grid): lr and schedule
      grid[$m]=$(python results/overparam.py grid "$PRUNE_GRID" "$m" |
                 python -c 'import json, sys; p = json.load(sys.stdin); print("--lrs", p["lr"], "--schedules", p["schedule"])')
    fi
    grid[$m]+=" --seeds $SEEDS --epochs $EPOCHS"
  done
  for arch in "${archs[@]}"; do
    for m in "${METHODS[@]}"; do
      echo "== prune $m $arch from $INIT (${grid[$m]})"
      # shellcheck disable=SC2046,SC2086
      cubist prune $(flags_for "$m") $arch --nnz "$NNZ" ${grid[$m]} --init-checkpoint "$INIT" \
        --out "$OUT/prune" --jobs "$JOBS" --quiet
    done
  done
fi
