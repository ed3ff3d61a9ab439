#!/usr/bin/env bash
# Reproduce the shipped pocket checkpoint (two stages), then install it and rewrite its model card.
#   bash tools/train_pocket.sh            # CPU: about 1.5 h on 2 cores; a GPU is used when present
# Stage 1: full captions only. Stage 2: continues from stage 1 with 30% of single-object scenes
# captioned by a short class prompt ("一张红色圆形的图片"), which zero-shot classification uses.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python -m clipq_helpers.train --steps 1100 --batch-size 96 --warmup 100 --eval-every 275 --threads 1 \
    --p-prompt 0 --out runs/pocket
python -m clipq_helpers.train --resume runs/pocket --steps 600 --batch-size 96 --warmup 40 --lr 4e-4 \
    --lr-text 1e-4 --p-prompt 0.3 --eval-every 300 --threads 1 --seed 1 --out runs/pocket2 --install
python tools/write_model_card.py
