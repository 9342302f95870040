"""Engine selection, per-engine validation and inputs, without a TPU."""

import dataclasses
import os

import pytest
import tensorflow as tf
from tensorflow.python.tpu import tpu_hardware_feature

from components import embedding as emb
from components.trainer import engines
from components.trainer import inputs
from components.trainer import multihost

Feature = tpu_hardware_feature.HardwareFeature.EmbeddingFeature
_tpu = tf.tpu.experimental.embedding


@pytest.mark.parametrize('feature, engine', [
    (Feature.V1, 'v1'), (Feature.V2, 'v2'), (Feature.UNSUPPORTED, 'v0'),
    ('V2', 'v2')])
def test_engine_follows_the_embedding_feature(feature, engine):
  assert engines.select_engine(feature) == engine


def test_forced_engine():
  assert engines.select_engine(Feature.V2, 'v0') == 'v0'
  assert engines.select_engine(Feature.V1, 'v1') == 'v1'
  with pytest.raises(ValueError, match="embedding_engine='v2' needs .* V2.*"
                     "reports UNSUPPORTED"):
    engines.select_engine(Feature.UNSUPPORTED, 'v2')
  with pytest.raises(ValueError, match='must be one of'):
    engines.select_engine(Feature.V1, 'v3')
  with pytest.raises(ValueError, match='Unknown TPU embedding feature'):
    engines.select_engine('V9')


@pytest.mark.parametrize('tpu_type, engine', [
    ('v2-8', 'v1'), ('v3-8', 'v1'), ('v4-8', 'v1'), ('v5litepod-4', 'v0'),
    ('v5p-8', 'v2'), ('v6e-8', 'v2')])
def test_engine_per_generation(tpu_type, engine):
  assert engines.engine_for_tpu_type(tpu_type) == engine


def _spec(optimizer=None, columns=None):
  columns = columns or [
      emb.embedding_column(emb.categorical_column_with_identity('a', 100), 8),
      emb.embedding_column(
          emb.sequence_categorical_column_with_identity('s', 50), 4,
          max_sequence_length=3)]
  return emb.EmbeddingSpec(columns, optimizer or emb.Adagrad(0.1)).resolve()


def test_v2_arguments_equal_hand_built_configs():
  resolved = _spec()
  feature_config = resolved.compile()
  optimizer = resolved.compile_optimizer()
  name, arguments = engines.embedding_arguments(
      'v2', feature_config, optimizer, per_replica_batch=16,
      pipeline_execution_with_tensor_core=True)
  assert name == 'TPUEmbeddingV2'
  table_a = feature_config['a'].table
  table_s = feature_config['s'].table
  by_hand = {
      'a': _tpu.FeatureConfig(table=table_a, output_shape=[16], name='a'),
      's': _tpu.FeatureConfig(table=table_s, max_sequence_length=3,
                              output_shape=[16, 3], name='s')}
  got = arguments['feature_config']
  for key, expected in by_hand.items():
    assert got[key].table is expected.table and got[key].table.name
    assert got[key].output_shape == expected.output_shape
    assert got[key].max_sequence_length == expected.max_sequence_length
    assert got[key].name == expected.name
  assert arguments['optimizer'] is optimizer
  assert arguments['pipeline_execution_with_tensor_core'] is True
  with pytest.raises(RuntimeError, match='TPUEmbeddingV2 should be created '
                     'under TPUStrategy'):
    engines.build_embedding('v2', feature_config, optimizer, 16)


def test_v1_builds_on_cpu_and_v0_needs_a_tpu_strategy():
  resolved = _spec()
  feature_config = resolved.compile()
  optimizer = resolved.compile_optimizer()
  v1 = engines.build_embedding('v1', feature_config, optimizer, 16)
  by_hand = _tpu.TPUEmbedding(feature_config, optimizer)
  assert isinstance(v1, _tpu.TPUEmbedding)
  assert ({t.name: tuple(v.shape) for t, v in v1.embedding_tables.items()} ==
          {t.name: tuple(v.shape) for t, v in by_hand.embedding_tables.items()})
  name, arguments = engines.embedding_arguments('v0', feature_config,
                                                optimizer, 16)
  assert (name, arguments) == ('TPUEmbeddingV0', {
      'feature_config': feature_config, 'optimizer': optimizer})
  with pytest.raises(RuntimeError, match='TPUEmbeddingV0 should be created'):
    engines.build_embedding('v0', feature_config, optimizer, 16)
  with pytest.raises(ValueError, match='Unknown engine'):
    engines.embedding_arguments('v7', feature_config, optimizer, 16)


