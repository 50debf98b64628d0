#!/usr/bin/env bash
# Hyper-parameter sweeps of PILoT, DWF and LRR on the Cubist Spiral, into one store (results/hparams), to find
# each method's working point before it runs on the whole matrix (issue 12, item 5). Resumable: runs already in
# the store are skipped, so rerunning finishes an interrupted sweep (every run its own init, as everywhere).
#   bash results/run_hparams.sh                     all three methods
#   METHODS="dwf" bash results/run_hparams.sh       a subset (split the sweep over processes: same OUT is safe,
#                                                    chunks are claimed)
#   OUT=/tmp/hp EPOCHS=2 SEEDS=1 NNZ=20 DWF_DEPTHS=3 DWF_LAMBDAS=1e-3 METHODS=dwf bash results/run_hparams.sh
#                                                   a tiny slice (checks the script; not comparable rows)
#
# What it sweeps (width 16, budgets 20, 30, 50: where the reference sweep shows these methods start or fail to
# reach 95%; the paper's whole pruning grid lr 0.05,0.1,0.2 x cosine,step,constant; SEEDS=3 inits per grid
# point: 27 runs per setting and budget, 81 per setting):
#   dwf    --dwf-depth 2,3,4 x --dwf-lambda 1e-4,5e-4,1e-3,2e-3,4e-3                       15 settings, 1,215 runs
#          (5e-4 is the default: no natural sparsity in 50 epochs; >= 2e-3 collapsed whole nets in a pilot run)
#   pilot  --pilot-k 0.1,0.25,0.5,0.75 x --pilot-alpha0 1e-6,1e-5,1e-4                     12 settings,   972 runs
#          (K as a fraction of the initial ||x||_1; the default is 0.5 and 1e-5)
#   lrr    --cycles 2,3,5,8 (exactly K geometric rounds; --rate is then unused and left at its default)
#          and --cycles 0 --rate 0.2,0.5,0.8 (rounds of --rate until the budget: 15/14/11, 5/5/4, 3/2/2 rounds
#          at budgets 20/30/50 from 560 weights)                                            7 settings,   567 runs
#          (a run trains rounds + 1 times 50 epochs: LRR is a fifth of the runs and over a third of the time)
#   2,754 runs in all. The default settings are the reference sweep's (results/prune) runs again, by design:
#   this store is self-contained.
#
# The working point (results/working_points.py, cubist.report.tables.working_points): per method (DWF per depth),
# the setting with the most runs reaching 95% train accuracy summed over the budgets swept; ties go to the higher
# mean train accuracy over all its runs (a diverged run counts as 0.5, chance); remaining ties to the simpler
# setting: fewer training epochs (LRR: fewer rounds), then the method's order of flags (DWF: smaller lambda;
# PILoT: smaller alpha0, then larger K; LRR: fewer cycles, then larger rate). The script ends by printing the
# chosen flags.
#
# Estimated time: 7 to 10 hours with JOBS=2 on this 2-core machine while it is shared (load average 6 to 9 during
# the measurement; an idle machine should be several times faster, not measured). Measured 2026-12-01 by timing
# (date before and after) `bash results/run_hparams.sh` for one setting of each method, 81 runs in the real
# chunking (--jobs 2, 2 chunks), at EPOCHS=2, 6 and 10 into /tmp, fitted as fixed + per-epoch seconds:
#   dwf (depth 3; depth 4 at 10 epochs)  42 s, 113 s, 114 s   -> 9 to 18 s per epoch: 460 to 890 s a setting
#   pilot                                58 s, 127 s, 135 s   -> 10 to 17 s per epoch: 520 to 880 s a setting
#   lrr --cycles 2 (3 trainings a run)   82 s (twice), 70 s, 219 s at 6, 18, 30 training epochs
#                                        -> about 5.7 s per training epoch + 49 s a setting
# so dwf 15 x 460-890 s = 1.9-3.7 h, pilot 12 x 520-880 s = 1.7-2.9 h, lrr 45.3 trainings x 50 epochs x 5.7 s
# (+ 7 x 49 s) = 3.7 h (rate 0.2 alone 1.1 h). The timings scatter by up to 2x with the other jobs' load.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/hparams}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-3}
EPOCHS=${EPOCHS:-50}
WIDTH=${WIDTH:-16}
NNZ=${NNZ:-20,30,50}
TARGET=${TARGET:-0.95}
DWF_DEPTHS=${DWF_DEPTHS-2 3 4}
DWF_LAMBDAS=${DWF_LAMBDAS-1e-4 5e-4 1e-3 2e-3 4e-3}
PILOT_KS=${PILOT_KS-0.1 0.25 0.5 0.75}
PILOT_ALPHA0S=${PILOT_ALPHA0S-1e-6 1e-5 1e-4}
LRR_CYCLES=${LRR_CYCLES-2 3 5 8}
LRR_RATES=${LRR_RATES-0.2 0.5 0.8}
if [ -n "${METHODS:-}" ]; then read -ra METHODS <<< "$METHODS"; else METHODS=(dwf pilot lrr); fi

grid="--lrs 0.05,0.1,0.2 --schedules cosine,step,constant"   # the paper's pruning grid
common="--width $WIDTH --nnz $NNZ $grid --seeds $SEEDS --epochs $EPOCHS --out $OUT --jobs $JOBS --quiet"
sweep() {  # one setting: cubist prune flags
  echo "== $*"
  # shellcheck disable=SC2086
  cubist prune "$@" $common
}
for m in "${METHODS[@]}"; do
  case "$m" in
    dwf) for d in $DWF_DEPTHS; do for l in $DWF_LAMBDAS; do
           sweep --method dwf --dwf-depth "$d" --dwf-lambda "$l"; done; done ;;
    pilot) for a in $PILOT_ALPHA0S; do for k in $PILOT_KS; do
             sweep --method pilot --pilot-k "$k" --pilot-alpha0 "$a"; done; done ;;
    lrr) for c in $LRR_CYCLES; do sweep --method lrr --cycles "$c"; done
         for r in $LRR_RATES; do sweep --method lrr --cycles 0 --rate "$r"; done ;;
    *) echo "unknown method $m (dwf, pilot, lrr)" >&2; exit 2 ;;
  esac
done
python results/working_points.py "$OUT" --target "$TARGET"
