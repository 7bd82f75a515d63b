"""``ConvSpec``: one 2D convolution problem, in oneDNN benchdnn's descriptor grammar.

Why benchdnn's grammar: it is the one the field already writes its shape files in
(``mb2ic64ih56oc64oh56kh3ph1n"name"``), so oneDNN's files load unchanged, and a spec prints
to a single token that a repro line, a file and a report can all carry.

Fields keep benchdnn's keys and **benchdnn's semantics**; the mapping to PyTorch is::

    input  (mb, ic, ih, iw)          F.conv2d(input, weight,
    weight (oc, ic // g, kh, kw)              stride=(sh, sw), padding=(ph, pw),
    output (mb, oc, oh, ow)                   dilation=(dh + 1, dw + 1), groups=g)

benchdnn's dilation is 0-based: ``dh0`` is a dense kernel (PyTorch ``dilation=1``), ``dh1``
skips one row (PyTorch ``dilation=2``). ``mb`` defaults to 2, as in benchdnn.

Parsing follows benchdnn's ``str2desc`` (tests/benchdnn/conv/conv_aux.cpp): keys in any order,
a ``_`` may follow any value, ``n`` starts the name (the rest of the text; one pair of
surrounding quotes is dropped). Missing w-values copy the h-values; a missing output size is
computed; a missing padding, when the output size is given, is benchdnn's "trivial" padding
``((oh-1)*sh - ih + (kh-1)*(dh+1) + 1) / 2`` (C division). A descriptor with only w-keys is
a 1-D conv: its h-values become ih=oh=kh=sh=1, ph=dh=0. We differ on purpose in four places:
3-D keys (id, od, kd, sd, pd, dd) are rejected, a repeated key is rejected (benchdnn keeps
the last), mb0 is rejected (every size must be positive) and a name may not contain
whitespace (it would split a shape-file line).

Asymmetric padding: benchdnn derives an end padding ``ph_r = (oh-1)*sh - ih + ekh - ph``
(ekh = (kh-1)*(dh+1)+1) that may differ from ``ph``. PyTorch only pads symmetrically, and
only ``ph - sh < ph_r <= ph`` gives the same output as padding ``ph`` on both sides (the
extra end rows are never read). Any other ``oh`` is **rejected** with a ValueError that
names ``oh``/``ow`` and the end padding it implies: the harness compares backends against
F.conv2d's semantics, and a spec it cannot hand to F.conv2d unchanged would be a lie.

Printing follows benchdnn's ``operator<<`` for desc_t: ``g`` only when not 1 (benchdnn
prints it when given, we keep no such flag), ``mb`` only when not 2, ``ic ih oc oh kh`` and
``ph`` always, strides only when not all 1, dilations only when not all 0, the w-values only
when some differ from the h-values (then all of them), and only the w-values for a 1-D conv.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

Pair = tuple[int, int]

#: benchdnn's 2-D keys, in its print order.
KEYS = ("g", "mb", "ic", "ih", "iw", "oc", "oh", "ow", "kh", "kw", "sh", "sw",
        "ph", "pw", "dh", "dw")
_3D_KEYS = ("id", "od", "kd", "sd", "pd", "dd")
_TOKEN = re.compile(r"(" + "|".join(KEYS + _3D_KEYS) + r")(-?\d*)_?")
#: (i, o, k, s, p, d) of the axis a 1-D descriptor leaves out.
_UNIT_AXIS = (1, 1, 1, 1, 0, 0)


def _c_half(a: int) -> int:
    """``a / 2`` in C (truncating toward zero), as benchdnn computes a missing padding."""
    return -(-a // 2) if a < 0 else a // 2


def _out(i: int, k: int, s: int, p: int, d: int) -> int:
    """Output size with symmetric padding p and 0-based dilation d (benchdnn's compute_out)."""
    return (i - ((k - 1) * (d + 1) + 1) + 2 * p) // s + 1


@lru_cache(maxsize=4096)
def _taps(out: int, kernel: int, stride: int, pad: int, dilation: int, size: int) -> int:
    """Pairs (output position, kernel tap) along one axis whose input index is inside the
    input (benchdnn's dilation convention: 0 is none). Axes are independent, so a conv's
    in-bounds taps are the product over its axes."""
    return sum(0 <= o * stride - pad + k * (dilation + 1) < size
               for o in range(out) for k in range(kernel))


@dataclass(frozen=True, kw_only=True)
class ConvSpec:
    """A 2D convolution problem with benchdnn's keys; see the module docstring."""

    g: int = 1
    mb: int = 2
    ic: int
    ih: int
    iw: int
    oc: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    ph: int = 0
    pw: int = 0
    dh: int = 0
    dw: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        for key in KEYS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an int, got {value!r}")
            floor = 0 if key in ("ph", "pw", "dh", "dw") else 1
            if value < floor:
                kind = "non-negative" if floor == 0 else "positive"
                raise ValueError(f"{key} must be {kind}, got {key}{value}")
        for key in ("ic", "oc"):
            if getattr(self, key) % self.g:
                raise ValueError(f"{key}{getattr(self, key)} is not divisible by g{self.g}")
        if not isinstance(self.name, str) or re.search(r"\s", self.name):
            raise ValueError(f"name {self.name!r} must be a string without whitespace")
        for a in "hw":
            self._check_axis(a)

    def _check_axis(self, a: str) -> None:
        i, o, k, s, p, d = (getattr(self, key + a) for key in "iokspd")
        ek = (k - 1) * (d + 1) + 1
        if ek > i + 2 * p:
            raise ValueError(f"k{a}{k} (dilated extent {ek}) is larger than the padded input "
                             f"i{a}{i} + 2*p{a}{p} = {i + 2 * p}")
        expected = _out(i, k, s, p, d)
        if o != expected:
            end = (o - 1) * s - i + ek - p
            raise ValueError(
                f"o{a}{o} with p{a}{p} needs end padding {end}; PyTorch pads both ends by "
                f"p{a} and gets o{a}{expected} (asymmetric padding is not representable)")

    @classmethod
    def parse(cls, text: str) -> ConvSpec:
        """Read one benchdnn conv descriptor; ValueError names the offending key."""
        if not isinstance(text, str):
            raise ValueError(f"a descriptor is a string, got {type(text).__name__}")
        s, pos, values = text.strip(), 0, {}
        while pos < len(s):
            if s[pos] == "n":
                name = s[pos + 1:]
                if len(name) >= 2 and name[0] == name[-1] == '"':
                    name = name[1:-1]
                values["name"] = name
                break
            m = _TOKEN.match(s, pos)
            if m is None:
                raise ValueError(f"unrecognized key at {s[pos:]!r} in descriptor {text!r}")
            key, number = m.groups()
            if not number or number == "-":
                raise ValueError(f"no value for {key!r} in descriptor {text!r}")
            if key in values and values[key] != int(number):  # a repeat that agrees is
                # harmless, and oneDNN's own shape files have one ("..._kh5_kh5ph7...")
                raise ValueError(f"{key!r} is given twice ({key}{values[key]}, {key}{number}) "
                                 f"in descriptor {text!r}")
            values[key] = int(number)
            pos = m.end()
        try:
            return cls.build(**values)
        except ValueError as exc:
            raise ValueError(f"{exc} (descriptor {text!r})") from None

    @classmethod
    def build(cls, **values) -> ConvSpec:
        """A spec from benchdnn keys, completing missing ones exactly as ``parse`` does."""
        for key in values:
            if key in _3D_KEYS:
                raise ValueError(f"{key!r} is a 3-D key; convbench runs 2-D convolutions")
            if key not in KEYS and key != "name":
                raise ValueError(f"unknown key {key!r}; keys: {' '.join(KEYS)} and name")
            if key != "name" and values[key] < 0:
                raise ValueError(f"{key} must not be negative, got {key}{values[key]}")
        for key in ("g", "ic", "oc", "sh", "sw"):
            # g, sh and sw have defaults; ic and oc must be given; none may be 0.
            if values.get(key, 0 if key in ("ic", "oc") else 1) == 0:
                raise ValueError(f"{key} was not specified or set to 0")
        h, w = _axis(values, "h"), _axis(values, "w")
        if h is None and w is None:
            raise ValueError("no spatial size: give at least ih and kh")
        h, w = h or _UNIT_AXIS, w or h
        spatial = {key + a: v for a, axis in (("h", h), ("w", w)) for key, v in zip("iokspd", axis)}
        fixed = {key: values[key] for key in ("g", "mb", "ic", "oc", "name") if key in values}
        return cls(**fixed, **spatial)

    @classmethod
    def from_torch(cls, input_shape: Sequence[int], weight_shape: Sequence[int],
                   stride: int | Pair = 1, padding: int | Pair | str = 0,
                   dilation: int | Pair = 1, groups: int = 1, name: str = "") -> ConvSpec:
        """The spec of ``F.conv2d(input, weight, stride=, padding=, dilation=, groups=)``."""
        if len(input_shape) != 4 or len(weight_shape) != 4:
            raise ValueError(f"input_shape and weight_shape must be 4-D, got "
                             f"{tuple(input_shape)} and {tuple(weight_shape)}")
        mb, ic, ih, iw = (int(v) for v in input_shape)
        oc, icg, kh, kw = (int(v) for v in weight_shape)
        if icg * groups != ic:
            raise ValueError(f"groups={groups} with weight_shape {tuple(weight_shape)} expects "
                             f"{icg * groups} input channels, input_shape has {ic}")
        (sh, sw), (dh, dw) = _pair("stride", stride), _pair("dilation", dilation)
        if padding == "valid":
            padding = 0
        elif padding == "same":
            totals = [d * (k - 1) for d, k in ((dh, kh), (dw, kw))]
            if (sh, sw) != (1, 1) or totals[0] % 2 or totals[1] % 2:
                raise ValueError("padding='same' is representable only with stride 1 and an "
                                 "odd dilated kernel (PyTorch pads the extra row at the end)")
            padding = (totals[0] // 2, totals[1] // 2)
        ph, pw = _pair("padding", padding)
        if min(dh, dw) < 1:
            raise ValueError(f"dilation must be positive, got {(dh, dw)}")
        oh, ow = _out(ih, kh, sh, ph, dh - 1), _out(iw, kw, sw, pw, dw - 1)
        return cls(g=groups, mb=mb, ic=ic, ih=ih, iw=iw, oc=oc, oh=oh, ow=ow, kh=kh, kw=kw,
                   sh=sh, sw=sw, ph=ph, pw=pw, dh=dh - 1, dw=dw - 1, name=name)

    def with_batch(self, mb: int) -> ConvSpec:
        return dataclasses.replace(self, mb=mb)

    def descriptor(self) -> str:
        """The canonical short form; ``ConvSpec.parse(spec.descriptor()) == spec``."""
        h = tuple(getattr(self, key + "h") for key in "iokspd")
        w = tuple(getattr(self, key + "w") for key in "iokspd")
        axes = "h" if h == w else "w" if h == _UNIT_AXIS else "hw"

        def spatial(key: str) -> str:
            return "".join(f"{key}{a}{getattr(self, key + a)}" for a in axes)

        out = [f"g{self.g}" if self.g != 1 else "", f"mb{self.mb}" if self.mb != 2 else "",
               f"ic{self.ic}", spatial("i"), f"oc{self.oc}", spatial("o"), spatial("k"),
               spatial("s") if (self.sh, self.sw) != (1, 1) else "", spatial("p"),
               spatial("d") if (self.dh, self.dw) != (0, 0) else "",
               f'n"{self.name}"' if self.name else ""]
        return "".join(out)

    __str__ = descriptor

    @property
    def stride(self) -> Pair:
        return self.sh, self.sw

    @property
    def padding(self) -> Pair:
        return self.ph, self.pw

    @property
    def dilation(self) -> Pair:
        """PyTorch's 1-based dilation (benchdnn's dh + 1)."""
        return self.dh + 1, self.dw + 1

    @property
    def groups(self) -> int:
        return self.g

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.mb, self.ic, self.ih, self.iw

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return self.oc, self.ic // self.g, self.kh, self.kw

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return self.mb, self.oc, self.oh, self.ow

    @property
    def macs(self) -> int:
        """Multiply-adds of one conv, counted as benchdnn counts them: only kernel taps that
        land inside the input (its prb_t::count_ops). A tap on padding multiplies a zero, so
        counting it would inflate GFLOP/s: 2x for a 17x17 "same" kernel on 14x14, past the
        machine's peak. Without padding it is the usual N*K*P*Q*C/g*R*S."""
        return (self.mb * self.oc * (self.ic // self.g) * _taps(self.oh, self.kh, self.sh,
                                                                self.ph, self.dh, self.ih)
                * _taps(self.ow, self.kw, self.sw, self.pw, self.dw, self.iw))

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def bytes(self, dtype_size: int = 4, bias: bool = False) -> int:
        """Real tensor bytes: input + weight + output (+ bias), not im2col-inflated."""
        elements = (self.mb * self.ic * self.ih * self.iw + self.oc * (self.ic // self.g)
                    * self.kh * self.kw + self.mb * self.oc * self.oh * self.ow)
        return (elements + (self.oc if bias else 0)) * dtype_size

    def conv_kwargs(self) -> dict:
        """F.conv2d's keyword arguments for this problem."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}


def _axis(values: dict, a: str) -> tuple[int, ...] | None:
    """(i, o, k, s, p, d) of one axis completed as benchdnn does, or None when absent."""
    i, o, k, d = (values.get(key + a, 0) for key in "iokd")
    s, p = values.get("s" + a, 1), values.get("p" + a, -1)
    if not (i or k or o or d) and s == 1 and p < 1:
        return None
    for key, v in (("i", i), ("k", k)):
        if v <= 0:
            raise ValueError(f"{key}{a} was not specified or set to 0")
    if not o:
        p = max(p, 0)
        o = _out(i, k, s, p, d)
        if o <= 0:
            raise ValueError(f"o{a} was not specified and the other values give o{a}{o}")
    elif p < 0:
        p = _c_half((o - 1) * s - i + (k - 1) * (d + 1) + 1)
        if p < 0:
            raise ValueError(f"p{a} was not specified and o{a}{o} implies padding {p}")
    return i, o, k, s, p, d


def _pair(name: str, value) -> Pair:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    items = tuple(value)
    if len(items) == 1:
        items *= 2
    if len(items) != 2 or not all(isinstance(v, int) for v in items):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return items
