"""deepvision logreg"""

from __future__ import annotations

import argparse
import textwrap

ORDER = 24

EPILOG = """example:
  deepvision logreg features.h5 --grid C=0.01,0.1,1,10,100,1000,10000 \\
      --cv 3 --jobs -1 --out model/
  deepvision logreg train-f.h5 --test test-f.h5 --out model/
writes model.npz (arrays only, loaded without unpickling), metrics.json,
report.csv/.txt, confusion_matrix.csv/.png and cv_results.csv.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logreg", help="logistic regression with grid search on an HDF5 feature file",
                       description="Fit a logistic regression on the first --train-fraction of the rows of an HDF5 "
                                   "feature file (features, labels, label_names), choosing C by k-fold grid search, "
                                   "and report precision/recall/F1 per class on the remaining rows, or on the "
                                   "rows of a separate --test file.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.description = textwrap.fill(p.description, 79)  # the epilog stays as written
    p.add_argument("features", metavar="FEATURES.h5", help="file written by `deepvision features`")
    p.add_argument("--test", metavar="TEST.h5",
                   help="features of a separate split (same `deepvision features` options): train on every row "
                        "of FEATURES.h5 and report on this file")
    p.add_argument("--train-fraction", type=float,
                   help="without --test: leading rows used for training (0.75), the rest are held out")
    p.add_argument("--grid", help="C values, e.g. C=0.01,0.1,1 (default 0.01 ... 10000 in decades)")
    p.add_argument("--cv", type=int, default=3, help="cross-validation folds (default 3)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel fits (-1: all cores)")
    p.add_argument("--solver", default="lbfgs",
                   help="lbfgs (multinomial, default) or liblinear (the reference's one-vs-rest), saga, ...")
    p.add_argument("--max-iter", type=int, default=1000, help="solver iterations (default 1000)")
    p.add_argument("--standardize", action="store_true", help="scale features to zero mean, unit variance first")
    p.add_argument("--out", help="output folder (default: FEATURES-logreg beside the file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.apps.transfer.logreg import fit_logreg

    fit_logreg(args.features, args.out, test=args.test, train_fraction=args.train_fraction, grid=args.grid,
               cv=args.cv, jobs=args.jobs, solver=args.solver, max_iter=args.max_iter, standardize=args.standardize)
    return 0
