"""The multi-power law paper's published loss curves (Luo et al. 2025, arXiv 2503.12811: 25M, 100M
and 400M models, `loss_curve_repo/csv_{25,100,400}/*.csv` of its repository, MIT licence) as one
long table for `windtunnel fit curve`: analysis/data/mpl_loss_curves.csv.

    python3 analysis/mpl_curves.py PATH/TO/loss_curve_repo > analysis/data/mpl_loss_curves.csv

Each source file has a row (step, lr, loss) every 128 steps from the end of the 2,160-step linear
warmup. Added, without a loss: a row at step 1 with rate 0 (the warmup, read linearly up to the
first row), the last step at the peak before a decay starting at step 20,000 (wsd, wsdld) and
before the drop at step 8,000 of the two-stage runs (wsdcon), so that the rate read linearly
between rows follows the schedule the source's own code (src/lr_schedules.py) gives.
"""

import csv
import os
import sys

PEAK = 3e-4


def rows_of(path, name):
    with open(path) as f:
        rows = [(int(r["step"]), r["lr"], r["loss"]) for r in csv.DictReader(f)]
    extra = [(1, "0", "")]
    if name.startswith("wsd_") or name.startswith("wsdld_"):
        extra.append((20000, repr(PEAK), ""))
    if name.startswith("wsdcon_"):
        extra.append((7999, repr(PEAK), ""))
    steps = {r[0] for r in rows}
    return sorted([e for e in extra if e[0] not in steps] + rows)


def main():
    root = sys.argv[1]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["run", "size", "step", "lr", "loss"])
    for size in ["25M", "100M", "400M"]:
        folder = os.path.join(root, "csv_" + size[:-1])
        for file in sorted(os.listdir(folder)):
            name = file[: -len(".csv")]
            for step, lr, loss in rows_of(os.path.join(folder, file), name):
                out.writerow([f"{size}/{name}", size, step, lr, loss])


if __name__ == "__main__":
    main()
