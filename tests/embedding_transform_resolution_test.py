"""Resolution of Transform-vocabulary columns against a real Transform output.

The module fixture runs `tft_beam.AnalyzeAndTransformDataset` on a few rows
and writes the transform graph with `tft_beam.WriteTransformFn`; the tests
read it back with `tft.TFTransformOutput`, as the trainer does.
"""

import logging
import tempfile

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from components import embedding as emb

_ROWS = [
    {'genre': 'drama', 'tags': ['a', 'b'], 'liked': ['a'],
     'title': ['the', 'big', 'sleep'], 'user_id': 1},
    {'genre': 'comedy', 'tags': ['c'], 'liked': [],
     'title': ['some', 'like', 'it', 'hot'], 'user_id': 2},
    {'genre': 'drama', 'tags': ['a', 'd'], 'liked': ['d', 'b'],
     'title': ['big'], 'user_id': 3},
    {'genre': 'horror', 'tags': [], 'liked': ['c'],
     'title': ['alien'], 'user_id': 4},
]
_RAW_SPEC = {
    'genre': tf.io.FixedLenFeature([], tf.string),
    'tags': tf.io.VarLenFeature(tf.string),
    'liked': tf.io.VarLenFeature(tf.string),
    'title': tf.io.VarLenFeature(tf.string),
    'user_id': tf.io.FixedLenFeature([], tf.int64),
}
_GENRES, _TAGS, _TITLE_WORDS = 3, 4, 8


def _preprocessing_fn(inputs):
  tags = tft.vocabulary(inputs['tags'], vocab_filename='tags')
  title = tft.compute_and_apply_vocabulary(
      inputs['title'], num_oov_buckets=1, vocab_filename='title')
  return {
      'genre_id': tft.compute_and_apply_vocabulary(
          inputs['genre'], num_oov_buckets=2, vocab_filename='genre'),
      'tags_id': tft.apply_vocabulary(inputs['tags'], tags),
      'tags_oov': tft.apply_vocabulary(inputs['tags'], tags,
                                       num_oov_buckets=1),
      'liked_oov': tft.apply_vocabulary(inputs['liked'], tags,
                                        num_oov_buckets=1),
      'title_seq': tf.RaggedTensor.from_sparse(title),
      'user_id': inputs['user_id'],
  }


@pytest.fixture(scope='module')
def tft_output(tmp_path_factory):
  output_dir = str(tmp_path_factory.mktemp('transform_output'))
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(_RAW_SPEC))
  with tft_beam.Context(temp_dir=tempfile.mkdtemp(
      dir=str(tmp_path_factory.getbasetemp()))):
    with beam.Pipeline() as pipeline:
      rows = pipeline | beam.Create(_ROWS)
      _, transform_fn = ((rows, metadata)
                         | tft_beam.AnalyzeAndTransformDataset(
                             _preprocessing_fn))
      _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
  return tft.TFTransformOutput(output_dir)


def _column(key, vocabulary, dimension=4, **kwargs):
  return emb.embedding_column(
      emb.categorical_column_with_transform_vocabulary(key, vocabulary),
      dimension, **kwargs)


def _spec(*columns):
  return emb.EmbeddingSpec(list(columns), emb.Adagrad(learning_rate=0.1))


def test_transform_output_is_what_the_resolution_reads(tft_output):
  assert tft_output.vocabulary_size_by_name('genre') == _GENRES
  assert tft_output.vocabulary_size_by_name('tags') == _TAGS
  domains = tft_output.transformed_domains()
  assert (domains['genre_id'].min, domains['genre_id'].max) == (0, 4)
  assert (domains['tags_id'].min, domains['tags_id'].max) == (-1, 3)
  assert (domains['title_seq'].min, domains['title_seq'].max) == (0, 8)


def test_oov_buckets_are_read_from_the_schema_domain(tft_output):
  sequence = emb.embedding_column(
      emb.sequence_categorical_column_with_transform_vocabulary(
          'title_seq', 'title'), 8, max_sequence_length='auto')
  resolved = _spec(_column('genre_id', 'genre'), sequence).resolve(
      tf_transform_output=tft_output,
      max_sequence_lengths={'title_seq': 6})
  genre = resolved.features['genre_id']
  assert (genre.vocabulary_size, genre.num_oov_buckets) == (_GENRES + 2, 2)
  assert (genre.default_value, genre.kind) == (None, 'transform_vocabulary')
  title = resolved.features['title_seq']
  assert (title.vocabulary_size, title.num_oov_buckets) == (_TITLE_WORDS + 1, 1)
  assert (title.is_sequence, title.max_sequence_length) == (True, 6)
  compiled = resolved.compile()
  assert compiled['genre_id'].table.vocabulary_size == _GENRES + 2
  assert compiled['title_seq'].table.vocabulary_size == _TITLE_WORDS + 1
  assert compiled['title_seq'].max_sequence_length == 6


def test_vocabulary_without_oov_buckets_ignores_unseen_tokens(tft_output,
                                                              caplog):
  with caplog.at_level(logging.WARNING):
    feature = _spec(_column('tags_id', 'tags')).resolve(
        tf_transform_output=tft_output).features['tags_id']
  assert (feature.vocabulary_size, feature.num_oov_buckets) == (_TAGS, 0)
  assert feature.default_value == -1
  assert 'num_oov_buckets >= 1' in caplog.text


