"""Export check: the serving model scores raw examples as training does.

Before the Trainer reports success it reloads the exported SavedModel and
scores raw evaluation examples with it, and scores the same examples on the
training path: the Transform layer, the host id mapping (``BatchPreparer``),
the training feature configuration (combiners, weights, sequence lengths) in
the CPU backend's predict step, with the tables and dense model restored from
the final checkpoint. The two must agree to float tolerance; a serving model
whose table lost its combiner, whose id mapping differs or whose dense
features are mis-ordered fails the run.
"""

from typing import Any, List, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from components.trainer import backends
from components.trainer import export
from components.trainer import loop


class ServingSkewError(AssertionError):
  """The serving model's outputs differ from the training path's."""


def read_records(files: List[str], count: int) -> List[bytes]:
  """Up to ``count`` serialized records of gzipped TFRecord ``files``."""
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP')
  return [record for record in dataset.take(count).as_numpy_iterator()]


def training_path_outputs(raw_examples: List[bytes], resolved: Any,
                          model: Any, checkpoint: str, transform_output: Any,
                          raw_label_keys: List[str],
                          dense_keys: List[str]) -> np.ndarray:
  """The model's outputs for raw examples, through the training path."""
  global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
  backend = backends.CpuBackend(resolved.compile(global_step),
                                resolved.compile_optimizer(global_step))
  # Restored before the embedding's first lookup builds its tables: a
  # SparseCore (V2) checkpoint's stacked tables are then split by their
  # recorded layouts, as in ``export.restore_tables``.
  tf.train.Checkpoint(embedding=backend.embedding, model=model).restore(
      checkpoint).expect_partial()
  raw_spec = transform_output.raw_feature_spec()
  for key in raw_label_keys:
    raw_spec.pop(key, None)
  raw = tf.io.parse_example(tf.constant(raw_examples), raw_spec)
  transformed = transform_output.transform_features_layer()(raw)
  labels = tf.zeros([len(raw_examples), 1])
  batch = loop.BatchPreparer(resolved.id_mapper(), dense_keys)(transformed,
                                                                labels)
  _, outputs = backend.predict_step(model)(batch)
  return outputs.numpy()


def serving_outputs(serving_dir: str, raw_examples: List[bytes]
                   ) -> Mapping[str, np.ndarray]:
  """The reloaded serving signature's outputs for raw examples."""
  signature = tf.saved_model.load(serving_dir).signatures[
      export.SERVING_SIGNATURE]
  return {key: value.numpy() for key, value in
          signature(examples=tf.constant(raw_examples)).items()}


def check_serving(serving: Mapping[str, np.ndarray],
                  expected: Mapping[str, np.ndarray],
                  rtol: float = 1e-4, atol: float = 1e-5) -> None:
  """Raises ``ServingSkewError`` naming the output that differs."""
  if set(serving) != set(expected):
    raise ServingSkewError(f'The serving model returns {sorted(serving)}; '
                           f'training gives {sorted(expected)}.')
  for key, value in expected.items():
    if not np.allclose(serving[key], value, rtol=rtol, atol=atol):
      worst = float(np.max(np.abs(serving[key] - value)))
      raise ServingSkewError(
          f'Serving output {key!r} differs from the training path by up to '
          f'{worst:.3g} on the same raw examples: the exported model does '
          'not compute what was trained. Nothing is reported as a success.')
  logging.info('Serving model checked: its outputs equal the training '
               'path\'s on %d raw examples.', len(next(iter(expected.values()))))
