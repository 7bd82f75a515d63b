"""The backend registry: a dict from name to entry, filled by each backend file on import.

Why a registry: tests, sweeps and reports iterate over backends and skip what a backend
declares it cannot do, so capabilities are data here, not try/except scattered around.

What it must not do: import an optional dependency (Triton, CUDA) at load. A backend file
registers a cheap ``probe`` that answers "" (available) or the reason it is not; the probe
runs on first use of ``.available``. User backends come in as "package.module:function"
or through the ``convbench.backends`` entry-point group; neither needs a file of this repo.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import torch

from impls import memory_budget
from impls.tolerances import error_models

#: Everything a conv2d call can ask of a backend beyond the plain dense case.
FEATURES = frozenset({"stride", "padding", "dilation", "groups", "bias", "autograd"})
#: The dtypes a backend supports unless it says otherwise.
DEFAULT_DTYPES = (torch.float32, torch.float64)

#: Modules of the built-in backends, imported on first lookup (each registers itself).
BUILTIN_MODULES = (
    "impls.builtin.naive",
    "impls.builtin.unfold",
    "impls.builtin.fft",
    "impls.builtin.winograd",
    "impls.builtin.winograd_1d",
    "impls.builtin.torch_native",
    "impls.builtin.triton_conv",
    "impls.builtin.auto",
)
ENTRY_POINT_GROUP = "convbench.backends"

ConvFn = Callable[..., torch.Tensor]


@dataclass(eq=False)
class Backend:
    """One registered conv2d implementation and what it can do.

    ``fn`` has F.conv2d's signature but always receives normalised arguments: a 4-D input,
    (int, int) stride/padding/dilation, an int groups, symmetric padding only.
    ``exact`` says whether it must match the float64 reference bit for bit on exact-integer
    data (direct and GEMM methods do; FFT and Winograd round inside their transforms).
    ``error_model`` names the tolerance model of impls.tolerances used in random mode.
    """

    name: str
    fn: ConvFn
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[torch.dtype, ...] = DEFAULT_DTYPES
    features: frozenset[str] = FEATURES
    exact: bool = True
    error_model: str = "direct"
    description: str = ""
    probe: Callable[[], str] | None = field(default=None, repr=False)
    #: Largest case it should be asked to run in the checker, in multiply-adds (None: any).
    max_macs: int | None = None
    #: For algorithms defined only for some problems (Winograd: 3x3, stride 1): called with
    #: the normalised (input_shape, weight_shape, stride, padding, dilation, groups), it
    #: returns why this problem is outside the method, or "".
    accepts: Callable[..., str] | None = field(default=None, repr=False)
    #: Memory one call allocates beyond its inputs (scratch and output): called with the
    #: normalised problem and the dtype's itemsize, it returns (bytes, what they are, e.g.
    #: "its column buffer (C*R*S x P*Q per image, x N)"). None: no model, never refused.
    workspace: Callable[..., tuple[int, str]] | None = field(default=None, repr=False)
    #: For a dispatcher (auto): called with the normalised problem, dtype, device and the
    #: features used, it returns the entry that will run it. See :meth:`runner`.
    delegate: Callable[..., Backend] | None = field(default=None, repr=False)
    #: (exact, error_model) on a device type where they differ from ``exact`` and
    #: ``error_model``: torch is exact on the CPU (oneDNN's direct and GEMM kernels), but on
    #: CUDA cuDNN's heuristics may pick an FFT or Winograd engine. See :meth:`runner`.
    accuracy_on: dict[str, tuple[bool, str]] = field(default_factory=dict, repr=False)
    #: Problems the backend takes but is known not to finish: called with the normalised
    #: problem, dtype and device, it returns why (what was measured), or "". The checker
    #: skips these with that reason: its functions run in the caller's process (the test
    #: suite's), where a hang would stop the run, and `impls check` and the report, which
    #: run them in a child (impls.isolated), would only wait out their timeout. A direct
    #: call or a sweep (which kills a case at its timeout) still runs them.
    stalls: Callable[..., str] | None = field(default=None, repr=False)
    #: Why a user's object could not be made a backend at all (its import failed, it is not
    #: callable, its convbench_capabilities are wrong): such an entry is never available,
    #: and a sweep refuses it up front as the typo it is. "" for every working entry.
    load_error: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        """Refuse what the checker and the sweep could not act on, when the entry is made
        (a user's dict, a Backend object, register_backend alike), not mid-check."""
        models = [*([] if self.delegate else [self.error_model]),  # a dispatcher's: unread
                  *(m for _, m in self.accuracy_on.values())]
        unknown = [m for m in models if m not in error_models()]
        if unknown:
            raise ValueError(f"unknown error_model {unknown[0]!r}; models: "
                             f"{', '.join(error_models())}")
        bad = [d for d in (*self.devices, *self.accuracy_on) if d not in ("cpu", "cuda")]
        if bad:
            raise ValueError(f"devices {bad}: the harness runs on 'cpu' and 'cuda'")
        self._check_types()

    def _check_types(self) -> None:
        """A field of the wrong type would fail far from its cause: "false" for exact is
        truthy (the backend then held to bit-exactness), "1e6" for max_macs a TypeError in
        every comparison, a non-callable accepts one in every call."""
        if not isinstance(self.exact, bool):
            raise TypeError(f"exact must be True or False, not {self.exact!r}")
        for name in ("dtypes", "devices"):  # empty: every comparison skipped, none failed
            if not getattr(self, name):
                raise ValueError(f"{name} is empty: name at least one the backend computes "
                                 "in (or leave it out for the default)")
        if self.max_macs is not None and (isinstance(self.max_macs, bool)
                                          or not isinstance(self.max_macs, int)
                                          or self.max_macs < 1):
            raise TypeError(f"max_macs must be a positive int or None, not {self.max_macs!r}")
        for name in ("probe", "accepts", "workspace", "delegate", "stalls"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a callable or None, not "
                                f"{type(value).__name__} {value!r}")
        if not isinstance(self.description, str):
            raise TypeError(f"description must be a str, not {self.description!r}")

    @cached_property
    def reason(self) -> str:
        """Why the backend cannot run here, or "" when it can."""
        if self.probe is None:
            return ""
        try:
            return self.probe() or ""
        except Exception as exc:  # a probe that breaks means "unavailable", not a crash
            return f"probe failed: {type(exc).__name__}: {exc}"

    @property
    def available(self) -> bool:
        return not self.reason

    def unsupported(self, *, device: str = "cpu", dtype: torch.dtype | None = None,
                    features: Iterable[str] = ()) -> str:
        """The reason this backend cannot run a case, or "" when it can."""
        if self.reason:
            return f"{self.name} unavailable: {self.reason}"
        if device.split(":")[0] not in self.devices:
            return f"{self.name} does not run on {device} (devices: {', '.join(self.devices)})"
        if dtype is not None and dtype not in self.dtypes:
            names = ", ".join(str(d).removeprefix("torch.") for d in self.dtypes)
            return f"{self.name} does not support {str(dtype).removeprefix('torch.')} ({names})"
        missing = sorted(set(features) - self.features)
        if missing:
            return f"{self.name} does not support {', '.join(missing)}"
        return ""

    def refuses(self, input_shape, weight_shape, stride, padding, dilation, groups) -> str:
        """Why this problem (normalised arguments) is outside the method, or "" if it is not."""
        if self.accepts is None:
            return ""
        reason = self.declared("accepts", self.accepts(
            tuple(input_shape), tuple(weight_shape), tuple(stride), tuple(padding),
            tuple(dilation), groups))
        return f"{self.name} does not support {reason}" if reason else ""

    def stalled(self, input_shape, weight_shape, stride, padding, dilation, groups,
                dtype: torch.dtype, device="cpu") -> str:
        """Why this problem is known not to finish here (``stalls``), or ""."""
        if self.stalls is None:
            return ""
        return self.declared("stalls", self.stalls(
            tuple(input_shape), tuple(weight_shape), tuple(stride), tuple(padding),
            tuple(dilation), groups, dtype, str(device)))

    def declared(self, callback: str, reason) -> str:
        """A reason a user's ``accepts`` or ``stalls`` returned, checked: a str ("" or None:
        none). A bool is refused, not read: "True" from an ``accepts`` meant as a predicate
        was taken as the reason to refuse, and skipped exactly the problems it accepted."""
        if reason is None or isinstance(reason, str):
            return reason or ""
        raise TypeError(f"{self.name}'s {callback} returned {reason!r}; it must return why "
                        "(a str), or \"\" when the problem is fine"
                        + (" (a bool would read inverted)" if isinstance(reason, bool) else ""))

    def over_budget(self, input_shape, weight_shape, stride, padding, dilation, groups,
                    dtype: torch.dtype, device="cpu") -> str:
        """Why this problem would need more memory than impls.memory_budget allows, or ""."""
        if self.workspace is None:
            return ""
        got = self.workspace(tuple(input_shape), tuple(weight_shape), tuple(stride),
                             tuple(padding), tuple(dilation), groups, dtype.itemsize)
        if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], str)):
            raise TypeError(f"{self.name}'s workspace returned {got!r}; it must return "
                            "(bytes, what the bytes are for)")
        return memory_budget.refusal(self.name, int(got[0]), got[1], device)

    def runner(self, input_shape, weight_shape, stride, padding, dilation, groups,
               dtype: torch.dtype, device="cpu", features: Iterable[str] = ()) -> Backend:
        """The entry that computes this problem: itself, or a dispatcher's choice. Its
        ``exact`` and ``error_model`` (on this device: ``accuracy_on``) are the ones a
        checker must hold the result to."""
        entry = self
        if self.delegate is not None:
            entry = self.delegate(tuple(input_shape), tuple(weight_shape), tuple(stride),
                                  tuple(padding), tuple(dilation), groups, dtype, str(device),
                                  frozenset(features))
        exact, model = entry.accuracy_on.get(str(device).split(":")[0],
                                             (entry.exact, entry.error_model))
        if (exact, model) == (entry.exact, entry.error_model):
            return entry
        return replace(entry, exact=exact, error_model=model)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.fn(*args, **kwargs)

    def capabilities(self) -> dict:
        """A JSON-friendly summary, for ``python -m impls list`` and result files."""
        return {
            "name": self.name,
            "available": self.available,
            "reason": self.reason,
            "devices": list(self.devices),
            "dtypes": [str(d).removeprefix("torch.") for d in self.dtypes],
            "features": sorted(self.features),
            "exact": self.exact,
            "exact_on": {device: exact for device, (exact, _) in self.accuracy_on.items()},
            "description": self.description,
        }


