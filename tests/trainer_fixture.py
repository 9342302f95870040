"""A small real Transform output of synthetic movies, for Trainer tests.

Runs the movies ``preprocessing_fn`` with tf.Transform's Beam API and writes
the transformed examples as TFX would (``Split-train``/``Split-eval`` gzipped
TFRecords) next to the transform graph.
"""

import json
import os
import random

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import metadata_io
from tfx.types import standard_artifacts

from components.trainer import config as config_lib
from components.trainer import inputs
from components.trainer import training
from pipelines.movies import embedding_spec
from pipelines.movies import features
from pipelines.movies import preprocessing

_ACTORS = [f'actor_{i}' for i in range(40)]
_CREW = [f'crew_{i}' for i in range(15)]
_GENRES = ['drama', 'comedy', 'horror', 'documentary']
_GOOD_ACTORS = set(_ACTORS[:10])


def raw_feature_spec():
  spec = {n: tf.io.VarLenFeature(tf.string)
          for n in features.CATEGORICAL_FEATURES}
  spec.update({n: tf.io.VarLenFeature(tf.float32)
               for n in features.NUMERIC_FEATURES})
  spec[features.LABEL] = tf.io.VarLenFeature(tf.int64)
  return spec


def synthetic_rows(count: int, seed: int = 0):
  """Raw rows whose label depends on the cast and genre (learnable)."""
  rng = random.Random(seed)
  rows = []
  for _ in range(count):
    cast = rng.sample(_ACTORS, rng.randint(0, 12))
    genre = rng.sample(_GENRES, rng.randint(1, 2))
    score = len(_GOOD_ACTORS.intersection(cast)) + ('documentary' in genre) * 2
    rows.append({
        features.CAST: [a.encode() for a in cast],
        features.DIRECTOR: [rng.choice(_CREW).encode()],
        features.WRITER: [c.encode() for c in rng.sample(_CREW, rng.randint(0, 2))],
        features.GENRE: [g.encode() for g in genre],
        features.LANGUAGE: [b'English'] if rng.random() < 0.8 else [],
        features.COUNTRY: [rng.choice([b'US', b'FR', b'JP'])],
        features.PRODUCTION: [rng.choice([b'A', b'B'])] if rng.random() < .5 else [],
        features.MPAA_RATING: [rng.choice([b'R', b'PG'])],
        features.YEAR: [float(rng.randint(1950, 2020))],
        features.RUNTIME: [float(rng.randint(80, 180))] if rng.random() < .9 else [],
        features.LABEL: [int(score + rng.random() * 1.5 >= 2)],
    })
  return rows


def raw_example(row) -> bytes:
  """A raw row as a serialized tf.Example (what serving requests carry)."""
  feature = {}
  for key, values in row.items():
    if not values:
      feature[key] = tf.train.Feature()
    elif isinstance(values[0], bytes):
      feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    elif isinstance(values[0], float):
      feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    else:
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
  return tf.train.Example(
      features=tf.train.Features(feature=feature)).SerializeToString()


