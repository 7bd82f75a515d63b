"""``python -m impls.error_fit BACKEND``: measure the constants of a Winograd error model.

Why: impls.tolerances bounds a Winograd backend's error by two coefficients per variant
(WINOGRAD_COEFFICIENTS), each twice the worst measured over random problems. This is that
measurement, so a constant can be re-derived or a new variant fitted instead of trusted:

    python -m impls.error_fit winograd-f4x1 --trials 900     # ~9,000 comparisons, minutes

For each random problem (C/g from 1 to 4096, groups 1 or 3, images 4..23 pixels, padding
0..3) and each fill (normal, uniform, all-ones, small integers, 100 + normal) in float32
and float64, it runs the backend, compares with the float64 reference (impls.reference,
NumPy) and reports the worst of

    coherent:  (|out - ref| - u*|ref|) / (u * xw * L * sqrt(C/g))      every fill
    normal:    (|out - ref| - u*|ref|) / (u * xw * sqrt(L))             normal fill only

the two forms of impls.tolerances' Winograd section (u unit roundoff, xw = max|x|*max|w|,
L = C/g*9; the divisors are its winograd_spread), beside the constants in use.

What it must not do: change the constants (a person decides, at twice the worst), or
compare with anything but the independent float64 reference.
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
import torch

import impls
from impls.reference import reference_conv2d
from impls.tolerances import (
    DTYPE_TOLERANCES,
    WINOGRAD_COEFFICIENTS,
    Problem,
    winograd_spread,
)

#: Fills: every one counts for the coherent form, "normal" alone for the normal form.
FILLS = {
    "normal": lambda size, gen: torch.randn(size, generator=gen, dtype=torch.float64),
    "uniform": lambda size, gen: torch.rand(size, generator=gen, dtype=torch.float64),
    "all-ones": lambda size, gen: torch.ones(size, dtype=torch.float64),
    "small integers": lambda size, gen: torch.randint(-4, 5, size, generator=gen).double(),
    "100+normal": lambda size, gen: 100 + torch.randn(size, generator=gen, dtype=torch.float64),
}
DTYPES = (torch.float32, torch.float64)


def problems(trials: int, seed: int):
    """(N, C/g, groups, K, H, W, padding) of ``trials`` random 3x3 problems."""
    rng = random.Random(seed)
    for _ in range(trials):
        cg = rng.choice([1, 1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096])
        groups = rng.choice([1, 1, 3]) if cg <= 256 else 1
        k = groups * (rng.choice([1, 2, 4, 8]) if cg > 256 else rng.choice([1, 3, 8, 16]))
        small = cg >= 1024  # keeps the long reductions quick
        h, w = (rng.randint(4, 9), rng.randint(4, 9)) if small else (rng.randint(4, 23),
                                                                       rng.randint(4, 23))
        yield rng.choice([1, 2]), cg, groups, k, h, w, (rng.randint(0, 3), rng.randint(0, 3))


def coefficients(backend, trials: int = 300, seed: int = 1) -> dict[tuple, float]:
    """{(form, fill, dtype name): worst coefficient} of ``backend`` (a registered name, or a
    function with a backend's signature) over the problems."""
    fn = backend if callable(backend) else impls.get_backend(backend).fn
    worst: dict[tuple, float] = {}
    for index, (n, cg, groups, k, h, w, padding) in enumerate(problems(trials, seed)):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        for fill, make in FILLS.items():
            x64, w64 = make((n, cg * groups, h, w), gen), make((k, cg, 3, 3), gen)
            for dtype in DTYPES:
                x, wt = x64.to(dtype), w64.to(dtype)
                ref = reference_conv2d(x.double().numpy(), wt.double().numpy(),
                                       padding=padding, groups=groups)
                out = fn(x, wt, None, (1, 1), padding, (1, 1), groups).double().numpy()
                u = DTYPE_TOLERANCES[dtype][2]
                excess = float((np.abs(out - ref) - u * np.abs(ref)).max())
                xw = float(x.abs().max()) * float(wt.abs().max())
                problem = Problem(cg * 9, cg, (h + 2 * padding[0]) * (w + 2 * padding[1]), xw)
                forms = {"coherent": "exact", **({"normal": "random"} if fill == "normal"
                                                 else {})}
                for form, mode in forms.items():
                    key = (form, fill, str(dtype).removeprefix("torch."))
                    scale = u * xw * winograd_spread(mode, problem)
                    worst[key] = max(worst.get(key, 0.0), excess / scale)
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m impls.error_fit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=sorted(WINOGRAD_COEFFICIENTS),
                        help="a backend whose error model is a Winograd one")
    parser.add_argument("--trials", type=int, default=300,
                        help="random problems (x 5 fills x 2 dtypes comparisons; "
                             "default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    worst = coefficients(args.backend, args.trials, args.seed)
    for (form, fill, dtype), value in sorted(worst.items()):
        print(f"{form:9} {fill:15} {dtype:8} {value:8.3f}")
    in_use = dict(zip(("coherent", "normal"), WINOGRAD_COEFFICIENTS[args.backend]))
    for form, constant in in_use.items():
        top = max(v for key, v in worst.items() if key[0] == form)
        print(f"worst {form}: {top:.3f}; in use: {constant:g} "
              f"({constant / top:.1f}x the worst measured here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
