"""``python -m benchmarks.asv_bench.machine``: tell asv about this machine; print its name.

Why: asv keys results by machine, and its defaults (hostname, CPU model) say nothing of what
changes a conv's speed most: the torch thread count the suite pins and the GPU. Both go into
the machine name (``HOST-2t``, ``HOST-8t-nvidia-h100-80gb-hbm3``) and the CPU field, so runs
with other settings get graphs of their own instead of mixing into one.

It stores what ``asv machine --yes --machine NAME --cpu ...`` should, in asv's own place
(~/.asv-machine.json), through asv's API: given some fields, that command keeps only those
and drops the detected rest (os, arch, num_cpu, ram). Not a benchmark: asv's discovery
imports this module too, so nothing runs at import, and asv is imported only when called.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys

from . import thread_count


def gpu_name() -> str:
    """The first CUDA device's name, or "" where there is none."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""


def machine_fields(name: str | None = None) -> dict[str, str]:
    """asv's machine fields: its defaults, with threads (and GPU) in the name and CPU."""
    from asv.machine import Machine

    fields = Machine.get_defaults()
    threads, gpu = thread_count(), gpu_name()
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    fields["machine"] = name or "-".join(filter(None, (socket.gethostname(), f"{threads}t",
                                                         slug)))
    fields["cpu"] = (f"{fields['cpu'] or 'unknown CPU'}, {threads} torch threads"
                     + (f", GPU {gpu}" if gpu else ""))
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asv_bench.machine",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--machine", help="the name to record (default: HOST-<threads>t[-gpu])")
    args = parser.parse_args(argv)
    from asv.machine import MachineCollection

    fields = machine_fields(args.machine)
    MachineCollection.save(fields["machine"], fields)
    print(fields["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
