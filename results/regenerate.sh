#!/usr/bin/env bash
# The reference search results of cubist-audit (issue 9 semantics: every run its own random init).
# Resumable: runs already in a store are skipped. Each stage writes its command's output to
# results/<store>.txt.
#   bash results/regenerate.sh widths          phase 1, widths 1..8, 10 inits per architecture and grid point
#   bash results/regenerate.sh masks 3,3,3     phase 2, every orbit, adaptive seeds 1,3,10 (exhaustive)
#   bash results/regenerate.sh uniform 3,3,3   phase 2, 10 inits for every mask and grid point, sparsest first,
#                                              seeded with the adaptive store's runs (the same runs)
#   bash results/regenerate.sh masks995 4,3,4  phase 2 at the 99.5% target (issue 12), sparsest first, adaptive
#                                              seeds 1,3,10, on the reduced grid lr 0.05,0.1 x cosine (the
#                                              schedule of 8 of the 11 pareto-minimal 99.5% architectures of
#                                              phase 1); stops at the first level where some run reaches 99.5%
#   bash results/regenerate.sh widths995       phase 1 read again at 99.5% (no training: the widths store)
#   bash results/regenerate.sh retrain         the masks of the pruned runs reaching 95% that no search row has
#                                              trained (results/retrain_missing.py), each from 10 fresh inits
#                                              on the pruning grid, into results/retrain (read by the audit)
#   bash results/regenerate.sh k30 3,2,2 [N]   phase 2 of a smaller architecture, every orbit, 30 inits for every
#                                              mask and grid point (rates near 1/180 need that many to show), every
#                                              level, or only up to N weights; the sub-architecture survey behind
#                                              the masks that pruning at width 3 found below the (3,3,3) search's 20
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
grid="--target 0.95 --lrs 0.05,0.1 --schedules cosine,step,constant"
name() { echo "search_${1//,/}"; }
case "$1" in
  widths)
    cubist search widths --max-width 8 --seeds 10 $grid --out results/search_widths --quiet \
      2>&1 | tee results/search_widths.txt ;;
  masks)
    out=results/$(name "$2")
    cubist search masks --widths "$2" --exhaustive --adaptive-inits 1,3,10 --keep 0.25 --min-rate 0.1 $grid \
      --out "$out" --quiet 2>&1 | tee "$out.txt" ;;
  uniform)
    out=results/$(name "$2")_k10
    mkdir -p "$out"
    # seed a new store with the adaptive runs (the same runs); never into one that has shards
    # (a compacted store renames its shards, and copying again would store every run twice)
    if ! compgen -G "$out/part-*.parquet" > /dev/null; then
      cp results/$(name "$2")/part-*.parquet "$out"/ 2>/dev/null || true
    fi
    cubist search masks --widths "$2" --seeds 10 --min-rate 0.1 $grid --out "$out" --quiet 2>&1 | tee "$out.txt" ;;
  widths995)
    cubist search widths --max-width 8 --seeds 10 --target 0.995 --lrs 0.05,0.1 --schedules cosine,step,constant \
      --out results/search_widths --quiet 2>&1 | tee results/search_widths_995.txt ;;
  masks995)
    out=results/$(name "$2")_995
    cubist search masks --widths "$2" --target 0.995 --adaptive-inits 1,3,10 --keep 0.25 \
      --lrs 0.05,0.1 --schedules cosine --out "$out" --quiet 2>&1 | tee -a "$out.txt" ;;
  retrain)
    stores="results/search_333_k10 results/search_323_k10 results/prune results/retrain"
    # shellcheck disable=SC2086
    ids=$(python results/retrain_missing.py $(for s in $stores; do [ -d "$s" ] && echo "$s"; done) --target 0.95)
    if [ -z "$ids" ]; then echo "every reaching mask has rows from init"; exit 0; fi
    echo "== $(echo "$ids" | tr ',' '\n' | wc -l) masks" | tee -a results/retrain.txt
    cubist search retrain results/prune --run-id "$ids" --seeds 10 --out results/retrain --quiet \
      2>&1 | tee -a results/retrain.txt ;;
  k30)
    out=results/$(name "$2")_k30
    levels=--exhaustive; [ -n "${3:-}" ] && levels="--max-nnz $3"
    # shellcheck disable=SC2086
    cubist search masks --widths "$2" $levels --seeds 30 $grid --out "$out" --quiet 2>&1 | tee "$out.txt" ;;
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac
