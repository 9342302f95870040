"""Tests of EmbeddingSpec: validation, JSON, schedules, optimizers, compile."""

import json

import pytest
import tensorflow as tf

from components import embedding as emb

_TPU = tf.tpu.experimental.embedding


# This test module, whose functions the specs below name by dotted path.
THIS = [__name__]


def step_decay(global_step, factor=0.5):
  """A module-level schedule, serialisable by its dotted path."""
  return 0.2 * factor ** tf.cast(global_step, tf.float32)


def _identity(key, buckets=10):
  return emb.categorical_column_with_identity(key, buckets)


def _column(key, dimension=4, **kwargs):
  return emb.embedding_column(_identity(key), dimension, **kwargs)


def _float(value):
  return float(tf.convert_to_tensor(value).numpy())


# --- Spec validation. ---


def test_spec_rejects_duplicate_feature_keys():
  with pytest.raises(ValueError, match="Feature 'a' is embedded by two"):
    emb.EmbeddingSpec([_column('a'), _column('a', 8)], emb.SGD())


def test_spec_rejects_duplicate_table_names():
  with pytest.raises(ValueError, match="Duplicate table name 't'"):
    emb.EmbeddingSpec([_column('a', table_name='t'),
                       _column('b', table_name='t')], emb.SGD())
  shared = emb.shared_embedding_columns([_identity('x'), _identity('y')], 4)
  clash = _column('z', table_name='x_y_shared_embedding')
  with pytest.raises(ValueError, match='not declared together'):
    emb.EmbeddingSpec([*shared, clash], emb.SGD())
  # A derived name can collide with a shared group's name too.
  derived = _column('x_y_shared')
  with pytest.raises(ValueError, match="Duplicate table name "
                     "'x_y_shared_embedding'"):
    emb.EmbeddingSpec([*shared, derived], emb.SGD())


def test_spec_rejects_partial_shared_groups_and_bad_members():
  shared = emb.shared_embedding_columns([_identity('x'), _identity('y')], 4)
  with pytest.raises(ValueError, match=r"lacks \['y'\]"):
    emb.EmbeddingSpec([shared[0]], emb.SGD())
  with pytest.raises(TypeError, match='embedding_column'):
    emb.EmbeddingSpec([_identity('x')], emb.SGD())
  with pytest.raises(TypeError, match='optimizer'):
    emb.EmbeddingSpec([_column('a')], _TPU.SGD())
  with pytest.raises(ValueError, match='at least one'):
    emb.EmbeddingSpec([], emb.SGD())


def test_spec_rejects_weights_that_are_embedded_ids():
  weighted = emb.embedding_column(
      emb.weighted_categorical_column(_identity('a'), 'b'), 4)
  with pytest.raises(ValueError, match="Weight feature 'b'"):
    emb.EmbeddingSpec([weighted, _column('b')], emb.SGD())


# --- Optimizers. ---


@pytest.mark.parametrize('factory, message', [
    (lambda: emb.SGD(learning_rate=0), 'learning_rate'),
    (lambda: emb.SGD(learning_rate='fast'), 'learning_rate'),
    (lambda: emb.SGD(use_gradient_accumulation=False, clipvalue=1.0),
     'clipvalue'),
    (lambda: emb.SGD(clip_weight_min=1.0, clip_weight_max=0.0),
     'clip_weight_min'),
    (lambda: emb.Adagrad(initial_accumulator_value=0.0),
     'initial_accumulator_value'),
    (lambda: emb.AdagradMomentum(epsilon=0.0), 'epsilon'),
    (lambda: emb.AdagradMomentum(exponent=0.0), 'exponent'),
    (lambda: emb.FTRL(initial_accumulator_value=-1.0),
     'initial_accumulator_value'),
    (lambda: emb.FTRL(learning_rate_power=0.5), 'learning_rate_power'),
    (lambda: emb.FTRL(l1_regularization_strength=-1.0), 'regularization'),
    (lambda: emb.Adam(beta_1=1.0), 'beta_1'),
    (lambda: emb.Adam(beta_2=-0.1), 'beta_2'),
    (lambda: emb.Adam(epsilon=0.0), 'epsilon'),
    (lambda: emb.Adam(lazy_adam=False, use_gradient_accumulation=False),
     'lazy_adam'),
])
def test_optimizer_validation(factory, message):
  with pytest.raises(ValueError, match=message):
    factory()


