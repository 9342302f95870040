"""Pipeline definitions, runners and the movies demo pipeline."""

import os as _os

# TensorFlow Transform builds tf_keras (Keras 2) models: make that what
# tf.keras means, before anything imports TensorFlow.
_os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
