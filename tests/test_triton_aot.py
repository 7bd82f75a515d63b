"""Every GPU autotune config of the Triton conv kernel compiles for sm_80 and sm_90 and fits.

Why: CI has no GPU, so a tile config that cannot compile, or needs more shared memory than
an A100/H100 block may have, would otherwise first fail in a user's GPU run (the autotuner
tries every config). ``triton.compile`` with an explicit ``GPUTarget`` runs the whole
pipeline, TTIR -> PTX -> cubin with the ptxas shipped in the triton wheel, with no GPU and
no driver. Checked per config, target and dtype: it compiles; ``metadata.shared`` fits the
target; tensor cores are used exactly where intended (fp16, bf16, TF32 yes; strict fp32 no).

Why a subprocess: with TRITON_INTERPRET=1 (conftest sets it on CPU-only machines)
``triton.jit`` yields interpreter functions, and the interpreter patches triton.language in
place, so this process cannot compile for a GPU. A fresh Python with TRITON_INTERPRET unset
compiles all jobs, one process per core, and reports JSON; this module is also that worker.
It must not assert anything about speed: register counts and spills are only reported.

The signature mirrors what the JIT would specialise for two real layers (ints equal to 1
become constexprs, multiples of 16 get divisibility hints, as triton.jit does): ResNet-50's
256->256 @14 3x3 (channel-block loop) and its 3->64 @224 7x7/2 stem (flattened loop).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Shared memory a block may use: sm_80 (A100) 163 KB, sm_90 (H100) 227 KB.
SHARED_LIMIT = {80: 166_912, 90: 232_448}
#: (pointer type, tl.dot input_precision); one compile each per target and config.
DTYPES = (("fp32", "ieee"), ("fp32", "tf32"), ("fp16", "ieee"), ("bf16", "ieee"))


def _layer(n, c, h, k, r, stride, pad):
    """Kernel int arguments for a square conv layer as the launcher passes them: input,
    weight and output all channels_last (so sxc, swc, syk are 1 and specialise)."""
    p = (h + 2 * pad - r) // stride + 1
    return dict(M=n * p * p, H=h, W=h, P=p, Q=p, CG=c, KG=k,
                sxn=h * h * c, sxc=1, sxh=h * c, sxw=c,
                swk=r * r * c, swc=1, swr=r * c, sws=c,
                syn=k * p * p, syk=1, syp=p * k, syq=k,
                stride_h=stride, stride_w=stride, pad_h=pad, pad_w=pad, dil_h=1, dil_w=1,
                R=r, S=r, FLAT_K=c < 32)


LAYERS = {"3x3": _layer(32, 256, 14, 256, 3, 1, 1), "stem": _layer(32, 3, 224, 64, 7, 2, 3)}


def jobs() -> list[dict]:
    from_kernels = _gpu_configs()
    out = []
    for arch in SHARED_LIMIT:
        for dtype, precision in DTYPES:
            for config in from_kernels:
                out.append(dict(arch=arch, dtype=dtype, precision=precision, layer="3x3",
                                config=list(config)))
        # The flattened loop only differs in address math: one dtype is enough to catch a
        # config that does not compile there.
        for config in from_kernels:
            out.append(dict(arch=arch, dtype="bf16", precision="ieee", layer="stem",
                            config=list(config)))
    return out


def _gpu_configs() -> tuple:
    """The full GPU list, even when this process's kernel is an interpreter function."""
    if importlib.util.find_spec("triton") is None:
        return ()
    from impls.builtin._triton_kernels import GPU_CONFIGS

    return GPU_CONFIGS


def _job_id(job: dict) -> str:
    bm, bn, bk, warps, stages = job["config"]
    dtype = job["dtype"] + ("-tf32" if job["precision"] == "tf32" else "")
    return f"sm{job['arch']}-{job['layer']}-{dtype}-{bm}x{bn}x{bk}-w{warps}-s{stages}"


# ---- worker side (a fresh interpreter, TRITON_INTERPRET unset) ---------------------------

