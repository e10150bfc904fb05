"""Long synthetic loss curves for benches/curve-fit.sh: a long table (run, step, lr, loss) as
`windtunnel fit curve --input` reads it, one row per logged step.

    python3 benches/curve_tables.py RUNS STEPS LOG_EVERY EVAL_EVERY OUT.csv

Run i's schedule cycles through four kinds: a constant rate, a cosine to 10% of the peak, a WSD
with a linear decay to zero over 20% of the run and one with a 1-sqrt decay over 10%; later runs
of a kind stretch the decay (by 5% of the run each time, cosines to a later floor). Every run has a
warmup of 1% of its steps. The rate is written every LOG_EVERY steps (read linearly between rows),
the loss every EVAL_EVERY steps and at the last step, from the annealing law
L = 2 + 1.6·S1^(−0.35) − C·S2 with λ = 0.998 (rates in units of a peak of 3e-3), times 1 + 0.2%
Gaussian noise (seeded by the run).
"""

import math
import random
import sys


def rate(kind, k, steps, stretch):
    """The rate at step k (1-based) relative to the peak."""
    warmup = max(10, steps // 100)
    if k <= warmup:
        return k / warmup
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        length = steps * (1.0 - 0.05 * stretch)
        x = min(1.0, (k - warmup) / (length - warmup))
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * x))
    fraction = (0.2 if kind == "linear" else 0.1) + 0.05 * stretch
    start = steps * (1.0 - fraction)
    if k <= start:
        return 1.0
    x = (k - start) / (steps - start)
    return 1.0 - x if kind == "linear" else 1.0 - math.sqrt(x)


def main():
    runs, steps, log_every, eval_every = (int(a) for a in sys.argv[1:5])
    kinds = ["constant", "cosine", "linear", "1-sqrt"]
    lam, c, peak = 0.998, 0.3 / 500.0, 3e-3
    with open(sys.argv[5], "w") as out:
        out.write("run,step,lr,loss\n")
        for i in range(runs):
            kind, stretch = kinds[i % 4], (i // 4) % 4
            name = f"{kind}-{stretch}-{i}"
            noise = random.Random(i)
            s1 = m = s2 = 0.0
            before = None
            for k in range(1, steps + 1):
                eta = rate(kind, k, steps, stretch)
                s1 += eta
                if before is not None and k > max(10, steps // 100):
                    m = lam * m + (before - eta)
                    s2 += m
                before = eta
                evaluated = k % eval_every == 0 or k == steps
                if evaluated or k % log_every == 0 or k == 1:
                    loss = ""
                    if evaluated:
                        law = 2.0 + 1.6 * s1 ** -0.35 - c * s2
                        loss = f"{law * (1.0 + 0.002 * noise.gauss(0.0, 1.0)):.6f}"
                    out.write(f"{name},{k},{peak * eta:.8g},{loss}\n")


if __name__ == "__main__":
    main()
