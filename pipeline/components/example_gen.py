"""CsvExampleGen's executor, reading the matched CSV files in sorted order.

TFX's CSV source (`_CsvToExample`) reads the files its pattern matches in the
order `fileio.glob` returns them. For local files that is `tf.io.gfile.glob`,
which matches in parallel threads, so the order changes from run to run (seen
here: span files 2007, 2009, 2008 in one run and 2009, 2008, 2007 in the next).
Each file's rows stay together and in order, and the DirectRunner keeps that
order through to the Examples files. So the Trainer saw the same rows in a
different order, and two runs of one config trained different models.

Sorting the file list is the whole change, so the executor wraps TFX's own
source. It swaps in a sorted glob only while that source builds its
part of the Beam graph, which is where TFX calls `glob`. TFX has no option for
this. Under the DirectRunner's in_memory mode (the default), an uncached
rerun then sees the same examples in the same order. Runners that split work
across processes or machines (multi_processing, Dataflow) still interleave
bundles in any order.
"""

import types

import apache_beam as beam
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.dsl.io import fileio


def _sorted_glob(pattern):
    return sorted(fileio.glob(pattern))


class _CsvToExampleInFileOrder(csv_executor._CsvToExample):  # noqa: SLF001 - see the module docstring
    """TFX's CSV source, with the matched files in sorted order."""

    def expand(self, pipeline: beam.Pipeline):
        # `csv_executor` reads `fileio.glob` through its module global; give it a copy of
        # fileio whose glob sorts, for this call only.
        previous = csv_executor.fileio
        csv_executor.fileio = types.SimpleNamespace(**{**vars(fileio), "glob": _sorted_glob})
        try:
            return super().expand(pipeline)
        finally:
            csv_executor.fileio = previous


class Executor(csv_executor.Executor):
    """CsvExampleGen's executor; reads files in sorted order (module docstring)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 - TFX's name
        return _CsvToExampleInFileOrder
