"""Every GPU autotune config of the Triton conv kernels compiles for sm_80 and sm_90 and fits.

Why: CI has no GPU, so a tile config that cannot compile, or needs more shared memory than
an A100/H100 block may have, would otherwise first fail in a user's GPU run (the autotuner
tries every config). ``triton.compile`` with an explicit ``GPUTarget`` runs the whole
pipeline, TTIR -> PTX -> cubin with the ptxas shipped in the triton wheel, with no GPU and
no driver. Checked per kernel (forward, input gradient, weight gradient, and the fixed-tile
bias, split-reduction and NCHW to channels_last passes), config, target and dtype: it
compiles; ``metadata.shared`` fits the target; tensor cores are used exactly where
intended (fp16, bf16, TF32 yes; strict fp32 and the passes without a dot no). Which
dtypes per config: see DEFAULT MATRIX below.

Why a subprocess: with TRITON_INTERPRET=1 (conftest sets it on CPU-only machines)
``triton.jit`` yields interpreter functions, and the interpreter patches triton.language in
place, so this process cannot compile for a GPU. A fresh Python with TRITON_INTERPRET unset
compiles all jobs, one process per core, and reports JSON; this module is also that worker.
It must not assert anything about speed: register counts and spills are only reported.

The signature mirrors what the JIT would specialise for real layers (ints equal to 1 become
constexprs, multiples of 16 get divisibility hints, as triton.jit does): see LAYERS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Shared memory a block may use: sm_80 (A100) 163 KB, sm_90 (H100) 227 KB.
SHARED_LIMIT = {80: 166_912, 90: 232_448}


def _layer(n, c, h, k, r, stride, pad, groups=1):
    """Every kernel int argument for a square conv layer as the launchers pass them: input,
    weight, output and their gradients channels_last (so the channel strides are 1 and
    specialise). Each kernel picks the names it takes."""
    p = (h + 2 * pad - r) // stride + 1
    cg, kg = c // groups, k // groups
    cols = cg * r * r
    return dict(
        N=n, N_ROWS=c, N_COLS=h * h, tiles_cols=-(-h * h // 64), M=n * p * p,
        NPQ=n * p * p, H=h, W=h, P=p, Q=p, HP=-(-h // stride), WP=-(-h // stride), CG=cg,
        KG=kg, K=k, CHUNK=2048, COLS=cols, COL=cols,
        WS_COLS=cols + 1, WS_SPLIT=k * (cols + 1), SPLIT=8,
        sxn=h * h * c, sxc=1, sxh=h * c, sxw=c,
        swk=r * r * cg, swc=1, swr=r * cg, sws=cg,
        syn=k * p * p, syk=1, syp=p * k, syq=k,
        sdn=k * p * p, sdk=1, sdp=p * k, sdq=k,
        stride_h=stride, stride_w=stride, pad_h=pad, pad_w=pad, dil_h=1, dil_w=1,
        step_r=stride, step_s=stride, R=r, S=r)


#: ResNet-50's 256->256 @14 3x3 (every GEMM kernel's main loop), its 3->64 @224 7x7/2 stem
#: (the forward's flattened loop; a strided weight gradient with 147 columns) and a
#: MobileNet-v2 depthwise 3x3/2 layer (the input gradient's flattened loop, 4 phases).
LAYERS = {"3x3": _layer(32, 256, 14, 256, 3, 1, 1), "stem": _layer(32, 3, 224, 64, 7, 2, 3),
          "dw": _layer(32, 96, 112, 96, 3, 2, 1, groups=96)}

#: kernel -> (module, function, configs attribute or None for a fixed-tile kernel,
#: constexprs the launcher passes, pointers that are fp32 whatever the dtype).
KERNELS = {
    "fwd": ("_triton_kernels", "conv2d_fwd_kernel", "GPU_CONFIGS", ("R", "S", "FLAT_K"), ()),
    "fwd16": ("_triton_kernels", "conv2d_fwd_kernel", "GPU_CONFIGS_16BIT", ("R", "S", "FLAT_K"),
              ()),
    "dgrad": ("_triton_backward", "conv2d_dgrad_kernel", "DGRAD_GPU_CONFIGS",
              ("R", "S", "FLAT_K"), ()),
    "wgrad": ("_triton_backward", "conv2d_wgrad_kernel", "WGRAD_GPU_CONFIGS", ("R", "S"),
              ("ws_ptr",)),
    "bias": ("_triton_backward", "bias_partial_kernel", None, (), ("ws_ptr",)),
    "reduce": ("_triton_backward", "wgrad_reduce_kernel", None, (), ("ws_ptr",)),
    "transpose": ("_triton_kernels", "transpose_kernel", None, (), ()),
}
#: FLAT_K as each launcher decides it: by C/g in the forward, by K/g in the input gradient.
FLAT_K = {"fwd": lambda ints: ints["CG"] < 32, "fwd16": lambda ints: ints["CG"] < 32,
          "dgrad": lambda ints: ints["KG"] < 32}

#: DEFAULT MATRIX, trimmed to keep this test near a minute on two idle cores (each job is a
#: full TTIR -> cubin compile: about 1.2 s of CPU, 3x that for strict fp32). Per part:
#:   * every config x fp32 with TF32, main layer: the fit check. fp32 tiles are the largest,
#:     and TF32 on sm_90 (wgmma operands in shared memory) needs more than strict fp32 (up
#:     to 1.5x; equal on sm_80) and than bf16/fp16 (2x): measured over the full matrix;
#:   * every config x bf16 on sm_90, second layer (the other loop, strided address math):
#:     the wgmma path the half types autotune over, and the rest of each kernel's code;
#:   * the first config in strict fp32 and in fp16, per arch: no tensor cores in strict
#:     fp32 (a TF32 leak would break exact mode), tensor cores in fp16;
#:   * the fixed-tile bias, reduce and transpose passes, once per arch;
#:   * the forward's tiles for 2-byte types only (GPU_CONFIGS_16BIT, pruned for float32):
#:     bf16 in place of fp32 with TF32, and no strict fp32 or fp16 first-config job.
#: CONVBENCH_AOT=full compiles every kernel x config x arch x dtype x layer instead (440 jobs,
#: all of which compile and fit with these configs).
MAIN_LAYER = {"fwd": "3x3", "fwd16": "3x3", "dgrad": "3x3", "wgrad": "3x3"}
SECOND_LAYER = {"fwd": "stem", "fwd16": "stem", "dgrad": "dw", "wgrad": "stem"}
DTYPES = (("fp32", "tf32"), ("bf16", "ieee"), ("fp32", "ieee"), ("fp16", "ieee"))
#: The dtypes a kernel's configurations are for, where not all of DTYPES.
HALF_TYPES_ONLY = {"fwd16"}


def jobs(full: bool | None = None) -> list[dict]:
    if full is None:
        full = os.environ.get("CONVBENCH_AOT") == "full"
    configs = _gpu_configs()
    if not configs:
        return []
    out = []

    def add(kernel, arch, dtype, precision, layer, config=()):
        out.append(dict(kernel=kernel, arch=arch, dtype=dtype, precision=precision,
                        layer=layer, config=list(config)))

    for arch in SHARED_LIMIT:
        for kernel in MAIN_LAYER:
            half_only = kernel in HALF_TYPES_ONLY
            fit = ("bf16", "ieee") if half_only else ("fp32", "tf32")
            for i, config in enumerate(configs[kernel]):
                for dtype, precision in DTYPES:
                    if half_only and dtype == "fp32":
                        continue
                    wanted = (full or (dtype, precision) == fit
                              or (i == 0 and dtype in ("fp32", "fp16") and not half_only))
                    if wanted:
                        add(kernel, arch, dtype, precision, MAIN_LAYER[kernel], config)
                    if full or (dtype == "bf16" and arch == 90):
                        add(kernel, arch, dtype, precision, SECOND_LAYER[kernel], config)
        for kernel in ("bias", "reduce", "transpose"):
            for dtype, precision in DTYPES if full else DTYPES[1:2]:
                add(kernel, arch, dtype, precision, "3x3")
    return out


def _gpu_configs() -> dict[str, tuple]:
    """The full GPU lists, even when this process's kernels are interpreter functions."""
    if importlib.util.find_spec("triton") is None:
        return {}
    import importlib as il

    return {name: getattr(il.import_module(f"impls.builtin.{module}"), attr)
            for name, (module, _, attr, _, _) in KERNELS.items() if attr}


