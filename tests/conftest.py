"""Test set-up shared by every test module.

TensorFlow Transform builds tf_keras (Keras 2) models, so Keras 2 must be
what ``tf.keras`` means: the variable is set before TensorFlow is imported.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
