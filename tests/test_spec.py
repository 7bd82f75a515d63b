"""The benchdnn descriptor grammar: parsing with benchdnn's defaults, printing, PyTorch view.

The grammar is a contract with oneDNN's shape files and with every repro line, so these tests
pin benchdnn's rules on real lines, the canonical print, and agreement with F.conv2d.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from impls.spec import ConvSpec


@st.composite
def specs(draw, max_size: int = 40) -> ConvSpec:
    """Any valid spec: groups, strides, dilation, asymmetric h/w, names with benchdnn chars."""
    g = draw(st.integers(1, 4))
    values = {"g": g, "mb": draw(st.integers(1, 4)), "ic": g * draw(st.integers(1, 4)),
              "oc": g * draw(st.integers(1, 4))}
    square = draw(st.booleans())
    for a in ("h", "w"):
        if square and a == "w":
            values.update({key + "w": values[key + "h"] for key in "ikspd"})
            break
        k, d = draw(st.integers(1, 7)), draw(st.integers(0, 2))
        p, s = draw(st.integers(0, 4)), draw(st.integers(1, 4))
        extent = (k - 1) * (d + 1) + 1
        smallest = max(1, extent - 2 * p)
        values.update({"i" + a: draw(st.integers(smallest, max(smallest, max_size))),
                       "k" + a: k, "s" + a: s, "p" + a: p, "d" + a: d})
    values["name"] = draw(st.from_regex(r"[A-Za-z0-9_:.*\-\"]{0,12}", fullmatch=True))
    return ConvSpec.build(**values)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(specs())
def test_print_parse_round_trip(spec):
    text = str(spec)
    assert ConvSpec.parse(text) == spec
    assert str(ConvSpec.parse(text)) == text


@settings(derandomize=True, max_examples=40, deadline=None)
@given(specs(max_size=12))
def test_from_torch_agrees_with_conv2d(spec):
    x, w = torch.zeros(spec.input_shape), torch.zeros(spec.weight_shape)
    out = F.conv2d(x, w, **spec.conv_kwargs())
    assert tuple(out.shape) == spec.output_shape
    back = ConvSpec.from_torch(x.shape, w.shape, spec.stride, spec.padding, spec.dilation,
                               spec.groups, name=spec.name)
    assert back == spec


def test_parse_applies_benchdnn_defaults():
    s = ConvSpec.parse('mb2ic64ih56oc64oh56kh3ph1n"name"')
    assert (s.g, s.mb, s.iw, s.ow, s.kw, s.sh, s.sw, s.pw, s.dh, s.dw) == (
        1, 2, 56, 56, 3, 1, 1, 1, 0, 0)
    assert s.name == "name" and str(s) == 'ic64ih56oc64oh56kh3ph1n"name"'
    # No mb: benchdnn's default batch is 2. No oh: computed, with ph 0.
    s = ConvSpec.parse("ic3ih10oc4kh3")
    assert (s.mb, s.oh, s.ow, s.ph) == (2, 8, 8, 0)


def test_parse_real_benchdnn_lines():
    # oneDNN shapes_resnet_50's long form, and the short form it prints to.
    long = 'g1mb1ic3ih224iw224oc64oh112ow112kh7kw7sh2sw2ph3pw3n"resnet_50:conv1"'
    s = ConvSpec.parse(long)
    assert s.input_shape == (1, 3, 224, 224) and s.output_shape == (1, 64, 112, 112)
    assert s.stride == (2, 2) and s.padding == (3, 3)
    assert str(s) == 'mb1ic3ih224oc64oh112kh7sh2ph3n"resnet_50:conv1"'
    s = ConvSpec.parse('g32mb1ic32ih112oc32oh112kh3ph1n"mobilenet:conv2_1/dw"')
    assert s.groups == 32 and s.weight_shape == (32, 1, 3, 3)
    assert str(s) == 'g32mb1ic32ih112oc32oh112kh3ph1n"mobilenet:conv2_1/dw"'


def test_a_repeated_key_that_agrees_is_accepted():
    # oneDNN's shapes_regression_padding has this line; benchdnn reads it.
    s = ConvSpec.parse("mb1ic16oc16_ih10kh5_kh5ph7sh1")
    assert s.weight_shape == (16, 16, 5, 5) and s.padding == (7, 7)


def test_parse_separators_order_and_unquoted_name():
    a = ConvSpec.parse("mb1_ic16oc32_ih28oh28kh3ph1_nplain")
    b = ConvSpec.parse('oc32kh3ph1ih28oh28ic16mb1n"plain"')
    assert a == b and a.name == "plain"


def test_missing_padding_is_derived_from_output():
    # benchdnn's trivial padding ((oh-1)*sh - ih + (kh-1)*(dh+1) + 1) / 2.
    assert ConvSpec.parse("ic8ih56oc8oh56kh3").ph == 1
    assert ConvSpec.parse("ic8ih56oc8oh28kh1sh2").ph == 0
    assert ConvSpec.parse("ic8ih28oc8oh28kh3dh1").padding == (2, 2)


def test_one_dimensional_descriptor():
    s = ConvSpec.parse("mb1ic512iw3000oc512ow1500kw3sw2pw1")
    assert (s.ih, s.oh, s.kh, s.sh, s.ph, s.dh) == (1, 1, 1, 1, 0, 0)
    assert s.output_shape == (1, 512, 1, 1500)
    assert str(s) == "mb1ic512iw3000oc512ow1500kw3sw2pw1"


def test_dilation_is_zero_based():
    s = ConvSpec.parse("ic8ih23oc8oh23kh3ph2dh1")
    assert s.dilation == (2, 2)
    assert s.conv_kwargs() == {"stride": (1, 1), "padding": (2, 2), "dilation": (2, 2),
                               "groups": 1}


def test_canonical_print_rules():
    s = ConvSpec.build(ic=3, ih=15, iw=19, oc=8, kh=3, kw=3, ph=1, pw=1)
    # One w-value differs: all of them are printed; padding is always printed.
    assert str(s) == "ic3ih15iw19oc8oh15ow19kh3kw3ph1pw1"
    assert str(dataclasses.replace(s, iw=15, ow=15)) == "ic3ih15oc8oh15kh3ph1"
    assert str(ConvSpec.build(g=2, mb=2, ic=4, ih=9, oc=4, kh=3, sh=2, dh=1)) == (
        "g2ic4ih9oc4oh3kh3sh2ph0dh1")
    assert s.descriptor() == str(s)


@pytest.mark.parametrize("text, fragment", [
    ("ic3ih5oc4kh3xx2", "'xx2'"),
    ("ic3ihoc4kh3", "no value for 'ih'"),
    ("ic3ih5oc4kh3ic4", "'ic' is given twice"),
    ("ih5oc4kh3", "ic was not specified"),
    ("ic3ih5kh3", "oc was not specified"),
    ("ic3ih5oc4", "kh was not specified"),
    ("ic3oc4", "no spatial size"),
    ("ic3ih5oc4kh3kd1", "'kd' is a 3-D key"),
    ("g2ic3ih5oc4kh3", "ic3 is not divisible by g2"),
    ("g0ic3ih5oc4kh3", "g was not specified or set to 0"),
    ("ic3ih5oc4kh3sh0", "sh was not specified or set to 0"),
    ("ic3ih5oc4kh3ph-1", "ph must not be negative"),
    ("mb0ic3ih5oc4kh3", "mb must be positive"),
    ("ic3ih5oc4kh9", "oh was not specified"),
    ("ic3ih5oc4oh9kh3ph1", "oh9 with ph1 needs end padding 5"),
    ("ic3ih10oc4oh3kh3", "ph was not specified and oh3 implies padding -2"),
    ("ic3ih5iw6oc4kh3", "kw was not specified"),
    ("ic3ih5oc4kh3sw2", "iw was not specified"),
    ('ic3ih5oc4kh3n"a b"', "without whitespace"),
])
def test_rejects_malformed(text, fragment):
    with pytest.raises(ValueError, match="descriptor") as info:
        ConvSpec.parse(text)
    assert fragment in str(info.value)


def test_rejects_asymmetric_end_padding():
    # benchdnn pads 2 at the top, 3 at the bottom here; PyTorch cannot, so we refuse.
    with pytest.raises(ValueError, match="oh112 with ph2 needs end padding 3"):
        ConvSpec.parse("mb1ic3ih224oc64oh112kh7sh2")
    # With ph3 benchdnn's end padding is 2, never read by PyTorch's symmetric 3: accepted.
    assert ConvSpec.parse("mb1ic3ih224oc64oh112kh7sh2ph3").output_shape == (1, 64, 112, 112)


def test_direct_construction_validates():
    good = dict(ic=4, ih=5, iw=5, oc=4, oh=3, ow=3, kh=3, kw=3)
    assert ConvSpec(**good).output_shape == (2, 4, 3, 3)
    for bad, fragment in [({"oh": 4}, "oh4"), ({"kh": 9, "oh": -3}, "oh must be positive"),
                          ({"kw": 9, "ow": 1}, "kw9 (dilated extent 9) is larger"),
                          ({"g": 3}, "not divisible by g3"), ({"mb": True}, "must be an int")]:
        with pytest.raises(ValueError) as info:
            ConvSpec(**{**good, **bad})
        assert fragment in str(info.value)


def test_costs_and_shapes():
    s = ConvSpec.parse("g2mb3ic8ih10iw12oc6oh5ow6kh3kw2sh2sw2ph1pw0")
    assert s.input_shape == (3, 8, 10, 12) and s.weight_shape == (6, 4, 3, 2)
    assert s.output_shape == (3, 6, 5, 6)
    # ph1: of the 5 output rows' 3 taps each, the first row's top tap is on padding.
    assert s.macs == 3 * 6 * (5 * 3 - 1) * 6 * 4 * 2 and s.flops == 2 * s.macs
    tensors = 3 * 8 * 10 * 12 + 6 * 4 * 3 * 2 + 3 * 6 * 5 * 6
    assert s.bytes() == 4 * tensors and s.bytes(2, bias=True) == 2 * (tensors + 6)
    assert s.with_batch(1).input_shape == (1, 8, 10, 12) and s.with_batch(1).name == s.name


def test_from_torch_arguments():
    s = ConvSpec.from_torch((1, 3, 15, 19), (8, 3, 3, 5), stride=1, padding="same",
                            dilation=(2, 1), name="x")
    assert s.padding == (2, 2) and s.output_shape == (1, 8, 15, 19) and s.dh == 1
    assert ConvSpec.from_torch((1, 3, 8, 8), (4, 3, 3, 3), padding="valid").oh == 6
    with pytest.raises(ValueError, match="groups=2"):
        ConvSpec.from_torch((1, 3, 8, 8), (4, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="same"):
        ConvSpec.from_torch((1, 3, 8, 8), (4, 3, 2, 2), padding="same")
    with pytest.raises(ValueError, match="4-D"):
        ConvSpec.from_torch((3, 8, 8), (4, 3, 3, 3))


@pytest.mark.parametrize("descriptor", [
    "mb1ic32ih14oc32oh14kh17ph8", "mb2ic4ih9iw7oc4oh5ow3kh3kw5sh2sw2ph2pw1dh1dw0",
    "g4mb1ic8ih13oc8oh13kh31ph15", "mb1ic3ih224oc64oh112kh7sh2ph3", "mb1ic8ih6oc8oh6kh3ph3dh2",
    "mb2ic8ih9iw11oc4oh7ow9kh3kw3"])
def test_macs_count_only_taps_inside_the_input_as_benchdnn(descriptor):
    """Against a brute-force loop over every output position and tap (benchdnn's
    prb_t::count_ops), written independently of the per-axis product; without padding,
    the usual N*K*P*Q*C/g*R*S."""
    s = ConvSpec.parse(descriptor)
    inside = sum(0 <= oh * s.sh - s.ph + kh * (s.dh + 1) < s.ih
                 and 0 <= ow * s.sw - s.pw + kw * (s.dw + 1) < s.iw
                 for oh in range(s.oh) for ow in range(s.ow)
                 for kh in range(s.kh) for kw in range(s.kw))
    assert s.macs == s.mb * s.oc * (s.ic // s.g) * inside
    if s.ph == s.pw == 0:
        assert s.macs == s.mb * s.oc * s.oh * s.ow * (s.ic // s.g) * s.kh * s.kw
