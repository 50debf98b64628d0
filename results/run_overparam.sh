#!/usr/bin/env bash
# Over-parameterisation at the paper's scale (issue 12, item 2), into results/overparam.
# Resumable: runs already in the store are skipped, so rerunning finishes an interrupted sweep.
#   bash results/run_overparam.sh [WIDTHS...]      (default: 3 4 5 6 7 8 16 32 64 128 256, in that order)
#   OUT=/tmp/op SEEDS=1 METHODS="gmp lrr" bash results/run_overparam.sh 3 64
# Equal hidden widths (cubist prune --width W), budgets 15..26, 30, 33, 37, 40, 44, 50, 53, 55, 57,
# 60, 65 below the width's weight count (width 3: 15..26 of 27; 4: 16 budgets; 5: 22; from 6: all 23),
# every variant of results/overparam.py METHODS (results/run_reference.sh's 18, RigL, FORCE, Iter-SNIP and
# ProsPr; iterative methods with 5 rounds), SEEDS (default 3) inits per grid point. results/overparam.py plans each
# sweep: flags, budgets, grid, --chunk (the sweep's chunks; keep JOBS to resume bit for bit).
# Chunks: at most 2**21 / W**2 replicas (256 up to width 90, 128 at 128, 32 at 256), in a multiple
# of JOBS balanced chunks; the CPU default, 256 at every width, costs 4.33 ms of CPU per replica
# and step at width 256 against 2.49 ms in chunks of 32 (1.74x: the weight-sized passes of
# every step, mask, gradient copy, weight decay, momentum, update, no longer fit in cache).
#
# Grid. By default ONE grid point per variant at every width (a reduced grid: the whole grid of
# 126 h below does not fit 2 cores): the one that did best in the reference sweep at width 16
# (results/prune, `bash results/run_reference.sh 16`: budgets 15,20,25,30,40,50,65 x the paper's grid
# lr 0.05,0.1,0.2 x cosine,step,constant x 3 inits; most runs reaching 95% train accuracy, then the
# highest mean train accuracy, then the grid order), chosen the first time it is needed and frozen
# in OUT/reduced_grid.json with its source, passed as --lrs/--schedules, so every row records it.
# The paper's design, its whole grid up to width 32 and width 32's best point above:
#   FULL_GRID_MAX_WIDTH=32 GRID_FROM=results/overparam GRID_WIDTH=32 bash results/run_overparam.sh
# (width 32 complete before 64: the default order does that). GRID_FROM, GRID_WIDTH, GRID_NNZ, GRID_SEEDS set
# the source (results/overparam.py grid_source: by default results/prune's width 16 for every variant of
# `variants.py list all`, results/hparams' width 16 at budgets 20, 30, 50 for a working point).
#
# Working points (issue 12, item 5): PILoT's is K 0.75, not its default (results/README.md, hyper-parameters);
# it is reported as "pilot", so it has a store of its own (DWF's and LRR's are their defaults: the matrix's rows):
#   OUT=results/overparam_pilot075 METHODS=pilot-k0.75 bash results/run_overparam.sh 3 4 5 6 7 8 16
#
# Time. One worker's CPU seconds per 50-epoch run, from bench/prune_widths.py on its defaults (one
# process, one torch thread, R = 32 replicas per chunk up to width 16, then 16, 8, 4, 2 at widths
# 32..256; load average 5.6 before, 4.0 after, on the machine's 2 cores; 1 min 42 s; runs/s = 1 /
# these; the sweep's larger chunks at widths 64..256 are a little cheaper per run):
#   width      3     4     5     6     7     8    16    32    64   128   256
#   gmp      0.95  0.81  0.95  0.97  1.01  0.79  1.04  2.32  4.92  13.7  51.7
#   lrr      5.19  6.30  5.83  5.42  5.26  5.84  5.96  11.8  33.2  95.4   315    (6 x 50 epochs)
# The other variants, relative to gmp (one training run) or lrr (the iterative ones), as observed
# per run at width 16 in results/prune: the 14 one-run variants cost 44.3 gmp runs (synflow 8.9,
# random 5 x 3.05, str 5.3, pilot 4.4, spred 3.2, dwf 2.4, rigl ~1.5, grasp 1.4, snip 1.0, gmp 1),
# the 5 iterative ones 7.9 lrr runs (imp+pilot 1.9, lrr+pilot ~1.9, imp 1.6, imp-wr 1.6, lrr 1).
# A width takes runs x (44.3 gmp + 7.9 lrr) / 2 workers, runs = budgets x grid points x SEEDS (3):
#   width  budgets  full grid (9 points)          reduced (1 point)
#      3      12     324 x   83.1 s / 2 =   3.7 h
#      4      16     432 x   85.7 s / 2 =   5.1 h
#      5      22     594 x   88.1 s / 2 =   7.3 h
#      6      23     621 x   85.8 s / 2 =   7.4 h
#      7      23     621 x   86.3 s / 2 =   7.4 h
#      8      23     621 x   81.1 s / 2 =   7.0 h
#     16      23     621 x   93.2 s / 2 =   8.0 h
#     32      23     621 x  195.8 s / 2 =  16.9 h
#     64      23     621 x  480.6 s / 2 =  41.4 h   ->   69 x  480.6 s / 2 =  4.6 h
#    128      23     621 x 1358.8 s / 2 = 117.2 h   ->   69 x 1358.8 s / 2 = 13.0 h
#    256      23     621 x 4778.8 s / 2 = 412.2 h   ->   69 x 4778.8 s / 2 = 45.8 h (SEEDS=1: 15.3 h)
# The paper's design (full grid to 32, reduced above): 62.9 h (widths 3..32) + 63.4 h (64..256) = about
# 126 h, 5.3 days of 2 free cores; the default (reduced everywhere) 1/9 of widths 3..32: about 70 h,
# most of it widths 128 and 256. Shared, it is slower: the check of this script (OUT=/tmp/..., SEEDS=1, METHODS=gmp,
# widths 3 and 64) took 2 min 46 s for width 3's 108 runs and 5 min 18 s for width 64's 23 at a
# load average of 8-10: 3.2x and 5.6x these figures.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/overparam}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-3}
grid_args=(--full-grid-max-width "${FULL_GRID_MAX_WIDTH:-0}")   # the grid source: each variant's own unless set
[ -z "${GRID_FROM:-}" ] || grid_args+=(--grid-from "$GRID_FROM")
[ -z "${GRID_WIDTH:-}" ] || grid_args+=(--grid-width "$GRID_WIDTH")
[ -z "${GRID_NNZ:-}" ] || grid_args+=(--grid-nnz "$GRID_NNZ")
[ -z "${GRID_SEEDS:-}" ] || grid_args+=(--grid-seeds "$GRID_SEEDS")
read -ra ALL_METHODS <<< "$(python results/variants.py list all)"   # results/variants.py
if [ -n "${METHODS:-}" ]; then read -ra METHODS <<< "$METHODS"; else METHODS=("${ALL_METHODS[@]}"); fi
widths=("$@")
[ ${#widths[@]} -gt 0 ] || widths=(3 4 5 6 7 8 16 32 64 128 256)

for w in "${widths[@]}"; do
  for m in "${METHODS[@]}"; do
    args=$(python results/overparam.py plan "$w" "$m" --out "$OUT" --seeds "$SEEDS" --jobs "$JOBS" "${grid_args[@]}")
    echo "== width $w: $m: cubist prune $args"
    # shellcheck disable=SC2086
    cubist prune $args
  done
done
