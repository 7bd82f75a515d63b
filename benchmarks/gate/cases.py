"""The gate set: a few fast shapes per backend, and each benchmark's threshold.

Why a fixed set of its own (not a sweep's): the gate must finish in a minute or two of CI
and decide from many short, interleaved samples, so every call here costs 0.1-20 ms on 2
cores, and each backend is held to shapes in its own regime (FFT on large kernels, Winograd
on 3x3). The set is data: changing it changes what a stored baseline can be compared with
(cases missing on one side are reported, not compared).

Thresholds are the noise band: a change is a regression only when the whole confidence
interval of the slowdown lies above 1 + threshold. A backend dominated by Python overhead
(naive) gets a wider band; everything else the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from impls.spec import ConvSpec

#: The noise band, as a fraction: 0.05 means "slower by more than 5%".
DEFAULT_THRESHOLD = 0.05
THRESHOLDS = {"naive": 0.10}

#: Problems, named for the table (benchdnn descriptors; dilation 0-based as in benchdnn).
SHAPES = {
    "3x3 256@14": "mb1ic256ih14oc256oh14kh3ph1",  # ResNet-50 res4 3x3
    "1x1 64@56": "mb1ic64ih56oc64oh56kh1ph0",  # ResNet-50 res2 1x1: a GEMM
    "3x3 64@28": "mb1ic64ih28oc64oh28kh3ph1",
    "3x3 64@56": "mb1ic64ih56oc64oh56kh3ph1",  # ResNet-50 res2 3x3: F(4x1)'s ground
    "dw3 128@28": "g128mb1ic128ih28oc128oh28kh3ph1",  # MobileNet depthwise
    "13x13 32@28": "mb1ic32ih28oc32oh28kh13ph6",  # large kernels: FFT's ground
    "17x17 32@32": "mb1ic32ih32oc32oh32kh17ph8",
    "3x3 4@10": "mb1ic4ih10oc4oh10kh3ph1",  # naive's loops in Python: tiny only
    "dw3 8@12": "g8mb1ic8ih12oc8oh12kh3ph1",
}
#: Shapes per backend; the first is the quick mode's. A backend not named here (a plug-in
#: given with --backend) gets DEFAULT_SHAPES.
BACKEND_SHAPES = {
    "torch": ("3x3 256@14", "1x1 64@56"),
    "unfold": ("3x3 256@14", "1x1 64@56", "dw3 128@28"),
    "fft": ("13x13 32@28", "17x17 32@32"),
    "winograd-f2": ("3x3 256@14", "3x3 64@28"),
    "winograd-f4": ("3x3 256@14", "3x3 64@28"),
    "winograd-f4x1": ("3x3 64@56", "3x3 256@14"),
    "naive": ("3x3 4@10", "dw3 8@12"),
    "auto": ("3x3 256@14", "17x17 32@32"),
    "triton": ("3x3 256@14", "1x1 64@56"),
}
DEFAULT_SHAPES = ("3x3 256@14", "1x1 64@56")
#: Bands against a stored baseline, by backend or case key, where the scaled default is
#: narrower than what unchanged code does here. FFT's time follows the host's memory
#: contention and torch's (compute-bound oneDNN) does not, so the ratio the baseline
#: compares moves with the machine's state: on one day, unchanged code gave fft/torch on
#: 13x13 32@28 from 0.86 (the baseline) to 1.31 across processes, and CI failed the
#: self-test on fft +20% with torch itself +10%. Interleaved runs (--base) keep the default.
STORED_THRESHOLDS = {"fft": 0.25, f"auto|{SHAPES['17x17 32@32']}": 0.25}


@dataclass(frozen=True)
class GateCase:
    """One benchmark of the gate: a backend on a named problem, with its threshold."""

    backend: str
    shape: str
    descriptor: str
    threshold: float

    @property
    def key(self) -> str:
        return f"{self.backend}|{self.descriptor}"

    def request(self) -> dict:
        """What a worker needs to build the call: F.conv2d's arguments, as JSON."""
        s = ConvSpec.parse(self.descriptor)
        return {"backend": self.backend, "input_shape": list(s.input_shape),
                "weight_shape": list(s.weight_shape), "stride": list(s.stride),
                "padding": list(s.padding), "dilation": list(s.dilation), "groups": s.groups}


def gate_cases(backends=None, quick: bool = False, threshold: float | None = None,
               overrides: dict[str, float] | None = None, scale: float = 1.0,
               stored: bool = False) -> list[GateCase]:
    """The cases of ``backends`` (default: every backend of BACKEND_SHAPES), in order.

    ``threshold`` replaces the default band (a backend of THRESHOLDS keeps its own);
    ``overrides`` maps a backend name or a case key ("backend|descriptor") to its own band
    (the most specific wins). ``scale`` widens the built-in bands, not those given on the
    command line: a stored baseline was measured by another process at another time, which
    moved ratios by up to 9% (naive) between a global Python and a nox virtualenv here.
    ``stored``: the comparison is with a stored baseline, where STORED_THRESHOLDS apply
    unless a band is given on the command line."""
    cases = []
    for backend in backends or BACKEND_SHAPES:
        shapes = BACKEND_SHAPES.get(backend, DEFAULT_SHAPES)
        for shape in shapes[:1] if quick else shapes:
            descriptor = SHAPES[shape]
            key = f"{backend}|{descriptor}"
            default = threshold if threshold is not None else DEFAULT_THRESHOLD * scale
            own = THRESHOLDS[backend] * scale if backend in THRESHOLDS else default
            if stored and threshold is None:
                own = STORED_THRESHOLDS.get(key, STORED_THRESHOLDS.get(backend, own))
            band = (overrides or {}).get(key, (overrides or {}).get(backend, own))
            cases.append(GateCase(backend, shape, descriptor, band))
    return cases