@pytest.mark.parametrize('ours, theirs', [
    (emb.SGD(learning_rate=0.3, clipvalue=(-1.0, 2.0)),
     _TPU.SGD(learning_rate=0.3, clipvalue=(-1.0, 2.0))),
    (emb.Adagrad(learning_rate=0.2, initial_accumulator_value=0.5,
                 weight_decay_factor=0.1),
     _TPU.Adagrad(learning_rate=0.2, initial_accumulator_value=0.5,
                  weight_decay_factor=0.1)),
    (emb.AdagradMomentum(momentum=0.9, use_nesterov=True),
     _TPU.AdagradMomentum(momentum=0.9, use_nesterov=True)),
    (emb.FTRL(l1_regularization_strength=0.1, beta=0.2),
     _TPU.FTRL(l1_regularization_strength=0.1, beta=0.2)),
    (emb.Adam(beta_1=0.8, sum_inside_sqrt=False),
     _TPU.Adam(beta_1=0.8, sum_inside_sqrt=False)),
])
def test_optimizers_convert_to_tensorflow(ours, theirs):
  converted = ours.to_tf()
  assert type(converted) is type(theirs)
  assert vars(converted) == vars(theirs)


def test_optimizer_defaults_and_slots_match_tensorflow():
  assert emb.Adam().lazy_adam and emb.Adam().to_tf().lazy_adam
  assert [o.num_slots for o in (emb.SGD(), emb.Adagrad(), emb.Adam(),
                                emb.FTRL(), emb.AdagradMomentum())] == [
                                    0, 1, 2, 2, 2]
  for ours in (emb.SGD(), emb.Adagrad(), emb.Adam(), emb.FTRL(),
               emb.AdagradMomentum()):
    theirs = ours.to_tf()
    assert list(ours.SLOT_NAMES) == theirs._slot_names()
    assert vars(theirs) == vars(getattr(_TPU, type(ours).__name__)())


def test_optimizer_base_class_and_unknown_type_are_refused():
  with pytest.raises(TypeError, match='base class'):
    emb.EmbeddingOptimizer()
  with pytest.raises(ValueError, match="Unknown embedding optimizer type 'X'"):
    emb.EmbeddingOptimizer.from_config({'type': 'X'})


def test_optimizer_with_schedule_needs_replacement_learning_rate():
  optimizer = emb.Adagrad(
      learning_rate=emb.learning_rate_schedule('constant', learning_rate=0.1))
  with pytest.raises(ValueError, match='schedule of the global step'):
    optimizer.to_tf()


# --- Schedules and initializers. ---


def test_registered_schedules_follow_their_formulas():
  decay = emb.learning_rate_schedule('exponential_decay',
                                     initial_learning_rate=0.1,
                                     decay_steps=10, decay_rate=0.5)
  assert _float(decay(20)) == pytest.approx(0.025)
  stair = emb.learning_rate_schedule('exponential_decay',
                                     initial_learning_rate=0.1,
                                     decay_steps=10, decay_rate=0.5,
                                     staircase=True)
  assert _float(stair(15)) == pytest.approx(0.05)
  pieces = emb.learning_rate_schedule('piecewise_constant',
                                      boundaries=[10, 20],
                                      values=[1.0, 0.5, 0.1])
  assert [_float(pieces(s)) for s in (0, 10, 11, 20, 21)] == pytest.approx(
      [1.0, 1.0, 0.5, 0.5, 0.1])
  cosine = emb.learning_rate_schedule('linear_warmup_cosine_decay',
                                      peak_learning_rate=1.0,
                                      warmup_steps=10, decay_steps=100,
                                      alpha=0.1)
  assert [_float(cosine(s)) for s in (0, 5, 10, 60, 110, 500)] == (
      pytest.approx([0.0, 0.5, 1.0, 0.55, 0.1, 0.1]))
  assert _float(emb.learning_rate_schedule('constant', learning_rate=0.3)(
      7)) == pytest.approx(0.3)