_REGISTRY: dict[str, Backend] = {}
_builtins_loaded = False
_loading = False
_load_lock = threading.RLock()


def register_backend(fn: ConvFn | None = None, *, name: str | None = None, **capabilities):
    """Register ``fn`` as a backend; usable as ``@register_backend(name=..., devices=...)``.

    Re-registering a name replaces the entry, so reloading a module in a notebook works.
    """

    def decorator(f: ConvFn) -> ConvFn:
        entry = Backend(name=name or f.__name__, fn=f, **capabilities)
        _REGISTRY[entry.name] = entry
        f.convbench_backend = entry
        return f

    return decorator if fn is None else decorator(fn)


def _load_builtins() -> None:
    """Import the built-in backends and the entry points, once. Threads that get here
    first together wait for the one loading (a lookup in a half-filled registry said
    "unknown backend 'unfold'"); a built-in module's own lookup during its import, in the
    loading thread, returns at once."""
    global _builtins_loaded, _loading
    if _builtins_loaded:
        return
    with _load_lock:
        if _builtins_loaded or _loading:
            return
        _loading = True
        try:
            for module in BUILTIN_MODULES:
                importlib.import_module(module)
            _load_entry_points()
            _builtins_loaded = True
        finally:
            _loading = False


def _load_entry_points() -> None:
    """Add the ``convbench.backends`` entry points not registered yet.

    Called again on a lookup miss, so a package installed (or put on sys.path) after the
    first lookup is found without restarting the process.
    """
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = _entry_from_object(ep.load, ep.name)
            _FROM_ENTRY_POINT[ep.name] = ep.value
        elif _FROM_ENTRY_POINT.get(ep.name) != ep.value and ep.value not in _SHADOWED:
            # Checking the built-in under a user's name would pass the wrong code: say so.
            _SHADOWED.add(ep.value)
            owner = (f"the entry point {_FROM_ENTRY_POINT[ep.name]}"
                     if ep.name in _FROM_ENTRY_POINT else "a built-in backend")
            dist = f" (from {ep.dist.name})" if getattr(ep, "dist", None) else ""
            warnings.warn(f"{ENTRY_POINT_GROUP} entry point {ep.name} = {ep.value}{dist} is "
                          f"ignored: {ep.name!r} is already {owner}'s name; register it "
                          "under another name", stacklevel=3)


