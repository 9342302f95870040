# One image for Vertex AI Pipelines: the components' containers, the Dataflow
# workers (--sdk_container_image; the TFX image's entry point is Beam's worker
# boot) and the Trainer's TPU custom job. See "Running on Vertex AI" in README.
# TPU training on SparseCore (v5p, v6e) wants TFX 1.21 / TF 2.21: TF 2.16 has
# no SparseCoreEmbeddingConfig (see docs/training_on_tpu.md). Such an image
# needs TFX_VERSION=1.21.0 and a lock file resolved for that stack.
ARG TFX_VERSION=1.16.0
FROM gcr.io/tfx-oss-public/tfx:${TFX_VERSION}

# TensorFlow Transform builds tf_keras (Keras 2) models.
ENV TF_USE_LEGACY_KERAS=1

WORKDIR /pipeline

# The locked dependencies first: code changes then rebuild only the last layers.
COPY requirements.lock ./
RUN pip install --no-cache-dir --ignore-requires-python --no-deps \
      -r requirements.lock

# TPU VMs need TensorFlow's TPU build of the same version and its libtpu, which
# is published on Google's libtpu index, not on PyPI. --build-arg TPU=false
# gives an image for everything but the TPU training (see --trainer-image).
ARG TPU=true
ARG TF_TPU_VERSION=2.16.2
ARG LIBTPU_VERSION=2.16.0rc0
RUN if [ "${TPU}" = "true" ]; then \
      pip install --no-cache-dir --no-deps \
        tensorflow-tpu==${TF_TPU_VERSION} libtpu==${LIBTPU_VERSION} \
        -f https://storage.googleapis.com/libtpu-tf-releases/index.html; \
    fi

COPY . ./
RUN pip install --no-cache-dir --ignore-requires-python --no-deps \
      --no-build-isolation -e .
# The CPU path's native embedding kernels, built against this image's
# TensorFlow so that CPU training here needs no compiler at run time (the
# build says so and goes on where the image has none; TPU training does not
# use them).
ENV TPU_EMBEDDING_NATIVE_CACHE=/pipeline/.native_kernels
RUN python -m components.embedding.native_kernels
# The Kubeflow v2 entry point imports custom artifact types by their type name
# (tpu_embedding_tfx.EmbeddingStatistics): a module at the repository root.
ENV PYTHONPATH="/pipeline:${PYTHONPATH}"