@pytest.mark.parametrize('name, params, message', [
    ('cyclic', {}, 'neither a registered name nor a dotted path'),
    ('no_such_module.schedule', {}, 'is not allowed'),
    ('constant', {'learning_rate': 0.1, 'warmup': 3}, 'does not accept'),
    ('constant', {'learning_rate': -1}, 'must be a number > 0'),
    ('exponential_decay', {'initial_learning_rate': 0.1, 'decay_steps': 0,
                           'decay_rate': 0.5}, 'decay_steps'),
    ('piecewise_constant', {'boundaries': [1], 'values': [1.0]},
     'one more entry'),
    ('piecewise_constant', {'boundaries': [5, 1], 'values': [1, 2, 3]},
     'strictly increasing'),
    ('constant', {'learning_rate': tf.constant(0.1)}, 'JSON values'),
])
def test_schedule_errors(name, params, message):
  with pytest.raises(ValueError, match=message):
    emb.learning_rate_schedule(name, **params)


def test_initializer_errors_and_values():
  with pytest.raises(ValueError, match='does not accept'):
    emb.initializer('zeros', value=1.0)
  with pytest.raises(ValueError, match='stddev'):
    emb.initializer('random_normal', stddev=0.0)
  with pytest.raises(ValueError, match='minval'):
    emb.initializer('random_uniform', minval=1.0, maxval=0.0)
  values = emb.initializer('random_uniform', minval=2.0, maxval=3.0)(
      (50, 4)).numpy()
  assert values.min() >= 2.0 and values.max() < 3.0
  assert emb.initializer('constant', value=0.5)((2, 3)).numpy().tolist() == [
      [0.5] * 3] * 2


# --- JSON. ---


def _full_spec():
  shared = emb.shared_embedding_columns(
      [tf.feature_column.categorical_column_with_identity('s1', 9),
       emb.sequence_categorical_column_with_identity('s2', 9)],
      dimension=6, combiner='sqrtn', max_sequence_lengths=[0, 'auto'],
      initializer=emb.initializer('components.embedding.initializers.zeros'),
      learning_rate_fn=step_decay)
  return emb.EmbeddingSpec(
      columns=[
          emb.embedding_column(
              emb.weighted_categorical_column(
                  emb.categorical_column_with_vocabulary_list(
                      'w', ['a', 'b'], num_oov_buckets=2), 'w_weight'),
              4, combiner='sum',
              initializer=emb.initializer('random_uniform', minval=-0.1,
                                          maxval=0.1),
              learning_rate_fn=emb.learning_rate_schedule(
                  'piecewise_constant', boundaries=[100],
                  values=[0.1, 0.01])),
          emb.embedding_column(
              emb.categorical_column_with_vocabulary_file('f', 'gs://b/v.txt',
                                                          vocabulary_size=7),
              3, use_safe_embedding_lookup=False),
          emb.embedding_column(
              emb.sequence_categorical_column_with_transform_vocabulary(
                  't', 'titles'), 5, max_sequence_length=12,
              table_name='titles'),
          *shared,
      ],
      optimizer=emb.Adam(
          learning_rate=emb.learning_rate_schedule(
              'components.embedding.schedules.constant', learning_rate=0.2),
          clipvalue=1.5))


