"""Tests of the warm start that follows the vocabulary (remapping by token)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.tpu import tpu_embedding_v3_utils
from tensorflow.python.trackable import base as trackable_base

from components import embedding as emb
from components.embedding import cpu_embedding
from components.trainer import config as config_lib
from components.trainer import inputs
from components.trainer import loop
from components.trainer import sparsecore_layouts
from components.trainer import training
from components.trainer import warm_start
from components.trainer import warm_start_state as state_lib
from pipelines.movies import embedding_spec
from pipelines.movies import features

import trainer_fixture

_DIM = 4
_STEP = tf.Variable(0, dtype=tf.int64)


def _spec(items, oov=2, dim=_DIM, crew=('ann', 'bob', 'cat'), id_buckets=5,
          optimizer=None, extra_table=False):
  """Items (vocabulary + OOV), a shared crew table, an identity table."""
  columns = [
      emb.embedding_column(emb.categorical_column_with_vocabulary_list(
          'items', list(items), num_oov_buckets=oov), dimension=dim,
          table_name='items'),
      emb.embedding_column(emb.categorical_column_with_identity(
          'ids', id_buckets), dimension=_DIM, table_name='ids'),
  ]
  columns += emb.shared_embedding_columns(
      [emb.categorical_column_with_vocabulary_list('director', list(crew)),
       emb.categorical_column_with_vocabulary_list('writer', list(crew))],
      dimension=_DIM, shared_embedding_collection_name='crew')
  if extra_table:
    columns.append(emb.embedding_column(
        emb.categorical_column_with_identity('old', 3), dimension=_DIM,
        table_name='old'))
  return emb.EmbeddingSpec(columns=columns,
                           optimizer=optimizer or emb.Adagrad(0.1)).resolve()


def _distinct_tables(resolved):
  """A built CpuEmbedding whose every row and slot value is distinct; its
  arrays by (table, variable)."""
  embedding = cpu_embedding.CpuEmbedding(resolved.compile(_STEP))
  embedding.build()
  arrays = {}
  for offset, table in enumerate(embedding.tables):
    for index, (name, variable) in enumerate(sorted(
        embedding._table_variables(table).items())):  # pylint: disable=protected-access
      value = (np.arange(np.prod(variable.shape), dtype=np.float32).reshape(
          variable.shape) + 1000 * (10 * offset + index) + 1)
      variable.assign(value)
      arrays[table.name, name] = value
  return embedding, arrays


def _base(tmp_path, resolved):
  """A base model whose every row and slot value is distinct; its arrays."""
  embedding, arrays = _distinct_tables(resolved)
  path = tf.train.Checkpoint(embedding=embedding).write(
      str(tmp_path / 'train' / 'ckpt'))
  state_dir = str(tmp_path / 'base' / state_lib.STATE_DIR)
  assert state_lib.save_state(state_dir, resolved, None, path)
  return state_lib.BaseModel.load(str(tmp_path / 'base')), arrays


def _remap(base, resolved, on_mismatch='error'):
  staging, plans = warm_start.remap_tables(
      base, resolved.compile(_STEP), state_lib.table_rows(resolved, None),
      on_mismatch)
  values = {(t.name, k): v.numpy() for t in staging.tables
            for k, v in staging._table_variables(t).items()}  # pylint: disable=protected-access
  return values, plans


def test_token_sources_find_each_token_row():
  old = np.array([b'a', b'b', b'c', b'd'])
  new = np.array([b'd', b'e', b'a'])
  np.testing.assert_array_equal(warm_start.token_sources(old, new), [3, -1, 0])
  np.testing.assert_array_equal(
      warm_start.token_sources(old[:0], new), [-1, -1, -1])


def test_vocabulary_rows_and_slots_follow_their_tokens(tmp_path):
  base, arrays = _base(tmp_path, _spec(['a', 'b', 'c', 'd']))
  values, plans = _remap(base, _spec(['d', 'e', 'a']))
  plan = plans['items']
  assert (plan.rows.rows_kept, plan.rows.rows_new,
          plan.rows.rows_dropped) == (2, 1, 2)
  assert plan.rows.oov_buckets == 'kept'
  for variable in ('parameters', 'accumulators'):
    old, new = arrays['items', variable], values['items', variable]
    np.testing.assert_array_equal(new[0], old[3])   # d
    np.testing.assert_array_equal(new[2], old[0])   # a
    np.testing.assert_array_equal(new[3:5], old[4:6])  # OOV buckets kept
  # The new token 'e': the initializer's row and Adagrad's initial slot.
  assert not np.isin(values['items', 'parameters'][1],
                     arrays['items', 'parameters']).any()
  np.testing.assert_allclose(values['items', 'accumulators'][1], 0.1)


def test_changed_oov_buckets_are_reinitialized(tmp_path):
  base, arrays = _base(tmp_path, _spec(['a', 'b'], oov=2))
  values, plans = _remap(base, _spec(['b', 'a'], oov=3))
  assert plans['items'].rows.oov_buckets == 'reinitialized'
  old = arrays['items', 'parameters']
  np.testing.assert_array_equal(values['items', 'parameters'][:2], old[[1, 0]])
  np.testing.assert_allclose(values['items', 'accumulators'][2:], 0.1)
  assert not np.isin(values['items', 'parameters'][2:], old).any()


def test_shared_table_remaps_through_its_shared_vocabulary(tmp_path):
  base, arrays = _base(tmp_path, _spec(['a'], crew=('ann', 'bob', 'cat')))
  values, plans = _remap(base, _spec(['a'], crew=('cat', 'dan', 'ann')))
  assert plans['crew'].status == 'warm'
  assert (plans['crew'].rows.rows_kept, plans['crew'].rows.rows_new,
          plans['crew'].rows.rows_dropped) == (2, 1, 1)
  for variable in ('parameters', 'accumulators'):
    old, new = arrays['crew', variable], values['crew', variable]
    np.testing.assert_array_equal(new[0], old[2])
    np.testing.assert_array_equal(new[2], old[0])
  np.testing.assert_allclose(values['crew', 'accumulators'][1], 0.1)


@pytest.mark.parametrize('buckets', [3, 7])
def test_identity_rows_are_kept_by_id(tmp_path, buckets):
  base, arrays = _base(tmp_path, _spec(['a'], id_buckets=5))
  values, plans = _remap(base, _spec(['a'], id_buckets=buckets))
  kept = min(5, buckets)
  rows = plans['ids'].rows
  assert (rows.rows_kept, rows.rows_new, rows.rows_dropped) == (
      kept, buckets - kept, 5 - kept)
  np.testing.assert_array_equal(values['ids', 'parameters'][:kept],
                                arrays['ids', 'parameters'][:kept])
  np.testing.assert_allclose(values['ids', 'accumulators'][kept:], 0.1)


def test_new_and_vanished_tables(tmp_path):
  base, _ = _base(tmp_path, _spec(['a'], extra_table=True))
  staging, plans = warm_start.remap_tables(
      base, _spec(['a']).compile(_STEP),
      state_lib.table_rows(_spec(['a']), None))
  assert 'old' not in plans and staging is not None
  result = warm_start.report('base', plans, {}, 'restored',
                             sorted(set(base.tables) - set(plans)))
  assert result['tables_dropped'] == ['old']
  base2, _ = _base(tmp_path / 'second', _spec(['a']))
  _, plans = _remap(base2, _spec(['a'], extra_table=True))
  assert plans['old'].status == 'fresh'
  assert plans['old'].rows.rows_new == 3


def test_changed_dimension_is_refused_or_fresh(tmp_path):
  base, _ = _base(tmp_path, _spec(['a', 'b']))
  with pytest.raises(ValueError, match=r"table 'items' changed dimension "
                     r'from 4 to 8.*warm_start_on_mismatch'):
    _remap(base, _spec(['a', 'b'], dim=8))
  values, plans = _remap(base, _spec(['a', 'b'], dim=8), on_mismatch='fresh')
  assert plans['items'].status == 'fresh'
  assert values['items', 'parameters'].shape == (4, 8)
  assert plans['crew'].status == 'warm'


def test_other_optimizer_is_refused_or_keeps_rows_with_fresh_slots(tmp_path):
  base, arrays = _base(tmp_path, _spec(['a', 'b']))
  adam = emb.Adam(0.01)
  with pytest.raises(ValueError, match=r"slots \['momenta', 'velocities'\] "
                     'that the base optimizer Adagrad does not have'):
    _remap(base, _spec(['b', 'a'], optimizer=adam))
  values, plans = _remap(base, _spec(['b', 'a'], optimizer=adam),
                         on_mismatch='fresh')
  assert plans['items'].slots_fresh == ['momenta', 'velocities']
  np.testing.assert_array_equal(values['items', 'parameters'][:2],
                                arrays['items', 'parameters'][[1, 0]])
  np.testing.assert_array_equal(values['items', 'momenta'], 0.0)
  np.testing.assert_array_equal(values['items', 'velocities'], 0.0)


def test_base_without_state_is_refused(tmp_path):
  with pytest.raises(ValueError, match='has no warm_start/manifest.json'):
    state_lib.BaseModel.load(str(tmp_path))


def test_dense_differences_name_what_changed():
  changes = warm_start.dense_differences(
      {'model/a': [2, 3], 'model/b': [3]}, {'model/a': [2, 4], 'model/c': [1]})
  assert changes == ['model/c is new', 'model/b is gone',
                     'model/a changed shape [2, 3] -> [2, 4]']


def test_config_refuses_unknown_mismatch_policy():
  with pytest.raises(ValueError, match='warm_start_on_mismatch'):
    config_lib.TrainingConfig(model_fn='a.b', label_key='y',
                              warm_start_on_mismatch='ignore')


# Two runs on Transform outputs with different vocabularies.

_LENGTHS = {features.transformed_name(features.CAST): 8}


def _run(transform_run, root, **kwargs):
  return trainer_fixture.run_training(transform_run, root, **kwargs)


@pytest.fixture(scope='module')
def two_vocabularies(tmp_path_factory):
  """A small first Transform output and a larger one with more tokens."""
  first = trainer_fixture.build_transform_output(
      str(tmp_path_factory.mktemp('first')), train_rows=40, eval_rows=32,
      seed=5)
  second = trainer_fixture.build_transform_output(
      str(tmp_path_factory.mktemp('second')))
  return first, second


@pytest.fixture(scope='module')
def first_run(two_vocabularies, tmp_path_factory):
  root = str(tmp_path_factory.mktemp('run1'))
  result = _run(two_vocabularies[0], root)
  return root, result


def _resolved(transform_run):
  output = tft.TFTransformOutput(transform_run[1])
  resolved = embedding_spec.create_embedding_spec(8).resolve(
      tf_transform_output=output, max_sequence_lengths=_LENGTHS)
  return resolved, output


@pytest.mark.slow
def test_second_run_starts_from_first_runs_rows(two_vocabularies, first_run,
                                                tmp_path):
  root, _ = first_run
  base = state_lib.BaseModel.load(os.path.join(root, 'model'))
  resolved, output = _resolved(two_vocabularies[1])
  rows = state_lib.table_rows(resolved, output)
  feature_config = resolved.compile(_STEP)
  embedding = cpu_embedding.CpuEmbedding(feature_config)
  result = warm_start.apply(
      os.path.join(root, 'model'), embedding, None, resolved, feature_config,
      _dense_keys(two_vocabularies[1]), rows, str(tmp_path), str(tmp_path),
      warm_start_dense=False)
  embedding.build()
  cast = resolved.features[features.transformed_name(features.CAST)].table_name
  table = next(t for t in embedding.tables if t.name == cast)
  values = embedding._table_variables(table)  # pylint: disable=protected-access
  old_rows, new_rows = base.rows(cast), rows[cast]
  report = result['tables'][cast]
  assert report['rows_kept'] > 0 and report['rows_new'] > 0
  old_index = {t: i for i, t in enumerate(old_rows.tokens.tolist())}
  kept = 0
  for new_row, token in enumerate(new_rows.tokens.tolist()):
    if token in old_index:
      kept += 1
      for variable in ('parameters', 'accumulators'):
        np.testing.assert_array_equal(
            values[variable].numpy()[new_row],
            base.values(cast, variable)[old_index[token]], err_msg=token)
    else:
      np.testing.assert_allclose(values['accumulators'].numpy()[new_row], 0.1)
  assert kept == report['rows_kept']


def _dense_keys(transform_run):
  output = tft.TFTransformOutput(transform_run[1])
  resolved, _ = _resolved(transform_run)
  return inputs.dense_feature_keys(output.transformed_feature_spec(),
                                   features.TRANSFORMED_LABEL,
                                   list(resolved.features))


@pytest.mark.slow
def test_warm_run_reports_and_restores_the_dense_model(two_vocabularies,
                                                       first_run, tmp_path):
  root, first = first_run
  result = _run(two_vocabularies[1], str(tmp_path),
                base_model=os.path.join(root, 'model'))
  report = result.warm_start
  resolved, _ = _resolved(two_vocabularies[1])
  cast = resolved.features[features.transformed_name(features.CAST)].table_name
  assert report['dense'] == 'restored'
  assert set(report['tables']) == set(resolved.tables)
  for table in report['tables'].values():
    assert table['status'] == 'warm'
    assert 0.0 < table['warm_id_share'] <= 1.0
  saved = training.TrainingResult.load(os.path.join(str(tmp_path), 'run'))
  assert saved.warm_start == report
  events = tf.io.gfile.glob(os.path.join(str(tmp_path), 'run', loop.LOG_DIR,
                                         'train', 'events*'))
  tags = {value.tag for path in events
          for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value}
  assert f'warm_start/{cast}/rows_kept' in tags
  assert f'warm_start/{cast}/warm_id_share' in tags
  # Its own state is there for the next run.
  manifest = json.load(open(os.path.join(
      str(tmp_path), 'model', state_lib.STATE_DIR, state_lib.MANIFEST_FILE)))
  assert manifest['tables'][cast]['slots'] == ['accumulators']
  assert first.warm_start == {}


@pytest.mark.slow
def test_changed_dense_model_is_refused(two_vocabularies, first_run, tmp_path,
                                        monkeypatch):
  root, _ = first_run
  base = os.path.join(root, 'model')
  manifest_path = os.path.join(base, state_lib.STATE_DIR,
                               state_lib.MANIFEST_FILE)
  manifest = json.load(open(manifest_path))
  manifest['dense_variables']['model/extra/.ATTRIBUTES/VARIABLE_VALUE'] = [3]
  changed = tmp_path / 'changed'
  tf.io.gfile.makedirs(str(changed))
  for name in tf.io.gfile.listdir(os.path.join(base, state_lib.STATE_DIR)):
    source = os.path.join(base, state_lib.STATE_DIR, name)
    if tf.io.gfile.isdir(source):
      os.symlink(source, str(changed / name.rstrip('/')))
  with open(changed / state_lib.MANIFEST_FILE, 'w') as f:
    json.dump(manifest, f)
  with pytest.raises(ValueError, match='extra.*is gone.*warm_start_dense'):
    _run(two_vocabularies[1], str(tmp_path / 'run'), base_model=str(changed))


def test_pipeline_feeds_the_latest_model_as_base_model(tmp_path):
  from pipelines import builder  # pylint: disable=g-import-not-at-top
  from pipelines.movies import pipeline  # pylint: disable=g-import-not-at-top
  cold = pipeline.create_pipeline('movies', str(tmp_path))
  warm = pipeline.create_pipeline('movies', str(tmp_path), warm_start=True,
                                  until_year=2005)
  assert builder.BASE_MODEL_RESOLVER not in {c.id for c in cold.components}
  nodes = {c.id: c for c in warm.components}
  trainer = nodes[builder.TRAINER]
  resolver = nodes[builder.BASE_MODEL_RESOLVER]
  assert trainer.inputs['base_model'].type_name == 'Model'
  assert resolver in trainer.upstream_nodes
  assert 'WHERE year <= 2005' in str(
      nodes['MoviesExampleGen'].exec_properties['input_config'])


def test_token_with_line_break_writes_no_state(tmp_path):
  resolved = _spec(['a', 'b\nc'])
  embedding = cpu_embedding.CpuEmbedding(resolved.compile(_STEP))
  embedding.build()
  path = tf.train.Checkpoint(embedding=embedding).write(str(tmp_path / 'c'))
  assert state_lib.save_state(str(tmp_path / 's'), resolved, None, path) is None
  with pytest.raises(ValueError, match='no warm_start/manifest.json'):
    state_lib.BaseModel.load(str(tmp_path / 's'))


_SPARSE_CORES = 16


def _sparse_core_layouts(embedding):
  """The tables of `embedding` in one V2 stack over 16 SparseCores: rows
  padded to 128, widths to 8, each table rotated by 4 from the last."""
  return [sparsecore_layouts.TableLayout(
      table_name=table.name, stacked_table_name='stack',
      shape=(table.vocabulary_size, table.dim), padded_shape=(128, 8),
      stack_row_offset=128 * index, rotation=4 * index,
      num_sparse_cores=_SPARSE_CORES)
          for index, table in enumerate(embedding.tables)]


def test_a_v2_model_is_a_base_model(tmp_path):
  """Its checkpoint holds stacked tables and slots and their layouts; the
  base model reads each table and slot back."""
  resolved = _spec(['a', 'b', 'c', 'd'])
  embedding, arrays = _distinct_tables(resolved)
  layouts = _sparse_core_layouts(embedding)
  values = {table: {} for table, _ in arrays}
  for (table, variable), value in arrays.items():
    values[table][variable] = value
  holder = trackable_base.Trackable()
  for name, value in sparsecore_layouts.stacked_values(values,
                                                       layouts).items():
    holder._track_trackable(tf.Variable(value), name)  # pylint: disable=protected-access
  holder._track_trackable(tpu_embedding_v3_utils.SparseCoreLayoutsTrackable(  # pylint: disable=protected-access
      tf.constant(sparsecore_layouts.to_proto(layouts).SerializeToString())),
                          sparsecore_layouts.LAYOUTS_KEY)
  path = tf.train.Checkpoint(embedding=holder).write(str(tmp_path / 'ckpt'))
  state_dir = str(tmp_path / 'base' / state_lib.STATE_DIR)
  assert state_lib.save_state(state_dir, resolved, None, path)
  base = state_lib.BaseModel.load(str(tmp_path / 'base'))
  assert 'checkpoint_keys' not in base.tables['items']  # Stacked keys only.
  for (table, variable), value in arrays.items():
    np.testing.assert_array_equal(base.values(table, variable), value)
  remapped, plans = _remap(base, _spec(['d', 'e', 'a']))
  assert plans['items'].rows.rows_kept == 2
  np.testing.assert_array_equal(remapped['items', 'accumulators'][0],
                                arrays['items', 'accumulators'][3])  # d


def test_a_v2_run_gets_its_remapped_tables_stacked(tmp_path):
  """The staged checkpoint holds, under the V2 names, each table and slot
  where V2 keeps its rows (read back with TensorFlow's own unshuffle)."""
  resolved = _spec(['a', 'b', 'c', 'd'])
  staging, arrays = _distinct_tables(resolved)

  class _V2:
    embedding_layouts = {
        proto.table_name: proto for proto in sparsecore_layouts.to_proto(
            _sparse_core_layouts(staging)).tables}

  path = warm_start._write_staged_tables(  # pylint: disable=protected-access
      staging, _V2(), 'v2', str(tmp_path / 'tables'))
  reader = tf.train.load_checkpoint(path)
  for index, table in enumerate(staging.tables):
    for variable in ('parameters', 'accumulators'):
      key = state_lib.checkpoint_key(
          'stack', None if variable == 'parameters' else variable)
      unshuffled = tpu_embedding_v3_utils.unshuffle_from_sc_to_cpu(
          tf.constant(reader.get_tensor(key)), _SPARSE_CORES, 8 * index, 8,
          4 * index).numpy()
      rows, dim = arrays[table.name, variable].shape
      np.testing.assert_array_equal(unshuffled[:rows, :dim],
                                    arrays[table.name, variable])
