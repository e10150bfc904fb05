#!/usr/bin/env python3
"""A table for `windtunnel fit hparams` drawn from known laws, to check it recovers them.

lr* = 0.3·N^-0.25·D^0.1 and B* = 0.02·D^0.5 at 3 model sizes × 3 token counts; each cell scans 5
learning rates × 5 batch sizes around its optima, with loss
    L = 2 + 50/N^0.3 + 80/D^0.3 + 0.05·ln(lr/lr*)² + 0.03·ln(B/B*)² + Gaussian noise (0.003 nats).

    python3 analysis/known_hparams.py > known-hparams.csv
    windtunnel fit hparams --input known-hparams.csv
"""
import math
import random

rng = random.Random(0)
print("status,non_embedding_params,tokens,lr,batch_size,final_eval_loss")
for n in (1e6, 4e6, 16e6):
    for d in (1e8, 4e8, 16e8):
        lr_star, b_star = 0.3 * n**-0.25 * d**0.1, 0.02 * d**0.5
        for i in range(-2, 3):
            for j in range(-2, 3):
                lr = lr_star * 1.6**i * 1.13
                b = round(b_star * 1.5**j * 0.93)
                loss = 2 + 50 / n**0.3 + 80 / d**0.3 + 0.05 * math.log(lr / lr_star) ** 2 + 0.03 * math.log(b / b_star) ** 2 + rng.gauss(0, 0.003)
                print(f"done,{n:.0f},{d:.0f},{lr!r},{b},{loss!r}")
