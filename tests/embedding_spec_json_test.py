"""The spec's JSON is data: a validating schema and no arbitrary imports."""

import json
import subprocess
import sys
import textwrap

import pytest

from components import embedding as emb
from components.embedding import registry
from components.embedding import schedules
from pipelines.movies import embedding_spec as movies_spec


def _spec():
  return emb.EmbeddingSpec(
      columns=[
          emb.embedding_column(
              emb.weighted_categorical_column(
                  emb.categorical_column_with_vocabulary_list(
                      'w', ['a', 'b']), 'w_weight'), 4, combiner='sum',
              learning_rate_fn=emb.learning_rate_schedule(
                  'constant', learning_rate=0.1)),
          emb.embedding_column(emb.categorical_column_with_identity('i', 9),
                               3),
          emb.embedding_column(
              emb.sequence_categorical_column_with_transform_vocabulary(
                  't', 'titles'), 5, max_sequence_length=12),
      ],
      optimizer=emb.FTRL(learning_rate=0.1, multiply_linear_by_learning_rate=True))


def _config():
  return json.loads(_spec().to_json())


@pytest.fixture(name='clean_registry')
def _clean_registry(monkeypatch):
  """Leaves no process-wide prefix or registration behind."""
  monkeypatch.setattr(registry, '_PROCESS_PREFIXES', ())
  monkeypatch.setattr(schedules.LearningRateSchedule, '_REGISTRY',
                      dict(schedules.LearningRateSchedule._REGISTRY))  # pylint: disable=protected-access


def _set(config, path, value):
  """Sets `config[path...] = value`; a value of KeyError deletes the key."""
  *parents, last = path
  for key in parents:
    config = config[key]
  if value is KeyError:
    del config[last]
  else:
    config[last] = value


@pytest.mark.parametrize('path, value, message', [
    (('columns', 2, 'categorical_column', 'is_sequence'), 'false',
     'columns[2].categorical_column.is_sequence: expected true or false, '
     'got "false"'),
    (('columns',), KeyError,
     'missing required key "columns" of embedding spec'),
    (('columns', 1, 'dimension'), KeyError,
     'columns[1]: missing required key "dimension" of embedding column'),
    (('columns', 1, 'categorical_column', 'number_buckets'), KeyError,
     'columns[1].categorical_column: missing required key "number_buckets"'),
    (('columns', 1, 'dimensoin'), 3,
     'columns[1]: unknown key "dimensoin" (did you mean "dimension"?)'),
    (('optimizer', 'initial_accumulator_value'), '0.1',
     'optimizer.initial_accumulator_value: expected a finite number, got '
     '"0.1"'),
    (('optimizer', 'beta'), float('nan'),
     'optimizer.beta: expected a finite number, got NaN'),
    (('columns', 1, 'dimension'), '3',
     'columns[1].dimension: expected an integer, got "3"'),
    (('columns', 1, 'dimension'), True,
     'columns[1].dimension: expected an integer, got true'),
    (('columns', 1, 'combiner'), 'max',
     'columns[1].combiner: expected one of "mean", "sum", "sqrtn", got "max"'),
    (('optimizer', 'type'), 'AdamW',
     'optimizer.type: expected one of "Adagrad", "AdagradMomentum", "Adam", '
     '"FTRL", "SGD", got "AdamW"'),
    (('columns', 0, 'categorical_column', 'categorical_column', 'type'),
     'hashed', 'columns[0].categorical_column.categorical_column.type: '
     'expected one of'),
    (('columns', 2, 'max_sequence_length'), 'long',
     'columns[2].max_sequence_length: expected an integer or one of "auto"'),
    (('columns', 0, 'categorical_column', 'categorical_column',
      'vocabulary_list'), [],
     'vocabulary_list: expected a non-empty list of (a string or an integer)'),
    (('columns', 1, 'shared_with'), 'x',
     'columns[1].shared_with: expected a list of (a string), got "x"'),
    (('columns',), [], 'columns: expected a non-empty list'),
    (('optimizer', 'clipvalue'), [1.0],
     'optimizer.clipvalue: expected a finite number or a list of 2'),
    (('columns', 0, 'learning_rate_fn'), {'name': 'cosine'},
     'columns[0].learning_rate_fn.name: unknown learning-rate schedule name '
     '"cosine"'),
    (('columns', 0, 'learning_rate_fn'), {'name': 'constant', 'path': 'a.b'},
     'columns[0].learning_rate_fn: a learning-rate schedule reference needs '
     'exactly one of "name" or "path"'),
    (('columns', 0, 'learning_rate_fn', 'params'), [0.1],
     'columns[0].learning_rate_fn.params: expected an object'),
    # Values of the right type that a constructor refuses.
    (('columns', 1, 'dimension'), 0,
     'columns[1]: Invalid dimension 0 for embedding column'),
    (('columns', 0, 'learning_rate_fn', 'params', 'learning_rate'), -1,
     'columns[0]: constant: `learning_rate` must be a number > 0'),
    (('columns', 2, 'table_name'), 'w_weighted_by_w_weight_embedding',
     "columns: Duplicate table name 'w_weighted_by_w_weight_embedding'"),
])
def test_errors_name_the_field(path, value, message):
  config = _config()
  _set(config, path, value)
  with pytest.raises(emb.SpecValidationError) as error:
    emb.EmbeddingSpec.from_json(json.dumps(config))
  assert message in str(error.value)
  assert isinstance(error.value, emb.SpecSerializationError)
  assert isinstance(error.value, ValueError)


