"""Operating the pipeline: running it with progress and a summary, run history from ML Metadata,
schema refresh, synthetic data and the Vertex compile. The CLI (`runners.cli`) calls these.
"""
