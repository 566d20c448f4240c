"""Packaging of the template.

The same file is what `make setup` installs, what Dataflow workers install
(`--setup_file=./setup.py`) and what the pipeline container image installs, so
user code is imported by dotted path (`models.preprocessing.preprocessing_fn`).
Exact versions live in the locks (requirements.lock: Python 3.10 + TFX 1.16;
requirements-py313.lock: Python 3.13 + TFX 1.21); the ranges here fit both.
"""

from setuptools import setup

setup(
    name="tfx-pipeline-template",
    version="0.1.0",
    description="An end-to-end TFX pipeline template: local, Beam, Airflow and Kubeflow/Vertex "
                "runners, TF Serving export and int8 TFLite edge models.",
    python_requires=">=3.10,<3.14",
    packages=["pipeline", "pipeline.components", "pipeline.training", "pipeline.ops", "models",
              "runners", "runners.cli", "serving", "edge"],
    # The run report's and model card's Jinja2 templates (pipeline/ops/report.py).
    package_data={"pipeline.ops": ["report_templates/*.j2"]},
    install_requires=[
        "tfx>=1.16,<1.22",
        # Follows TensorFlow's minor version (TF 2.16 with TFX 1.16, TF 2.21 with TFX 1.21).
        "tf-keras>=2.16,<2.22",
        # The Trainer writes TensorBoard logs; TensorFlow 2.21 no longer pulls it in.
        "tensorboard>=2.16",
        "click>=8",
        "pyyaml>=5",
    ],
    extras_require={
        # TFX 1.21 supports Airflow only below Python 3.13 and kfp only below 3.12.
        "airflow": ["apache-airflow>=2.10,<3; python_version < '3.13'"],
        "kfp": ["kfp>=2,<3; python_version < '3.12'", "google-cloud-aiplatform>=1.40"],
        "dataflow": ["apache-beam[gcp]>=2.59,<3"],
        # tfx-bsl 1.21 holds it below 2.20 although TensorFlow is 2.21.
        "serving": ["tensorflow-serving-api>=2.16.1,<2.22"],
        "tuning": ["keras-tuner>=1.4"],
        "dev": ["pytest", "pytest-timeout", "pytest-xdist", "ruff", "psutil"],
    },
    entry_points={"console_scripts": ["tfxt=runners.cli.main:main"]},
)
