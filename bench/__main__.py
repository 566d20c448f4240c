"""`python -m bench [topic ...] [--option ...]` (or `make bench`): runs every benchmark module, or
the named ones. Options after the topics go to each named topic, so
`python -m bench scale --rows 1000000` is the same as `python -m bench.scale --rows 1000000`."""

import importlib
import pkgutil
import sys

import bench
import pipeline  # noqa: F401 - first: sets the process's Keras before TensorFlow loads


def main(argv) -> int:
    split = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    topics, options = argv[:split], argv[split:]
    if options and len(topics) != 1:
        print("options need exactly one topic, e.g. `python -m bench scale --rows 10000`",
              file=sys.stderr)
        return 2
    topics = topics or sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                              if not m.name.startswith("_") and m.name != "report")
    for topic in topics:
        print(f"== bench.{topic}", flush=True)
        importlib.import_module(f"bench.{topic}").main(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