def test_json_round_trip():
  spec = _full_spec()
  text = spec.to_json()
  again = emb.EmbeddingSpec.from_json(text, allowed_module_prefixes=THIS)
  assert again.to_json() == text
  assert again.columns[0] == spec.columns[0]
  assert again.columns[1:3] == spec.columns[1:3]
  assert again.optimizer == spec.optimizer
  config = json.loads(text)
  assert config['optimizer']['learning_rate'] == {
      'path': 'components.embedding.schedules.constant',
      'params': {'learning_rate': 0.2}}
  assert config['optimizer']['clipvalue'] == 1.5
  clip = emb.SGD(clipvalue=(-1.0, None))
  assert clip.to_config()['clipvalue'] == [-1.0, None]
  assert emb.EmbeddingOptimizer.from_config(clip.to_config()) == clip
  shared = config['columns'][3]
  assert shared['learning_rate_fn'] == {
      'path': f'{__name__}.step_decay', 'params': {}}
  assert shared['initializer'] == {
      'path': 'components.embedding.initializers.zeros', 'params': {}}
  assert config['columns'][4]['max_sequence_length'] == 'auto'
  assert config['columns'][0]['initializer'] == {
      'name': 'random_uniform', 'params': {'minval': -0.1, 'maxval': 0.1}}


def test_round_tripped_callables_behave_like_the_originals():
  again = emb.EmbeddingSpec.from_json(_full_spec().to_json(),
                                      allowed_module_prefixes=THIS)
  fn = again.columns[3].learning_rate_fn
  assert _float(fn(2)) == pytest.approx(_float(step_decay(2)))
  assert _float(again.columns[0].learning_rate_fn(150)) == pytest.approx(0.01)
  zeros = again.columns[3].initializer((2, 6))
  assert zeros.numpy().sum() == 0.0


def test_json_rejects_lambdas_and_closures():
  def local_schedule(step):
    return 0.1

  for fn, where in ((lambda step: 0.1, 'learning_rate_fn'),
                    (local_schedule, 'learning_rate_fn')):
    spec = emb.EmbeddingSpec([_column('a', learning_rate_fn=fn)], emb.SGD())
    with pytest.raises(emb.SpecSerializationError,
                       match=f"{where} of column 'a' .*registered "
                       'learning-rate schedule.*dotted path'):
      spec.to_json()
  spec = emb.EmbeddingSpec(
      [_column('a', initializer=lambda shape, dtype=None: tf.zeros(shape))],
      emb.SGD())
  with pytest.raises(emb.SpecSerializationError, match="initializer of column "
                     "'a'.*truncated_normal"):
    spec.to_json()
  spec = emb.EmbeddingSpec([_column('a')],
                           emb.SGD(learning_rate=lambda step: 0.1))
  with pytest.raises(emb.SpecSerializationError, match='SGD.learning_rate'):
    spec.to_json()


def test_from_json_validates():
  config = json.loads(_full_spec().to_json())
  config['columns'][1]['dimension'] = 0
  with pytest.raises(ValueError, match='Invalid dimension 0'):
    emb.EmbeddingSpec.from_config(config, THIS)
  config = json.loads(_full_spec().to_json())
  config['format_version'] = 99
  with pytest.raises(ValueError, match='format_version'):
    emb.EmbeddingSpec.from_config(config, THIS)


# --- Resolution of sequence lengths. ---


def test_auto_sequence_length_is_resolved_from_statistics():
  column = emb.embedding_column(
      emb.sequence_categorical_column_with_identity('s', 5), 4,
      max_sequence_length='auto')
  spec = emb.EmbeddingSpec([column], emb.SGD())
  assert spec.resolve(max_sequence_lengths={'s': 7}).features[
      's'].max_sequence_length == 7
  assert spec.resolve(max_sequence_lengths={'s': 7}).compile()[
      's'].max_sequence_length == 7
  with pytest.raises(ValueError, match="'auto' but no recommended length.*"
                     r"\['other'\]"):
    spec.resolve(max_sequence_lengths={'other': 3})
  with pytest.raises(ValueError, match='lengths given for: None'):
    spec.resolve()
  with pytest.raises(ValueError, match="of 's' must be an int > 0"):
    spec.resolve(max_sequence_lengths={'s': 0})


def test_transform_columns_need_the_transform_output():
  column = emb.embedding_column(
      emb.categorical_column_with_transform_vocabulary('t', 'v'), 4)
  with pytest.raises(ValueError, match="'t' uses Transform vocabulary 'v'"):
    emb.EmbeddingSpec([column], emb.SGD()).resolve()


# --- Compiling. ---


