#!/usr/bin/env bash
# Rebuild the training data and (re)train the shipped models' cross-validation runs.
#
# Every step is resumable: rerun the script after an interruption and it continues where it
# stopped (prepare skips finished cases; train --cv resumes each fold from its last.pt).
# Long: hours on a 2-core CPU. Run it from an installed copy or a separate git worktree so
# that edits to your checkout cannot change a running job, e.g.
#
#   git worktree add --detach ~/gliomaseg-train HEAD
#   GLIOMASEG_SRC=~/gliomaseg-train/src nohup bash bench/train_models.sh brats &
#
# Usage: bench/train_models.sh data|brats|lgg|score   (environment below; defaults in brackets)
#   SHARED     the shared data folder                         [../shared/data]
#   WORK       where extracted data, caches and runs go       [~/gliomaseg-runs]
#   MIRRORS    folder holding the fetched bare git repositories, named owner+name/repo
#              (koriavinash1+BioExp, koriavinash1+DeepBrainSeg,
#              TruongVanHien194276+Brain_Segmentation_data)   [/work/.mirror]
#   THREADS    torch threads per training process              [1: two processes share 2 cores
#              better than one 2-thread process when other work runs too]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${SHARED:-$ROOT/../shared/data}
WORK=${WORK:-$HOME/gliomaseg-runs}
MIRRORS=${MIRRORS:-/work/.mirror}
THREADS=${THREADS:-1}
PY=${PY:-$ROOT/.venv/bin/python}
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$THREADS
[ -n "${GLIOMASEG_SRC:-}" ] && export PYTHONPATH=$GLIOMASEG_SRC
GS=("$PY" -m gliomaseg)
mkdir -p "$WORK"

data() {
    # 42 more manually labelled BraTS patients and the 88 LGG development patients.
    [ -d "$WORK/brats_more" ] || "$PY" "$SHARED/brats_more/extract.py" "$WORK/brats_more" \
        "$MIRRORS/koriavinash1+BioExp/repo" "$MIRRORS/koriavinash1+DeepBrainSeg/repo"
    [ -d "$WORK/lgg_dev" ] || "$PY" "$SHARED/lgg/extract_dev.py" \
        "$MIRRORS/TruongVanHien194276+Brain_Segmentation_data/repo" "$WORK/lgg_dev"
    # The 49 distinct manually labelled BraTS patients: the 7 of ../shared/data/brats (the
    # two BraTS-GLI folders are copies of BraTS2021_00000/00002 and stay out) and the 42.
    mkdir -p "$WORK/brats49"
    for c in BraTS19_CBICA_ABM_1 BraTS2021_00000 BraTS2021_00002 BraTS2021_00003 \
        BraTS2021_00006 BraTS2021_00008 BraTS20_Training_001; do
        ln -sfn "$(realpath "$SHARED/brats/$c")" "$WORK/brats49/$c"
    done
    for c in "$WORK"/brats_more/*/; do ln -sfn "$(realpath "$c")" "$WORK/brats49/$(basename "$c")"; done
    # 5 patient-level folds, stratified by source (CBICA, TCIA, 2013, 2021) and LGG institution.
    "${GS[@]}" prepare "$WORK/brats49" -o "$WORK/cache-brats49"
    "${GS[@]}" prepare "$WORK/lgg_dev/kaggle_3m" -o "$WORK/cache-lgg88"
}

brats() {
    "${GS[@]}" train --preset brats-cpu --data "$WORK/cache-brats49" --cv -o "$WORK/brats-cpu" \
        --no-progress
}

lgg() {
    "${GS[@]}" train --preset lgg-cpu-128 --data "$WORK/cache-lgg88" --cv -o "$WORK/lgg-cpu-128" \
        --no-progress
}

score() {
    # Cross-validation of each ensemble (each patient by the member that never saw it) with
    # the postprocessing chosen on the CV predictions (nested estimate beside it).
    "$PY" bench/accuracy.py --model "$WORK/brats-cpu/model.pt" --cache "$WORK/cache-brats49" \
        --choose-postprocessing --agreement "$SHARED/brats_auto_labels" >"$WORK/brats-cpu-cv.json"
    "$PY" bench/accuracy.py --model "$WORK/lgg-cpu-128/model.pt" --cache "$WORK/cache-lgg88" \
        --choose-postprocessing >"$WORK/lgg-cpu-128-cv.json"
    # Review flags: each model's threshold is the best F1 (best_f1_threshold_same_data), kept
    # when the nested choice agrees (README "Each model's threshold"); store it with
    # gliomaseg bundle --flag-threshold T.
    "$PY" bench/flags.py --runs "$WORK"/brats-cpu/fold{0,1,2,3,4} --cache "$WORK/cache-brats49" \
        --checkpoint last.pt --no-tta --amp >"$WORK/brats-cpu-flags.json"
    "$PY" bench/flags.py --runs "$WORK"/lgg-cpu-128/fold{0,1,2,3,4} --cache "$WORK/cache-lgg88" \
        --checkpoint last.pt --no-tta >"$WORK/lgg-cpu-128-flags.json"
}

case "${1:-}" in
    data | brats | lgg | score) "$1" ;;
    *) echo "usage: bench/train_models.sh data|brats|lgg|score" >&2; exit 2 ;;
esac