def _compile(job: dict) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget

    from impls.builtin import _triton_kernels as kernels

    kernel = kernels.conv2d_fwd_kernel
    bm, bn, bk, warps, stages = job["config"]
    ints = dict(LAYERS[job["layer"]])
    constexprs = dict(R=ints.pop("R"), S=ints.pop("S"), FLAT_K=ints.pop("FLAT_K"),
                      HAS_BIAS=True, INPUT_PRECISION=job["precision"], BLOCK_M=bm,
                      BLOCK_N=bn, BLOCK_K=bk, GROUP_M=kernels.GROUP_M)
    # Triton >= 3.3 (3.6 and 3.9 alike): signature by name, constexprs typed "constexpr",
    # hints keyed by argument-index tuples.
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name.endswith("_ptr"):
            signature[name] = "*" + job["dtype"]
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 256-B aligned
        elif name in constexprs:
            signature[name] = "constexpr"
        elif ints[name] == 1:
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:
            signature[name] = "i32"
            if ints[name] % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs,
                                       attrs=attrs)
    result = dict(job, ok=False)
    start = time.perf_counter()
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", job["arch"], 32),
                                  options=dict(num_warps=warps, num_stages=stages))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {str(exc)[-2000:]}"
        return result
    result.update(ok=True, seconds=round(time.perf_counter() - start, 2),
                  shared=compiled.metadata.shared, mma="mma" in compiled.asm["ptx"],
                  **_resource_usage(compiled.asm["cubin"]))
    return result


def _resource_usage(cubin: bytes) -> dict:
    """Registers and stack (spills) per thread, from the cuobjdump in the triton wheel."""
    import triton

    tool = Path(triton.__file__).parent / "backends/nvidia/bin/cuobjdump"
    if not tool.exists():
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(tool), "--dump-resource-usage", f.name],
                              capture_output=True, text=True).stdout
    fields = dict(item.split(":", 1) for item in text.split() if item.count(":") == 1)
    return {key.lower(): int(fields[key]) for key in ("REG", "STACK") if key in fields}


def _worker(job_file: str) -> None:
    from concurrent.futures import ProcessPoolExecutor

    todo = json.loads(Path(job_file).read_text())
    with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 1, len(todo))) as pool:
        for result in pool.map(_compile, todo, chunksize=1):
            print("RESULT " + json.dumps(result), flush=True)


# ---- pytest side --------------------------------------------------------------------------

JOBS = jobs()


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        job_file = Path(tmp) / "jobs.json"
        job_file.write_text(json.dumps(JOBS))
        run = subprocess.run([sys.executable, __file__, str(job_file)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=1200)
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line.removeprefix("RESULT "))
            results[_job_id(result)] = result
    if run.returncode or not results:
        pytest.fail(f"AOT compile worker failed (exit {run.returncode}):\n{run.stderr[-4000:]}")
    return results


@pytest.mark.triton
@pytest.mark.skipif(not JOBS, reason="triton is not installed")
@pytest.mark.parametrize("job", JOBS, ids=[_job_id(j) for j in JOBS])
def test_config_compiles_and_fits(job, compiled):
    result = compiled.get(_job_id(job))
    assert result is not None, f"{_job_id(job)}: the worker reported nothing"
    assert result["ok"], f"{_job_id(job)} does not compile: {result.get('error')}"
    # Shown with -rP or -s: compile time, shared bytes, registers, stack (spills) per thread.
    print({k: result.get(k) for k in ("seconds", "shared", "reg", "stack")})
    limit = SHARED_LIMIT[job["arch"]]
    assert result["shared"] <= limit, (
        f"{_job_id(job)} needs {result['shared']} B of shared memory; sm_{job['arch']} "
        f"allows {limit} B per block: shrink BLOCK_K or num_stages in GPU_CONFIGS")
    wants_tensor_cores = not (job["dtype"] == "fp32" and job["precision"] == "ieee")
    assert result["mma"] == wants_tensor_cores, (
        f"{_job_id(job)}: tensor-core instructions {'missing' if wants_tensor_cores else 'used'}"
        " (strict fp32 must not use TF32; the other dtypes must use tensor cores)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(sys.argv[1])
