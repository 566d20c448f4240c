"""Packaging of the template.

The same file is what `make setup` installs, what Dataflow workers install
(`--setup_file=./setup.py`) and what the pipeline container image installs, so
user code is imported by dotted path (`models.preprocessing.preprocessing_fn`).
Exact versions live in requirements.lock; the ranges here say what the code needs.
"""

from setuptools import setup

setup(
    name="tfx-pipeline-template",
    version="0.1.0",
    description="An end-to-end TFX pipeline template: local, Beam, Airflow and Kubeflow/Vertex "
                "runners, TF Serving export and int8 TFLite edge models.",
    python_requires=">=3.9,<3.11",
    packages=["pipeline", "pipeline.components", "pipeline.training", "pipeline.ops", "models",
              "runners", "runners.cli", "serving", "edge"],
    # The run report's and model card's Jinja2 templates (pipeline/ops/report.py).
    package_data={"pipeline.ops": ["report_templates/*.j2"]},
    install_requires=[
        "tfx==1.16.0",
        "tf-keras~=2.16.0",
        "click>=8",
        "pyyaml>=5",
    ],
    extras_require={
        "airflow": ["apache-airflow==2.11.0"],
        "kfp": ["kfp>=2,<3", "google-cloud-aiplatform>=1.40"],
        "dataflow": ["apache-beam[gcp]==2.59.0"],
        "serving": ["tensorflow-serving-api~=2.16.1"],
        "tuning": ["keras-tuner>=1.4"],
        "dev": ["pytest", "pytest-timeout", "ruff", "psutil"],
    },
    entry_points={"console_scripts": ["tfxt=runners.cli.main:main"]},
)
