"""Benchmarks: speed and memory, measured as ratios within one run (never in timed tests).

Each module here (`bench/<topic>.py`) has a `main(argv)` that runs its measurements
and rewrites its own section of BENCHMARKS.md with the command and the machine.
"""