def test_compiled_configs_equal_hand_built_ones():
  init = emb.initializer('random_normal', stddev=0.1)
  shared = emb.shared_embedding_columns(
      [_identity('x', 6), _identity('y', 6)], 3, combiner='sqrtn')
  spec = emb.EmbeddingSpec(
      [_column('a', 4, combiner='sum', initializer=init),
       emb.embedding_column(
           emb.sequence_categorical_column_with_vocabulary_list(
               's', ['p', 'q'], num_oov_buckets=1), 2,
           max_sequence_length=5),
       *shared],
      emb.Adagrad(learning_rate=0.5))
  compiled = spec.resolve().compile()
  optimizer = _TPU.Adagrad(learning_rate=0.5)
  table_a = _TPU.TableConfig(vocabulary_size=10, dim=4, initializer=init,
                             optimizer=optimizer, combiner='sum',
                             name='a_embedding')
  table_s = _TPU.TableConfig(vocabulary_size=3, dim=2, optimizer=optimizer,
                             combiner='mean', name='s_embedding')
  table_xy = _TPU.TableConfig(vocabulary_size=6, dim=3, optimizer=optimizer,
                              combiner='sqrtn', name='x_y_shared_embedding')
  expected = {
      'a': _TPU.FeatureConfig(table=table_a, name='a'),
      's': _TPU.FeatureConfig(table=table_s, max_sequence_length=5, name='s'),
      'x': _TPU.FeatureConfig(table=table_xy, name='x'),
      'y': _TPU.FeatureConfig(table=table_xy, name='y'),
  }
  assert list(compiled) == list(expected)
  for key, want in expected.items():
    got = compiled[key]
    assert (got.max_sequence_length, got.name,
            got.validate_weights_and_indices) == (
                want.max_sequence_length, want.name,
                want.validate_weights_and_indices)
    for field in ('vocabulary_size', 'dim', 'combiner', 'name'):
      assert getattr(got.table, field) == getattr(want.table, field)
    assert vars(got.table.optimizer) == vars(want.table.optimizer)
    assert type(got.table.initializer) is type(want.table.initializer)
  assert compiled['a'].table.initializer is init
  assert compiled['s'].table.initializer.get_config() == (
      table_s.initializer.get_config())
  assert compiled['s'].table.initializer.get_config()['stddev'] == (
      pytest.approx(1 / 2 ** 0.5))
  assert compiled['x'].table is compiled['y'].table


def test_learning_rate_fn_follows_the_global_step():
  decay = emb.learning_rate_schedule('exponential_decay',
                                     initial_learning_rate=1.0,
                                     decay_steps=1, decay_rate=0.5)
  spec = emb.EmbeddingSpec(
      [_column('a', learning_rate_fn=decay),
       _column('b', learning_rate_fn=decay),
       _column('c', learning_rate_fn=step_decay),
       _column('d')],
      emb.FTRL(learning_rate=0.3, beta=0.1))
  step = tf.Variable(0, dtype=tf.int64)
  compiled = spec.resolve().compile(step)
  rate = compiled['a'].table.optimizer.learning_rate
  other = compiled['c'].table.optimizer.learning_rate
  assert callable(rate)
  assert compiled['b'].table.optimizer is compiled['a'].table.optimizer
  assert compiled['d'].table.optimizer.learning_rate == 0.3
  assert isinstance(compiled['a'].table.optimizer, _TPU.FTRL)
  assert compiled['a'].table.optimizer.beta == 0.1
  for value in (0, 1, 3):
    step.assign(value)
    assert _float(rate()) == pytest.approx(0.5 ** value)
    assert _float(other()) == pytest.approx(0.2 * 0.5 ** value)


