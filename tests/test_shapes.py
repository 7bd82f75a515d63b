"""The shape catalog: canonical descriptors, the ResNet-50 facts, file reading, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks.__main__ import main
from benchmarks.shapes import SHAPES_DIR, parse_shapes, shape_set, shape_sets
from impls.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[1]
SETS = ("deepbench", "depthwise", "edge", "grid", "grid-small", "large-kernel", "resnet50",
        "resnet50-3x3")

#: The active lines of oneDNN's tests/benchdnn/inputs/conv/shapes_resnet_50, verbatim.
ONEDNN_RESNET_50 = r'''
g1mb1ic3ih224iw224oc64oh112ow112kh7kw7sh2sw2ph3pw3n"resnet_50:conv1"
mb1ic64ih56oc256oh56kh1ph0n"resnet_50:res2a_branch1*4"
mb1ic64ih56oc64oh56kh1ph0n"resnet_50:res2a_branch2a"
mb1ic64ih56oc64oh56kh3ph1n"resnet_50:res2a_branch2b*3"
# mb1ic64ih56oc256oh56kh1ph0n"resnet_50:res2a_branch2c"        # res2a_branch1
mb1ic256ih56oc64oh56kh1ph0n"resnet_50:res2b_branch2a*2"
g1mb1ic256ih56iw56oc512oh28ow28kh1kw1sh2sw2ph0pw0n"resnet_50:res3a_branch1"
g1mb1ic256ih56iw56oc128oh28ow28kh1kw1sh2sw2ph0pw0n"resnet_50:res3a_branch2a"
mb1ic128ih28oc128oh28kh3ph1n"resnet_50:res3a_branch2b*4"
mb1ic128ih28oc512oh28kh1ph0n"resnet_50:res3a_branch2c*4"
mb1ic512ih28oc128oh28kh1ph0n"resnet_50:res3b_branch2a*3"
g1mb1ic512ih28iw28oc1024oh14ow14kh1kw1sh2sw2ph0pw0n"resnet_50:res4a_branch1"
g1mb1ic512ih28iw28oc256oh14ow14kh1kw1sh2sw2ph0pw0n"resnet_50:res4a_branch2a"
mb1ic256ih14oc256oh14kh3ph1n"resnet_50:res4a_branch2b*6"
mb1ic256ih14oc1024oh14kh1ph0n"resnet_50:res4a_branch2c*6"
mb1ic1024ih14oc256oh14kh1ph0n"resnet_50:res4b_branch2a*5"
g1mb1ic1024ih14iw14oc2048oh7ow7kh1kw1sh2sw2ph0pw0n"resnet_50:res5a_branch1"
g1mb1ic1024ih14iw14oc512oh7ow7kh1kw1sh2sw2ph0pw0n"resnet_50:res5a_branch2a"
mb1ic512ih7oc512oh7kh3ph1n"resnet_50:res5a_branch2b*3"
mb1ic512ih7oc2048oh7kh1ph0n"resnet_50:res5a_branch2c*3"
mb1ic2048ih7oc512oh7kh1ph0n"resnet_50:res5b_branch2a*2"
'''


def test_set_names():
    assert shape_sets() == sorted(SETS)


@pytest.mark.parametrize("name", sorted(set(SETS) - {"grid", "grid-small"}))
def test_every_file_descriptor_is_canonical(name):
    tokens = [line.split()[0] for line in (SHAPES_DIR / name).read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert tokens
    for token in tokens:
        assert str(ConvSpec.parse(token)) == token


@pytest.mark.parametrize("name", SETS)
def test_entries_match_conv2d(name):
    for entry in shape_set(name):
        spec = entry.spec
        assert ConvSpec.parse(entry.descriptor) == spec and entry.flops == spec.flops
        assert entry.count >= 1
        # Shape inference only: meta tensors cost nothing even for the 31x31 layers.
        x = torch.empty(spec.input_shape, device="meta")
        w = torch.empty(spec.weight_shape, device="meta")
        assert tuple(F.conv2d(x, w, **spec.conv_kwargs()).shape) == spec.output_shape


def test_resnet50_facts():
    entries = shape_set("resnet50")
    assert len(entries) == 20 and sum(e.count for e in entries) == 53
    assert {e.spec.mb for e in entries} == {1}
    weighted = sum(e.flops * e.count for e in entries)
    # 7.71 GFLOP counting taps on padding (the figure usually quoted); benchdnn's count,
    # taps inside the input only, is 7.39.
    assert weighted == pytest.approx(7.39e9, rel=0.005)
    assert entries[1].spec.name == "resnet_50:res2a_branch1" and entries[1].count == 4
    at_32 = shape_set("resnet50", batch=32)
    assert sum(e.flops * e.count for e in at_32) == 32 * weighted


def test_onednn_resnet50_file_reads_unchanged():
    ours = [(e.spec, e.count) for e in shape_set("resnet50")]
    theirs = [(e.spec, e.count) for e in parse_shapes(ONEDNN_RESNET_50, "shapes_resnet_50")]
    assert theirs == ours


def test_catalog_contents():
    deepbench = [e.spec for e in shape_set("deepbench")]
    assert 10 <= len(deepbench) <= 15
    speech = [s for s in deepbench if (s.ih, s.iw, s.kh, s.kw) == (161, 700, 5, 20)]
    assert speech and speech[0].output_shape[2:] == (79, 341)
    assert all(s.g == s.ic == s.oc for s in (e.spec for e in shape_set("depthwise")))
    large = [str(e.spec).split("n")[0] for e in shape_set("large-kernel")]
    assert "mb1ic32ih128oc32oh128kh31ph15" in large
    edge = [e.spec for e in shape_set("edge")]
    assert {(s.kh, s.kw) for s in edge} >= {(2, 3), (6, 5)}
    assert any(s.g == s.ic == s.oc > 1 for s in edge) and any(1 < s.g < s.ic for s in edge)
    assert any(s.dh for s in edge) and any(s.sh > s.kh for s in edge)
    assert any(s.oh == s.ow == 1 and s.kh == s.ih + 2 * s.ph for s in edge)
    assert {(s.ih, s.iw) for s in edge} >= {(1, 1), (15, 19), (23, 21)}
    grid = shape_set("grid")
    assert 24 <= len(grid) <= 60 and len({e.descriptor for e in grid}) == len(grid)


def test_shape_file_reading(tmp_path):
    text = ('# comment\nic3ih8oc4kh3ph1n"a*2"  # trailing comment\n'
            'ic3ih8oc4kh3ph1\\\n  n"b"\n\nic4ih5oc4kh1ph0 ic4ih5oc4kh3ph0\n')
    path = tmp_path / "shapes_mine"
    path.write_text(text)
    entries = shape_set(str(path), batch=3)
    assert [e.count for e in entries] == [2, 1, 1, 1]
    assert [e.spec.name for e in entries] == ["a", "b", "", ""]
    assert {e.spec.mb for e in entries} == {3}
    with pytest.raises(ValueError, match=r"bad:2: .*'xx1'"):
        parse_shapes("ic3ih8oc4kh3\nic3ih8oc4kh3xx1\n", "bad")
    with pytest.raises(ValueError, match="driver option '--dir=FWD_B'"):
        parse_shapes("--dir=FWD_B ic3ih8oc4kh3\n")


def test_unknown_set_and_bad_batch():
    with pytest.raises(ValueError, match="known sets: deepbench, depthwise, edge, grid"):
        shape_set("resnet-50")
    with pytest.raises(ValueError, match="batch"):
        shape_set("edge", batch=0)


def _run(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_json():
    done = _run("shapes", "resnet50", "--batch", "1", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 20 and sum(r["count"] for r in rows) == 53
    assert sum(r["flops"] * r["count"] for r in rows) == pytest.approx(7.39e9, rel=0.005)
    first = rows[0]
    assert first["descriptor"] == 'mb1ic3ih224oc64oh112kh7sh2ph3n"resnet_50:conv1"'
    assert first["input_shape"] == [1, 3, 224, 224] and first["weight_shape"] == [64, 3, 7, 7]
    assert first["output_shape"] == [1, 64, 112, 112] and first["stride"] == [2, 2]
    assert first["padding"] == [3, 3] and first["dilation"] == [1, 1] and first["groups"] == 1
    assert first["macs"] * 2 == first["flops"] and first["bytes"] > 0


def test_a_command_whose_module_cannot_import_says_what_it_needs(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_rich(name, *args, **kwargs):
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="rich")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.startswith(("benchmarks.gate", "rich"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_rich)
    from impls import display

    monkeypatch.setattr(display, "Table", None)  # as impls.display sets it without rich
    monkeypatch.setattr(display, "Console", None)
    monkeypatch.setattr(display, "Text", None)
    assert main(["gate", "--quick"]) == 2
    assert "needs the package 'rich'" in capsys.readouterr().err
    assert main(["shapes", "edge"]) == 0  # the other commands still run, in plain columns
    assert "\tcount\tinput\t" in capsys.readouterr().out


def test_cli_table_and_bad_usage(capsys):
    # In-process: each subprocess pays a torch import, and argparse behaves the same here.
    assert main(["shapes", "edge"]) == 0
    assert "edge:k6x5" in capsys.readouterr().out
    assert main(["shapes", "nope"]) == 2
    assert "known sets" in capsys.readouterr().err
    for args in (["shapes", "edge", "--batch", "0"], ["shapes"], [], ["nope"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2, args