def _job_id(job: dict) -> str:
    dtype = job["dtype"] + ("-tf32" if job["precision"] == "tf32" else "")
    name = f"sm{job['arch']}-{job['kernel']}-{job['layer']}-{dtype}"
    if job["config"]:
        bm, bn, bk, warps, stages = job["config"]
        name += f"-{bm}x{bn}x{bk}-w{warps}-s{stages}"
    return name


# ---- worker side (a fresh interpreter, TRITON_INTERPRET unset) ---------------------------

def _compile(job: dict) -> dict:
    import importlib as il

    import triton
    from triton.backends.compiler import GPUTarget

    from impls.builtin._triton_kernels import GROUP_M

    module_name, fn_name, _, launcher_constexprs, fp32_pointers = KERNELS[job["kernel"]]
    module = il.import_module(f"impls.builtin.{module_name}")
    kernel = getattr(module, fn_name)
    ints = dict(LAYERS[job["layer"]])
    constexprs = {name: ints[name] for name in launcher_constexprs if name != "FLAT_K"}
    if "FLAT_K" in launcher_constexprs:
        constexprs["FLAT_K"] = FLAT_K[job["kernel"]](ints)
    options = {}
    if job["config"]:
        bm, bn, bk, warps, stages = job["config"]
        constexprs.update(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=GROUP_M)
        options = dict(num_warps=warps, num_stages=stages)
    elif job["kernel"] == "bias":
        constexprs.update(BLOCK_P=module.BIAS_BLOCK_P, BLOCK_C=module.BIAS_BLOCK_C)
    elif job["kernel"] == "transpose":  # the tiles of a ResNet activation
        constexprs.update(BLOCK_R=64, BLOCK_C=64)
        options = dict(num_warps=module.TRANSPOSE_WARPS)
    else:
        constexprs.update(BLOCK=module.REDUCE_BLOCK)
    # Everything the launcher passes as a keyword is a constexpr; the rest follows the JIT's
    # specialisation: HAS_BIAS and INPUT_PRECISION where the kernel has them.
    for name, value in (("HAS_BIAS", True), ("INPUT_PRECISION", job["precision"])):
        if name in kernel.arg_names:
            constexprs[name] = value
    # Triton >= 3.3 (3.6 and 3.9 alike): signature by name, constexprs typed "constexpr",
    # hints keyed by argument-index tuples.
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name.endswith("_ptr"):
            signature[name] = "*fp32" if name in fp32_pointers else "*" + job["dtype"]
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 256-B aligned
        elif name in constexprs:
            signature[name] = "constexpr"
        else:
            value = ints[name]
            if value == 1:
                signature[name] = "constexpr"
                constexprs[name] = 1
            else:
                signature[name] = "i32"
                if value % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs,
                                       attrs=attrs)
    result = dict(job, ok=False)
    start = time.perf_counter()
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", job["arch"], 32),
                                  options=options)
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


