#!/bin/bash
# Three-epoch screens of 784-800-10 with ADAM, one option each, two at a time on 2 cores
# (docs/results.md, "Lateral inhibition -0.2"). Run from the repository root:
#     bash scripts/screens_3_epochs.sh [DATA_DIR]
# Each screen writes runs/screen/<name>/metrics.jsonl (test accuracy per epoch).
set -e
data=${1:-../shared/data/mnist}
mkdir -p runs/screen
run() {
    name=$1; shift
    nice -n 10 spikeviz train --data-dir "$data" --hidden 800 --epochs 3 --kappa-hidden -0.4 \
        --out "runs/screen/$name" "$@" > "runs/screen/$name.log" 2>&1
}
run kappa02 --kappa-hidden -0.2 &
run dur100 --train-duration-ms 100 &
wait
run rate10k --rate-hz 10000 &
run alpha25 --alpha 2.5 &
wait
