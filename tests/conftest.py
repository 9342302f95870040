"""Test set-up shared by every test module.

TensorFlow Transform builds tf_keras (Keras 2) models, so Keras 2 must be
what ``tf.keras`` means: the variable is set before TensorFlow is imported.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope='session')
def movies_transform(tmp_path_factory):
  """One small Transform output of synthetic movies, shared by the session.

  Returns ``(examples_dir, transform_dir)``; raw examples of the same rows
  are under ``trainer_fixture.raw_examples_dir(examples_dir)``.
  """
  import trainer_fixture  # pylint: disable=g-import-not-at-top
  return trainer_fixture.build_transform_output(
      str(tmp_path_factory.mktemp('movies_transform')))