#: Entry points loaded (name -> "module:attr"), and those ignored for a taken name (warned).
_FROM_ENTRY_POINT: dict[str, str] = {}
_SHADOWED: set[str] = set()


def _entry_from_object(load: Callable[[], object], name: str) -> Backend:
    """Make an entry from a user's object: a Backend, a registered fn, or a plain callable.

    A plain callable may carry ``convbench_capabilities`` (a dict of Backend fields, e.g.
    ``{"devices": ("cpu", "cuda"), "dtypes": (torch.float32,)}``). A callable that cannot be
    loaded becomes an unavailable entry with the import error as its reason.
    """
    try:
        obj = load()
    except Exception as exc:
        return _unloadable(name, f"cannot load: {type(exc).__name__}: {exc}")
    if isinstance(obj, Backend):
        return obj
    if hasattr(obj, "convbench_backend"):
        return obj.convbench_backend
    if not callable(obj):
        return _unloadable(name, f"{name} is a {type(obj).__name__}, not a callable")
    try:
        return Backend(name=name, fn=obj, **_capabilities(obj))
    except (TypeError, ValueError) as exc:  # a typo in a user's dict: say so, don't crash
        return _unloadable(name, f"bad convbench_capabilities: {exc}")


def _unloadable(name: str, reason: str) -> Backend:
    """The entry for a user's object that is no backend: unavailable, with ``reason``."""
    return Backend(name=name, fn=_unavailable(reason), probe=lambda: reason,
                   load_error=reason)


