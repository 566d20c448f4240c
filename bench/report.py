"""Writes one benchmark's section of BENCHMARKS.md, with the command and the machine.

Each topic owns the text between `<!-- bench:<topic> -->` and `<!-- /bench:<topic> -->`,
so topics can be re-run independently without clobbering each other.
"""

import os
import platform
import re
import time

BENCHMARKS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "BENCHMARKS.md")


def machine() -> str:
    """One line describing this machine: CPU model, cores, memory, OS, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        memory = "RAM unknown"
    return (f"{cpu}, {os.cpu_count()} cores, {memory}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def write_section(topic: str, title: str, command: str, body: str) -> None:
    """Replaces (or appends) the section of `topic` in BENCHMARKS.md."""
    section = (f"<!-- bench:{topic} -->\n## {title}\n\n"
               f"Command: `{command}`  \nMachine: {machine()}  \n"
               f"Measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
               f"{body.strip()}\n<!-- /bench:{topic} -->")
    text = open(BENCHMARKS_PATH).read() if os.path.exists(BENCHMARKS_PATH) else (
        "# Benchmarks\n\nMeasured by `make bench` (`python -m bench [topic]`). These machines are "
        "shared and noisy, so compare ratios measured in the same run, not absolute numbers "
        "across runs.\n")
    pattern = re.compile(rf"<!-- bench:{re.escape(topic)} -->.*?<!-- /bench:{re.escape(topic)} -->",
                         re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + section + "\n")
    with open(BENCHMARKS_PATH, "w") as f:
        f.write(text)
