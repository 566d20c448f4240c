# The pipeline image for Kubeflow Pipelines v2 / Vertex AI Pipelines: the TFX
# image of the same TFX version, plus this template installed through setup.py
# (the same setup.py Dataflow workers install), so components import user code
# by dotted path, e.g. models.preprocessing.preprocessing_fn.
#
#   docker build -t tfxt-pipeline .                                  # TFX 1.16 (requirements.lock)
#   docker build --build-arg TFX_VERSION=1.21.0 -t tfxt-pipeline .   # TFX 1.21 (requirements-py313.lock)
#   docker tag tfxt-pipeline REGION-docker.pkg.dev/PROJECT/REPOSITORY/tfxt-pipeline:VERSION
#   docker push REGION-docker.pkg.dev/PROJECT/REPOSITORY/tfxt-pipeline:VERSION
# then set orchestration.image in the config to the pushed name.
ARG TFX_VERSION=1.16.0
FROM tensorflow/tfx:${TFX_VERSION}

ENV TF_USE_LEGACY_KERAS=1 \
    PYTHONUNBUFFERED=1

WORKDIR /pipeline
COPY setup.py ./
COPY pipeline/ pipeline/
COPY models/ models/
COPY runners/ runners/
COPY serving/ serving/
COPY edge/ edge/
# Not editable: the image must not depend on this folder's layout at run time.
RUN pip install --no-cache-dir . && cd / && python -c "import models.trainer, pipeline.pipeline"