def test_batch_must_divide_over_replicas():
  assert engines.validation_errors('v1', _spec(), 64, 8) == []
  with pytest.raises(ValueError, match='batch_size=60 is not divisible by the '
                     '8 TPU replicas; use a multiple of 8'):
    engines.validate('v1', _spec(), 60, 8)


def test_table_names_are_checked_on_every_engine():
  # The library sanitises the names it derives; a hand-built spec may not.
  resolved = _spec()
  table = dataclasses.replace(resolved.tables['a_embedding'], name='a:b')
  resolved = dataclasses.replace(resolved, tables={'a:b': table})
  for engine in engines.ENGINES:
    with pytest.raises(ValueError, match="Table 'a:b': TPU table names"):
      engines.validate(engine, resolved, 8, 8)


@pytest.mark.parametrize('optimizer, message', [
    (emb.Adagrad(0.1, clipvalue=1.0), r'Adagrad.clipvalue=.*on SparseCore'),
    (emb.SGD(0.1, clip_weight_min=-1.0), r'SGD.clip_weight_min'),
    (emb.SGD(0.1, weight_decay_factor=0.1), r'SGD.weight_decay_factor'),
    (emb.Adam(0.1, lazy_adam=False), r'lazy_adam=False.*set lazy_adam=True'),
])
def test_v2_refuses_options_its_kernels_ignore(optimizer, message):
  resolved = _spec(optimizer)
  assert engines.validation_errors('v1', resolved, 8, 8) == []
  with pytest.raises(ValueError, match=message):
    engines.validate('v2', resolved, 8, 8)


def test_v2_refuses_int32_overflowing_tables():
  resolved = _spec(columns=[emb.embedding_column(
      emb.categorical_column_with_identity('huge', 2 ** 31 + 5), 8)])
  with pytest.raises(ValueError, match=r"Table 'huge_embedding' has "
                     r'2,147,483,653 rows; SparseCore ids are int32'):
    engines.validate('v2', resolved, 8, 8)


def test_v2_refuses_weights_on_this_tf():
  column = emb.weighted_categorical_column(
      emb.categorical_column_with_identity('w', 10), 'w_weight')
  resolved = _spec(columns=[emb.embedding_column(column, 4)])
  errors = engines.validation_errors('v2', resolved, 8, 8)
  if engines._v2_weights_supported():  # pylint: disable=protected-access
    assert errors == []
  else:
    assert any("Feature 'w' is weighted ('w_weight')" in e for e in errors)


def test_v2_samples_must_divide_over_the_sparse_cores():
  # 8 replicas, batch 24 -> 3 per replica; bag 3 samples, sequence 3 x 3.
  with pytest.raises(ValueError, match=r"Feature 'a': 3 samples per replica.*"
                     r'4 SparseCores'):
    engines.validate('v2', _spec(), 24, 8, sparse_cores_per_chip=4)
  engines.validate('v2', _spec(), 32, 8, sparse_cores_per_chip=4)


def test_v0_refuses_what_the_update_rules_cannot_do():
  resolved = _spec(emb.FTRL(0.1, weight_decay_factor=0.1))
  with pytest.raises(ValueError, match='Engine v0 applies .*weight_decay'):
    engines.validate('v0', resolved, 8, 8)


def test_v2_sequence_input_is_one_id_per_position():
  ids = tf.ragged.constant([[3, 1, 4, 1], [], [5]], dtype=tf.int64)
  laid_out = engines.v2_sequence_input(ids, 3)
  assert laid_out.to_list() == [[3], [1], [4], [], [], [], [5], [], []]
  features = engines.v2_inputs({'s': ids, 'a': ids},
                               {'s': _tpu.FeatureConfig(
                                   _tpu.TableConfig(10, 4, name='t'),
                                   max_sequence_length=3),
                                'a': _tpu.FeatureConfig(
                                    _tpu.TableConfig(10, 4, name='u'))})
  assert features['a'] is ids
  assert features['s'].nrows() == 9