def test_from_dict_and_whole_document_errors():
  assert emb.EmbeddingSpec.from_dict(_config()).to_config() == _config()
  with pytest.raises(emb.SpecValidationError, match='not valid JSON'):
    emb.EmbeddingSpec.from_json('{"columns": [')
  with pytest.raises(emb.SpecValidationError, match='must be a JSON object'):
    emb.EmbeddingSpec.from_json('[1, 2]')
  with pytest.raises(emb.SpecValidationError,
                     match='^format_version: Unsupported'):
    emb.EmbeddingSpec.from_json('{"columns": []}')


def test_movies_spec_round_trips():
  spec = movies_spec.create_embedding_spec(800)
  text = spec.to_json()
  again = emb.EmbeddingSpec.from_json(text)
  assert again.to_json() == text
  assert again.columns == spec.columns


# --- Dotted paths. ---


@pytest.mark.parametrize('config', [
    {'path': 'os.system'}, 'os.system',
    {'path': 'os.system', 'params': {'command': 'true'}}])
def test_arbitrary_paths_are_refused(config):
  spec = _config()
  spec['columns'][0]['learning_rate_fn'] = config
  with pytest.raises(emb.SpecValidationError,
                     match=r"columns\[0\]\.learning_rate_fn(\.path)?: "
                     r"learning-rate schedule: dotted path 'os.system' is not "
                     r'allowed \(nothing was imported\)'):
    emb.EmbeddingSpec.from_json(json.dumps(spec))
  with pytest.raises(emb.SpecValidationError, match='not allowed'):
    emb.learning_rate_schedule('os.system')
  with pytest.raises(emb.SpecValidationError, match='not allowed'):
    emb.initializer('os.system')


def test_refused_paths_are_never_imported():
  spec = _config()
  spec['columns'][1]['initializer'] = {'path': 'this.s'}
  script = textwrap.dedent(f"""
      import json, sys
      from components import embedding as emb
      assert 'this' not in sys.modules
      for attempt in (
          lambda: emb.EmbeddingSpec.from_json({json.dumps(spec)!r}),
          lambda: emb.learning_rate_schedule('this.s'),
          lambda: emb.initializer('this.s')):
        try:
          attempt()
        except emb.SpecValidationError as e:
          assert 'not allowed' in str(e), e
        else:
          raise AssertionError('accepted')
      print('imported' if 'this' in sys.modules else 'not imported')
      """)
  result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, check=False, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'not imported'


