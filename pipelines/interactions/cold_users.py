"""The interactions example with cold users: what the OOV option is worth.

A variant of the log in which a share of the users appear only in
evaluation (``data.LogOptions(new_user_share=...)``). The preprocessing's
``frequency_threshold=1`` gives every training user a row, so no training
example reaches the user OOV row: it keeps its initial value, and every cold
user is looked up there. The embedding statistics warn about it, and
``oov_rows='mean_after_training'`` (or 'zero') fixes it without retraining
differently. Used by a slow test and by ``make bench``; no pipeline runs:
Transform's Beam API and the statistics' PTransform run in-process.

    study = ColdUserStudy.build(root)
    study.statistics.warnings      # EmbeddingStatsGen's split warnings
    study.evaluate('random'), study.evaluate('mean_after_training')
"""

import dataclasses
import os
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam

from components.embedding_stats import beam_stats
from components.embedding_stats import config as stats_config
from components.embedding_stats import features as stats_features
from components.embedding_stats import from_spec
from components.embedding_stats import statistics
from components.trainer import loop
from pipelines.interactions import data
from pipelines.interactions import embedding_spec
from pipelines.interactions import features
from pipelines.interactions import pipeline
from pipelines.interactions import preprocessing

# Half the users are cold; the rest train on 3/4 of their interactions.
LOG = data.LogOptions(num_users=300, num_items=200, interactions_per_user=12,
                      new_user_share=0.5, seed=3)
TRAIN_STEPS = 200


def _raw_feature_spec() -> Dict[str, Any]:
  spec = {key: tf.io.VarLenFeature(tf.string) for key in
          (features.USER, features.ITEM, features.CATEGORY, features.HISTORY)}
  spec[features.LABEL] = tf.io.VarLenFeature(tf.int64)
  return spec


def _raw_rows(rows):
  return [{features.USER: [r[features.USER].encode()],
           features.ITEM: [r[features.ITEM].encode()],
           features.CATEGORY: [r[features.CATEGORY].encode()],
           features.HISTORY: [h.encode() for h in r[features.HISTORY]],
           features.LABEL: [r[features.LABEL]]} for r in rows]


def transform(root: str, options: data.LogOptions = LOG) -> Dict[str, str]:
  """Writes transformed ``<root>/examples/<split>/data.gz``; their patterns."""
  rows = data.generate(options)
  metadata = tft.DatasetMetadata.from_feature_spec(_raw_feature_spec())
  with tft_beam.Context(temp_dir=os.path.join(root, 'tmp')):
    (train, out_metadata), transform_fn = (
        (_raw_rows(rows['train']), metadata)
        | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
    evaluation, _ = (((_raw_rows(rows['eval']), metadata), transform_fn)
                     | tft_beam.TransformDataset())
    _ = transform_fn | tft_beam.WriteTransformFn(
        os.path.join(root, 'transform_graph'))
  coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
  patterns = {}
  for split, examples in (('train', train), ('eval', evaluation)):
    path = os.path.join(root, 'examples', split, 'data.gz')
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for example in examples:
        writer.write(coder.encode(example))
    patterns[split] = path
  return patterns


def measure_statistics(transform_output: Any, patterns: Dict[str, str],
                       output_dir: str) -> Any:
  """EmbeddingStatsGen's statistics (and split warnings) of both splits."""
  measured = stats_features.resolve_features(
      from_spec.features_from_embedding_spec(
          embedding_spec.create_embedding_spec()), transform_output)
  with beam.Pipeline() as p:
    _ = p | beam_stats.GenerateEmbeddingStatistics(
        patterns, measured, stats_config.TruncationPolicy(), output_dir)
  return statistics.load_embedding_statistics(output_dir)


@dataclasses.dataclass
class ColdUserStudy:
  """A transformed cold-user log with its statistics, ready to train."""

  root: str
  patterns: Dict[str, str]
  transform_output: Any
  statistics: Any

  @classmethod
  def build(cls, root: str, options: data.LogOptions = LOG
           ) -> 'ColdUserStudy':
    patterns = transform(root, options)
    output = tft.TFTransformOutput(os.path.join(root, 'transform_graph'))
    statistics = measure_statistics(output, patterns,
                                    os.path.join(root, 'statistics'))
    return cls(root, patterns, output, statistics)

  def evaluate(self, oov_rows: str, train_steps: int = TRAIN_STEPS
              ) -> loop.TrainResult:
    """Trains from scratch with ``oov_rows`` on every table; evaluates."""
    spec = dataclasses.replace(embedding_spec.create_embedding_spec(),
                               oov_rows=oov_rows)
    resolved = spec.resolve(
        tf_transform_output=self.transform_output,
        max_sequence_lengths=(
            self.statistics.recommended_max_sequence_lengths()))
    config = pipeline.default_training_config(
        train_steps=train_steps, checkpoint_every=train_steps,
        log_every=max(train_steps // 3, 1), export_projector=False)
    return loop.train(
        config, resolved, self.transform_output.transformed_feature_spec(),
        [self.patterns['train']], [self.patterns['eval']],
        os.path.join(self.root, f'run_{oov_rows}'))