def _capabilities(obj) -> dict:
    """A callable's ``convbench_capabilities`` as Backend fields; dtypes may be names."""
    capabilities = dict(getattr(obj, "convbench_capabilities", {}))
    keys = {f.name for f in fields(Backend)} - {"name", "fn", "load_error"}
    unknown = sorted(set(capabilities) - keys)
    if unknown:
        raise ValueError(f"unknown keys {unknown}; keys: {sorted(keys)}")
    # A lone string is one item, not a sequence of letters: "cpu" -> ("cpu",).
    as_tuple = lambda v: (v,) if isinstance(v, str) else tuple(v)  # noqa: E731
    if "features" in capabilities:
        capabilities["features"] = frozenset(as_tuple(capabilities["features"]))
        unknown = sorted(capabilities["features"] - FEATURES)
        if unknown:
            raise ValueError(f"unknown features {unknown}; features: {sorted(FEATURES)}")
    if "devices" in capabilities:
        capabilities["devices"] = as_tuple(capabilities["devices"])
    if "dtypes" in capabilities:
        dtypes = [getattr(torch, d, d) if isinstance(d, str) else d
                  for d in as_tuple(capabilities["dtypes"])]
        bad = [d for d in dtypes if not isinstance(d, torch.dtype)]
        if bad:
            raise ValueError(f"not torch dtypes: {bad}")
        capabilities["dtypes"] = tuple(dtypes)
    capabilities.setdefault("description", (obj.__doc__ or "").strip().split("\n")[0])
    return capabilities