def analyze_and_transform(rows, temp_dir: str):
  """(transformed rows, TFTransformOutput) of the movies preprocessing_fn
  run on raw ``rows`` with Transform's Beam API (instance dicts)."""
  metadata = tft.DatasetMetadata.from_feature_spec(raw_feature_spec())
  with tft_beam.Context(temp_dir=temp_dir, force_tf_compat_v1=False):
    (transformed, _), transform_fn = (
        (rows, metadata)
        | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
    _ = transform_fn | tft_beam.WriteTransformFn(temp_dir + '/transform_fn')
  return transformed, tft.TFTransformOutput(temp_dir + '/transform_fn')


def build_transform_output(root: str, train_rows: int = 480,
                           eval_rows: int = 160, seed: int = 1):
  """Writes examples and transform graph under ``root``; returns their dirs.

  ``seed`` draws the training rows (other seeds, other vocabularies).
  """
  metadata = tft.DatasetMetadata.from_feature_spec(raw_feature_spec())
  train = synthetic_rows(train_rows, seed=seed)
  evaluation = synthetic_rows(eval_rows, seed=2)
  examples_dir = os.path.join(root, 'examples')
  transform_dir = os.path.join(root, 'transform_graph')
  with tft_beam.Context(temp_dir=os.path.join(root, 'tmp')):
    (train_out, out_metadata), transform_fn = (
        (train, metadata)
        | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
    eval_out, _ = (((evaluation, metadata), transform_fn)
                   | tft_beam.TransformDataset())
    _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
  # Transform writes the raw schema too; serving parses requests with it.
  metadata_io.write_metadata(
      metadata, os.path.join(transform_dir,
                             tft.TFTransformOutput.RAW_METADATA_DIR))
  coder = tft.coders.ExampleProtoCoder(out_metadata.schema)
  for split, rows in (('train', train_out), ('eval', eval_out)):
    write_split(examples_dir, split, [coder.encode(row) for row in rows])
  for split, rows in (('train', train), ('eval', evaluation)):
    write_split(raw_examples_dir(examples_dir), split,
                [raw_example(row) for row in rows])
  return examples_dir, transform_dir


def write_split(examples_dir: str, split: str, records) -> None:
  """Writes serialized records as a TFX split folder of gzipped TFRecords."""
  split_dir = os.path.join(examples_dir, f'Split-{split}')
  tf.io.gfile.makedirs(split_dir)
  with tf.io.TFRecordWriter(os.path.join(split_dir, 'data.gz'),
                            options='GZIP') as writer:
    for record in records:
      writer.write(record)


def raw_examples_dir(examples_dir: str) -> str:
  """Where ``build_transform_output`` writes the raw examples' splits."""
  return examples_dir.rstrip('/') + '_raw'


def examples_artifact(examples_dir: str, splits=('train', 'eval')):
  """An Examples artifact over ``examples_dir``'s split folders."""
  examples = standard_artifacts.Examples()
  examples.uri = examples_dir
  examples.split_names = json.dumps(list(splits))
  return examples


def training_config(**overrides):
  """A quick TrainingConfig of the movies model for these examples."""
  values = dict(model_fn='pipelines.movies.model.build_model',
                label_key=features.TRANSFORMED_LABEL,
                raw_label_key=features.LABEL, train_steps=8, batch_size=16,
                checkpoint_every=8, log_every=4, shuffle_buffer=64, seed=7,
                export_projector=False)
  values.update(overrides)
  return config_lib.TrainingConfig(**values)


class FixedLengths:
  """Stands in for the embedding statistics: the cast's sequence length."""

  def recommended_max_sequence_lengths(self):
    return {features.transformed_name(features.CAST): 8}


def run_training(transform_run, root: str, base_model=None, **overrides):
  """``training.run_training`` of the movies spec on a fixture output.

  Writes ``root/run`` (the ModelRun) and ``root/model`` (the Model, with its
  warm-start state); ``base_model`` warm-starts from such a Model.
  """
  examples_dir, transform_dir = transform_run
  examples = examples_artifact(examples_dir)
  config = training_config(**overrides)
  return training.run_training(
      config, embedding_spec.create_embedding_spec(config.train_steps),
      tft.TFTransformOutput(transform_dir),
      inputs.split_files([examples], ['train']),
      inputs.split_files([examples], ['eval']),
      run_dir=os.path.join(root, 'run'),
      serving_dir=os.path.join(root, 'model', 'Format-Serving'),
      statistics=FixedLengths(), base_model=base_model)


def train_serving_model(examples_dir: str, transform_dir: str, root: str,
                        train_steps: int = 8) -> str:
  """Trains the movies model briefly on the CPU; returns the serving model dir."""
  return run_training((examples_dir, transform_dir), root,
                      train_steps=train_steps, checkpoint_every=train_steps,
                      log_every=train_steps).serving_model