def _limits():
  return engines.SparseCoreLimits.from_dict({
      'tables': {'a_embedding': {'max_ids_per_partition': 32,
                                 'max_unique_ids_per_partition': 16,
                                 'share_dropped_by_defaults': 0.02},
                 's_embedding': {'max_ids_per_partition': 8,
                                 'max_unique_ids_per_partition': 8}},
      'max_ids_per_chip_per_sample': 96})


def test_sparse_core_limits_are_checked():
  _limits().check(['a_embedding', 's_embedding'])
  with pytest.raises(ValueError, match="limits name table 'a_embedding', "
                     'which the spec does not have'):
    _limits().check(['s_embedding'])
  bad = engines.SparseCoreLimits({'t': {'max_ids_per_partition': 0,
                                        'max_unique_ids_per_partition': 1}})
  with pytest.raises(ValueError, match="table 't': max_ids_per_partition "
                     'must be an int > 0'):
    bad.check(['t'])
  with pytest.raises(ValueError, match='max_ids_per_chip_per_sample must'):
    engines.SparseCoreLimits({}, -1).check([])


def test_sparse_core_config_on_a_tf_that_has_it():

  class NewerTf:

    class SparseCoreEmbeddingConfig:

      def __init__(self, disable_table_stacking=False,
                   max_ids_per_chip_per_sample=64, max_ids_per_table=None,
                   max_unique_ids_per_table=None, allow_id_dropping=False,
                   initialize_tables_on_host=True):
        self.arguments = dict(
            max_ids_per_chip_per_sample=max_ids_per_chip_per_sample,
            max_ids_per_table=max_ids_per_table,
            max_unique_ids_per_table=max_unique_ids_per_table,
            allow_id_dropping=allow_id_dropping)

  config = engines.sparse_core_config(_limits(), NewerTf)
  assert config.arguments == {
      'max_ids_per_chip_per_sample': 96,
      'max_ids_per_table': {'a_embedding': 32, 's_embedding': 8},
      'max_unique_ids_per_table': {'a_embedding': 16, 's_embedding': 8},
      'allow_id_dropping': False}
  assert engines.sparse_core_config(None, NewerTf) is None


def test_tf216_warns_that_fixed_defaults_apply():
  if hasattr(_tpu, 'SparseCoreEmbeddingConfig'):
    pytest.skip('this TF accepts SparseCore limits')
  assert engines.sparse_core_config(_limits()) is None
  warning = engines.tf216_limits_warning(_limits())
  assert 'max_ids_per_chip_per_sample=64' in warning
  assert 'needs max_ids_per_chip_per_sample=96' in warning
  assert "tables ['a_embedding']" in warning


def _write_records(path, count):
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for i in range(count):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          'x': tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
          'label': tf.train.Feature(
              float_list=tf.train.FloatList(value=[i % 2]))})
                                   ).SerializeToString())


def test_each_host_reads_a_disjoint_share_and_all_hosts_read_everything(
    tmp_path):
  path = str(tmp_path / 'data.gz')
  _write_records(path, 64)
  spec = {'x': tf.io.FixedLenFeature([], tf.int64),
          'label': tf.io.FixedLenFeature([], tf.float32)}
  global_batch, hosts, replicas = 16, 2, 8
  shares = []
  for host in range(hosts):
    context = tf.distribute.InputContext(
        num_input_pipelines=hosts, input_pipeline_id=host,
        num_replicas_in_sync=replicas)
    per_replica = context.get_per_replica_batch_size(global_batch)
    assert per_replica == global_batch // replicas
    dataset = inputs.make_dataset([path], spec, 'label', per_replica,
                                  training=False, input_context=context)
    values = []
    for features, _ in dataset:
      assert features['x'].shape == (per_replica,)
      values.extend(features['x'].numpy().tolist())
    shares.append(set(values))
  assert not shares[0] & shares[1]
  assert shares[0] | shares[1] == set(range(64))


def test_only_the_chief_writes():
  assert multihost.is_chief({})
  assert multihost.is_chief({'CLUSTER_SPEC': '{"task": {"type": '
                             '"workerpool0", "index": 0}}'})
  assert not multihost.is_chief({'CLUSTER_SPEC': '{"task": {"type": '
                                 '"workerpool0", "index": 3}}'})
  assert not multihost.is_chief({'TF_CONFIG': '{"task": {"index": 1}}'})
  assert multihost.task_index(dict(os.environ, CLUSTER_SPEC='',
                                   TF_CONFIG='')) == 0
  assert multihost.is_chief({'TF_CONFIG': '{}'})
