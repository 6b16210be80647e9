#!/bin/bash
# One epoch of 784-800-10 per METHOD.md decision alternative (issue 3), ADAM defaults otherwise.
cd "$(dirname "$0")/.."
mkdir -p runs/decisions
for variant in "wta-plain --wta-error plain" "decay-first-order --weight-decay first_order" "adam-dense --adam-update dense" "sgd-wta-plain --optimizer sgd --wta-error plain" \
    "default" "wta-fired --wta-members fired" "sgd-default --optimizer sgd" \
    "sgd-wta-fired --optimizer sgd --wta-members fired"; do
  set -- $variant; name=$1; shift
  [ -f runs/decisions/$name/metrics.jsonl ] && continue
  nice -n 5 .venv/bin/spikeviz train --data-dir ../shared/data/mnist --hidden 800 --epochs 1 --out runs/decisions/$name "$@" > runs/decisions/$name.log 2>&1
done