def _write_user_package(root):
  package = root / 'my_company'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'models.py').write_text(textwrap.dedent("""
      from os import system  # Re-exported: not defined here.
      import tensorflow as tf

      def warmup(global_step, peak=0.1):
        return peak * tf.minimum(tf.cast(global_step, tf.float32) / 10.0, 1.0)

      def ones(shape, dtype):
        return tf.ones(shape, dtype)
      """))


def _user_spec():
  return emb.EmbeddingSpec(
      [emb.embedding_column(
          emb.categorical_column_with_identity('i', 4), 2,
          initializer=emb.initializer('my_company.models.ones'),
          learning_rate_fn=emb.learning_rate_schedule(
              'my_company.models.warmup', peak=0.5))],
      emb.SGD(0.1))


def test_user_functions_under_declared_prefixes(tmp_path, monkeypatch,
                                                clean_registry):
  del clean_registry
  _write_user_package(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, 'my_company', raising=False)
  with pytest.raises(emb.SpecValidationError, match='not allowed'):
    emb.learning_rate_schedule('my_company.models.warmup')
  assert 'my_company' not in sys.modules
  with registry.allowing_module_prefixes(['my_company.models']):
    text = _user_spec().to_json()
  assert registry.allowed_module_prefixes() == ()
  with pytest.raises(emb.SpecValidationError,
                     match=r"columns\[0\]\.initializer\.path: .*not allowed"):
    emb.EmbeddingSpec.from_json(text)
  # Declared for one read, then for the process.
  again = emb.EmbeddingSpec.from_json(text,
                                      allowed_module_prefixes=['my_company'])
  assert again.to_json() == text
  assert float(again.columns[0].learning_rate_fn(5)) == pytest.approx(0.25)
  assert again.columns[0].initializer((2, 2)).numpy().tolist() == [[1, 1]] * 2
  emb.allow_module_prefixes('my_company')
  assert emb.EmbeddingSpec.from_json(text).to_json() == text


def test_declared_prefixes_are_whole_module_names(tmp_path, monkeypatch,
                                                  clean_registry):
  del clean_registry
  _write_user_package(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  emb.allow_module_prefixes('my')
  with pytest.raises(emb.SpecValidationError, match='not allowed'):
    emb.learning_rate_schedule('my_company.models.warmup')
  emb.allow_module_prefixes('my_company')
  with pytest.raises(emb.SpecValidationError,
                     match="defined in module 'posix'.*outside the allowed"):
    emb.learning_rate_schedule('my_company.models.system')
  with pytest.raises(ValueError, match='must be a module name'):
    emb.allow_module_prefixes('my_company/models')


def test_registered_user_functions_travel_by_name(clean_registry):
  del clean_registry
  emb.LearningRateSchedule.register('half', half_rate)
  spec = emb.EmbeddingSpec(
      [emb.embedding_column(emb.categorical_column_with_identity('i', 4), 2,
                            learning_rate_fn=half_rate)], emb.SGD(0.1))
  config = spec.to_config()
  assert config['columns'][0]['learning_rate_fn'] == {'name': 'half',
                                                      'params': {}}
  again = emb.EmbeddingSpec.from_config(config)
  assert float(again.columns[0].learning_rate_fn(3)) == 0.5
  # Its dotted path resolves to the registered function too.
  assert emb.learning_rate_schedule(f'{__name__}.half_rate')(0) == 0.5
  with pytest.raises(ValueError, match='already registered'):
    emb.LearningRateSchedule.register('half', lambda step: 1.0)
  with pytest.raises(ValueError, match='module-level functions'):
    emb.LearningRateSchedule.register('other', lambda step: 1.0)


def half_rate(global_step):
  del global_step
  return 0.5