def _unavailable(reason: str) -> ConvFn:
    def fn(*args, **kwargs):
        raise RuntimeError(reason)

    return fn


def _load_spec(spec: str) -> Backend:
    module_name, _, attr = spec.partition(":")

    def load():
        module = importlib.import_module(module_name)
        try:
            return _attribute(module, attr)
        except AttributeError:
            # Imported before its file gained the function (a notebook that fixed a typo in
            # it): read the file again, rather than fail on the stale module forever. Only
            # then: a reload re-runs a module's code (torch's fails half-way, leaving it
            # broken, for a typo as "torch:conv22").
            if not _edited_since_import(module):
                raise
            return _attribute(importlib.reload(module), attr)

    return _entry_from_object(load, spec)


#: Per module: (mtime in whole seconds, size) of its source when a lookup last read it.
_SOURCE_SEEN: dict[str, tuple[int, int]] = {}


def _edited_since_import(module) -> bool:
    """Whether ``module``'s source file changed since it was imported (as its bytecode
    records it, Python's own staleness test) or since the last lookup here saw it."""
    path = getattr(module, "__file__", None) or ""
    try:
        st = os.stat(path) if path.endswith(".py") else None
    except OSError:
        st = None
    if st is None:
        return False
    now = (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    seen = _SOURCE_SEEN.get(module.__name__) or _compiled_from(path) or now
    _SOURCE_SEEN[module.__name__] = now
    return seen != now


def _compiled_from(path: str) -> tuple[int, int] | None:
    """(mtime, size) of the source a .py file's cached bytecode was compiled from, or None
    (no bytecode, or a hash-based one)."""
    try:
        with open(importlib.util.cache_from_source(path), "rb") as f:
            head = f.read(16)
    except (OSError, NotImplementedError, ValueError):
        return None
    if len(head) < 16 or int.from_bytes(head[4:8], "little") != 0:
        return None
    return int.from_bytes(head[8:12], "little"), int.from_bytes(head[12:16], "little")


def _attribute(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def backends() -> list[Backend]:
    """Every registered entry, built-in and plug-in, available or not, in registration order."""
    _load_builtins()
    return list(_REGISTRY.values())


def source_module(name: str) -> str | None:
    """The module a backend name loads from: a "package.module:obj" spec's module, an entry
    point's, a built-in's (None: no such backend). Nothing is imported for a spec."""
    if ":" in name:
        return name.partition(":")[0]
    with contextlib.suppress(ValueError):
        entry = get_backend(name)
        value = _FROM_ENTRY_POINT.get(entry.name)
        return value.partition(":")[0] if value else getattr(entry.fn, "__module__", None)
    return None


def get_backend(name: str | Backend) -> Backend:
    """The entry for ``name``; "package.module:function" loads a user's callable.

    Unknown names raise ValueError listing the known ones. The entry may be unavailable:
    callers that run it use :func:`require`.
    """
    if isinstance(name, Backend):
        return name
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, str) and ":" in name:
        entry = _load_spec(name)
        if not entry.load_error:  # a typo stays out of the known names; a fix loads next time
            _REGISTRY[name] = entry
        return entry
    _load_entry_points()
    if name in _REGISTRY:
        return _REGISTRY[name]
    known = ", ".join(sorted(_REGISTRY))
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
    raise ValueError(
        f"unknown backend {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        + f"; known backends: {known} (or name a callable as 'package.module:function')"
    )


def require(name: str | Backend) -> Backend:
    """The entry for ``name``, raising RuntimeError with its reason when it cannot run here."""
    entry = get_backend(name)
    if not entry.available:
        raise RuntimeError(f"backend {entry.name!r} is unavailable: {entry.reason}")
    return entry