def test_shared_columns_on_one_vocabulary(tft_output):
  columns = emb.shared_embedding_columns(
      [emb.categorical_column_with_transform_vocabulary('tags_oov', 'tags'),
       emb.categorical_column_with_transform_vocabulary('liked_oov', 'tags')],
      dimension=4)
  resolved = _spec(*columns).resolve(tf_transform_output=tft_output)
  (table,) = resolved.tables.values()
  assert (table.name, table.vocabulary_size) == (
      'liked_oov_tags_oov_shared_embedding', _TAGS + 1)
  assert table.feature_keys == ('tags_oov', 'liked_oov')


def test_shared_columns_of_different_sizes_fail_at_resolution(tft_output):
  columns = emb.shared_embedding_columns(
      [emb.categorical_column_with_transform_vocabulary('genre_id', 'genre'),
       emb.sequence_categorical_column_with_transform_vocabulary(
           'title_seq', 'title')],
      dimension=4, max_sequence_lengths=[0, 3])
  with pytest.raises(ValueError, match=r"same vocabulary size.*'genre_id': 5, "
                     r"'title_seq': 9"):
    _spec(*columns).resolve(tf_transform_output=tft_output)
  fixed = emb.shared_embedding_columns(
      [emb.categorical_column_with_transform_vocabulary('genre_id', 'genre'),
       emb.categorical_column_with_identity('user_id', 9)], dimension=4)
  with pytest.raises(ValueError, match=r"same vocabulary size.*'genre_id': 5, "
                     r"'user_id': 9"):
    _spec(*fixed).resolve(tf_transform_output=tft_output)
  same = emb.shared_embedding_columns(
      [emb.categorical_column_with_transform_vocabulary('genre_id', 'genre'),
       emb.categorical_column_with_identity('user_id', 5)], dimension=4)
  resolved = _spec(*same).resolve(tf_transform_output=tft_output)
  assert [t.vocabulary_size for t in resolved.tables.values()] == [5]


def test_resolution_errors(tft_output):
  with pytest.raises(ValueError, match="no vocabulary named 'genres'"):
    _spec(_column('genre_id', 'genres')).resolve(
        tf_transform_output=tft_output)
  with pytest.raises(ValueError, match="'user_id' has no integer domain"):
    _spec(_column('user_id', 'genre')).resolve(tf_transform_output=tft_output)
  with pytest.raises(ValueError, match=r"span \[0, 4\].*'title' of 8 tokens"):
    _spec(_column('genre_id', 'title')).resolve(tf_transform_output=tft_output)


def test_json_spec_resolves_like_the_original(tft_output):
  spec = _spec(_column('genre_id', 'genre'), _column('tags_oov', 'tags'))
  again = emb.EmbeddingSpec.from_json(spec.to_json())
  assert (again.resolve(tf_transform_output=tft_output).features ==
          spec.resolve(tf_transform_output=tft_output).features)
  assert again.transform_vocabularies() == {'genre_id': 'genre',
                                            'tags_oov': 'tags'}


def test_transformed_features_map_to_ids_in_range(tft_output):
  raw = {
      'genre': tf.constant(['drama', 'western']),
      'tags': tf.sparse.from_dense(tf.constant([['a', 'zz'], ['c', '']])),
      'liked': tf.sparse.from_dense(tf.constant([['b'], ['']])),
      'title': tf.sparse.from_dense(tf.constant([['big', 'unknown'],
                                                 ['hot', '']])),
      'user_id': tf.constant([1, 2], tf.int64),
  }
  transformed = tft_output.transform_raw_features(raw)
  sequence = emb.embedding_column(
      emb.sequence_categorical_column_with_transform_vocabulary(
          'title_seq', 'title'), 4, max_sequence_length=3)
  resolved = _spec(_column('genre_id', 'genre'), _column('tags_id', 'tags'),
                   sequence).resolve(tf_transform_output=tft_output)
  ids, weights = resolved.id_mapper()(transformed)
  genre = ids['genre_id'].values.numpy().tolist()
  assert genre[0] < _GENRES and _GENRES <= genre[1] < _GENRES + 2
  # The unseen tag 'zz' has id -1 and is ignored; 'a' and 'c' remain.
  assert ids['tags_id'].indices.numpy().tolist() == [[0, 0], [1, 0]]
  assert all(0 <= v < _TAGS for v in ids['tags_id'].values.numpy())
  title = ids['title_seq'].values.numpy()
  assert len(title) == 3 and title[1] == _TITLE_WORDS
  assert weights == {'genre_id': None, 'tags_id': None, 'title_seq': None}
  lookup = tf.tpu.experimental.embedding.TPUEmbeddingForServing(
      resolved.compile(), resolved.compile_optimizer())
  out = lookup(ids)
  assert out['genre_id'].shape == (2, 4)
  assert out['title_seq'].shape == (2, 3, 4)


def test_out_of_range_transform_ids_raise(tft_output):
  resolved = _spec(_column('genre_id', 'genre')).resolve(
      tf_transform_output=tft_output)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'Feature `genre_id` has ids outside .*\[0, 5\)'):
    resolved.map_ids({'genre_id': tf.constant([1, 5], tf.int64)})
