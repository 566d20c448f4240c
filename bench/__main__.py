"""`python -m bench [topic ...]` (or `make bench`): runs every benchmark module, or the named ones."""

import importlib
import pkgutil
import sys

import bench


def main(argv) -> int:
    topics = argv or sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                            if not m.name.startswith("_") and m.name != "report")
    for topic in topics:
        print(f"== bench.{topic}", flush=True)
        importlib.import_module(f"bench.{topic}").main([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