def test_spec_optimizer_schedule_is_bound_to_the_step():
  spec = emb.EmbeddingSpec(
      [_column('a')],
      emb.SGD(learning_rate=emb.learning_rate_schedule(
          'piecewise_constant', boundaries=[2], values=[1.0, 0.1])))
  resolved = spec.resolve()
  with pytest.raises(ValueError, match='pass global_step'):
    resolved.compile()
  step = tf.Variable(0, dtype=tf.int64)
  rate = resolved.compile(step)['a'].table.optimizer.learning_rate
  assert _float(rate()) == pytest.approx(1.0)
  step.assign(3)
  assert _float(rate()) == pytest.approx(0.1)
  assert _float(resolved.compile_optimizer(step).learning_rate()) == (
      pytest.approx(0.1))
  with pytest.raises(ValueError, match='integer variable'):
    resolved.compile(tf.Variable(0.0))


def test_resolved_features_describe_each_column():
  spec = emb.EmbeddingSpec(
      [emb.embedding_column(
          emb.weighted_categorical_column(_identity('a', 8), 'aw'), 4,
          combiner='sqrtn'),
       emb.embedding_column(
           emb.sequence_categorical_column_with_vocabulary_list(
               's', ['x', 'y']), 2, combiner='sum', max_sequence_length=3)],
      emb.SGD())
  features = spec.resolve().features
  assert features['a'] == emb.ResolvedFeature(
      feature_key='a', weight_key='aw', table_name='a_weighted_by_aw_embedding',
      vocabulary_size=8, num_oov_buckets=0, dimension=4, combiner='sqrtn',
      is_sequence=False, max_sequence_length=0, kind='identity',
      default_value=None, validate_weights_and_indices=True,
      column=_identity('a', 8))
  seq = features['s']
  assert (seq.combiner, seq.is_sequence, seq.max_sequence_length,
          seq.vocabulary_size, seq.default_value, seq.kind) == (
              None, True, 3, 2, -1, 'vocabulary_list')


# --- FTRL settings that would write NaN. ---


@pytest.mark.parametrize('schedule', [
    emb.learning_rate_schedule('linear_warmup_cosine_decay',
                               peak_learning_rate=0.1, warmup_steps=10,
                               decay_steps=100, alpha=0.1),
    emb.learning_rate_schedule('linear_warmup_cosine_decay',
                               peak_learning_rate=0.1, warmup_steps=0,
                               decay_steps=100),
    emb.learning_rate_schedule('piecewise_constant', boundaries=[10],
                               values=[0.1, 0.0]),
])
def test_ftrl_refuses_learning_rates_reaching_zero(schedule):
  with pytest.raises(ValueError, match='FTRL.learning_rate .* reaches 0.*'
                     'multiply_linear_by_learning_rate=True'):
    emb.FTRL(learning_rate=schedule)
  column = _column('a', learning_rate_fn=schedule)
  with pytest.raises(ValueError, match="learning_rate_fn of column 'a' .*"
                     'reaches 0.*multiply_linear_by_learning_rate=True'):
    emb.EmbeddingSpec([column], emb.FTRL(0.1))
  # The documented fix, and other optimizers, are accepted.
  emb.EmbeddingSpec([column],
                    emb.FTRL(0.1, multiply_linear_by_learning_rate=True))
  emb.EmbeddingSpec([column], emb.Adagrad(0.1))


def test_ftrl_accepts_schedules_above_zero_and_refuses_negative_beta():
  above = emb.learning_rate_schedule('linear_warmup_cosine_decay',
                                     peak_learning_rate=0.1, warmup_steps=0,
                                     decay_steps=100, alpha=0.1)
  emb.EmbeddingSpec([_column('a', learning_rate_fn=above)], emb.FTRL(0.1))
  with pytest.raises(ValueError, match='`beta` must be >= 0'):
    emb.FTRL(0.1, beta=-1.0)


def test_ftrl_refusals_survive_json():
  config = json.loads(emb.EmbeddingSpec(
      [_column('a')], emb.FTRL(0.1)).to_json())
  config['optimizer']['learning_rate'] = {
      'name': 'linear_warmup_cosine_decay',
      'params': {'peak_learning_rate': 0.1, 'warmup_steps': 5,
                 'decay_steps': 10}}
  with pytest.raises(emb.SpecValidationError,
                     match='^optimizer: FTRL.learning_rate .* reaches 0'):
    emb.EmbeddingSpec.from_config(config)
