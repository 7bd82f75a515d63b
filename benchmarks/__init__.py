"""What convbench measures: shape sets (benchdnn descriptors), the timer, the sweeps, the gate.

``python -m benchmarks --help`` lists the subcommands. This package imports ``impls``;
``impls`` never imports it.
"""