@pytest.fixture(scope="module", autouse=True)
def cpu_suite_only(pytestconfig):
    """Not in a --device cuda run: there the GPU compiles and runs the kernels itself, and
    each xdist worker would recompile all of these, one process per core, beside it."""
    if pytestconfig.getoption("device").startswith("cuda"):
        pytest.skip("compiling for sm_80/sm_90 without a GPU is the CPU suite's (CI's) check")


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        job_file = Path(tmp) / "jobs.json"
        job_file.write_text(json.dumps(JOBS))
        # Its own session, so a timeout also ends the pool's workers, not just their parent.
        run = subprocess.Popen([sys.executable, __file__, str(job_file)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        try:
            stdout, stderr = run.communicate(timeout=10 * len(JOBS) + 300)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            stdout, stderr = run.communicate()
    results = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line.removeprefix("RESULT "))
            results[_job_id(result)] = result
    if run.returncode or not results:
        pytest.fail(f"AOT compile worker failed (exit {run.returncode}):\n{stderr[-4000:]}")
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
    wants_tensor_cores = bool(job["config"]) and not (job["dtype"] == "fp32"
                                                      and job["precision"] == "ieee")
    assert result["mma"] == wants_tensor_cores, (
        f"{_job_id(job)}: tensor-core instructions {'missing' if wants_tensor_cores else 'used'}"
        " (strict fp32 must not use TF32; the other dtypes must use tensor cores)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(sys.argv[1])
