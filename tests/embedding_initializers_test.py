"""Tests the table initializers' values and their in-place (row block) path."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from components.embedding import initializers
from components.embedding import oov

E = tf.tpu.experimental.embedding
SHAPE = (11, 4)  # 11 rows: blocks of 3 rows leave a partial last block.
BLOCK_ELEMENTS = 12  # 3 rows of 4.
GLOBAL_SEED = 7

# (registered name, parameters, the tf.random function the values must equal,
# its keyword arguments).
RANDOM_CASES = [
    ('truncated_normal', {}, tf.random.truncated_normal, {'stddev': 0.5}),
    ('truncated_normal', {'mean': 0.25, 'stddev': 0.1, 'seed': 3},
     tf.random.truncated_normal, {'mean': 0.25, 'stddev': 0.1, 'seed': 3}),
    ('random_normal', {'stddev': 0.2}, tf.random.normal, {'stddev': 0.2}),
    ('random_uniform', {}, tf.random.uniform,
     {'minval': -0.05, 'maxval': 0.05}),
    ('random_uniform', {'minval': 0, 'maxval': 2, 'seed': 1},
     tf.random.uniform, {'minval': 0, 'maxval': 2, 'seed': 1}),
]


def _seeded(fn):
  """`fn()` right after setting the global seed."""
  tf.random.set_seed(GLOBAL_SEED)
  return np.array(fn())


def _in_place(initializer, shape=SHAPE):
  """The values `initialize_in_place` leaves in a variable, as CpuEmbedding."""
  recipe = initializers.row_recipe(initializer, shape, tf.float32)
  assert recipe is not None
  variable = tf.Variable(recipe.draw)
  initializers.initialize_in_place(variable, recipe,
                                   block_elements=BLOCK_ELEMENTS)
  return variable.numpy()


@pytest.mark.parametrize('name,params,reference,reference_params',
                         RANDOM_CASES)
def test_random_initializers_keep_tf_random_values(name, params, reference,
                                                   reference_params):
  """Same values as the tf.random functions they were built on, bit for bit."""
  values = _seeded(lambda: initializers.initializer(name, **params)(SHAPE))
  expected = _seeded(lambda: reference(SHAPE, **reference_params))
  np.testing.assert_array_equal(values, expected)


@pytest.mark.parametrize('name,params,unused_reference,unused_params',
                         RANDOM_CASES)
def test_in_place_equals_plain_call(name, params, unused_reference,
                                    unused_params):
  init = initializers.initializer(name, **params)
  np.testing.assert_array_equal(
      _seeded(lambda: _in_place(init)), _seeded(lambda: init(SHAPE)))


def test_in_place_with_a_global_seed_draws_as_often_as_plain():
  """Two tables in a row: the op seeds advance once per table, either way."""
  init = initializers.initializer('truncated_normal')
  plain = _seeded(lambda: [init(SHAPE).numpy(), init(SHAPE).numpy()])
  in_place = _seeded(lambda: [_in_place(init), _in_place(init)])
  np.testing.assert_array_equal(plain, in_place)
  assert not np.array_equal(plain[0], plain[1])


def test_table_config_default_initializer_has_an_equal_recipe():
  default = E.TableConfig(vocabulary_size=SHAPE[0], dim=SHAPE[1],
                          name='t').initializer
  np.testing.assert_array_equal(
      _seeded(lambda: _in_place(default)),
      _seeded(lambda: default(SHAPE, dtype=tf.float32)))


@pytest.mark.parametrize('base', [
    None,
    initializers.initializer('random_uniform', minval=0.5, maxval=1.0),
])
def test_zero_oov_rows_in_place_equals_plain(base):
  """OOV rows (from row 5) zero in both paths, in a block of their own too."""
  init = oov.ZeroOovRows(base, first_row=5, vocabulary_size=SHAPE[0],
                         table_name='t')
  in_place = _seeded(lambda: _in_place(init))
  np.testing.assert_array_equal(in_place, _seeded(lambda: init(SHAPE)))
  assert not in_place[5:].any() and in_place[:5].all()


def test_zero_oov_rows_default_base_keeps_tf_values():
  init = oov.ZeroOovRows(None, first_row=5, vocabulary_size=SHAPE[0],
                         table_name='t')
  expected = _seeded(lambda: tf.random.truncated_normal(SHAPE, stddev=0.5))
  expected[5:] = 0.0
  np.testing.assert_array_equal(_seeded(lambda: init(SHAPE)), expected)


@pytest.mark.parametrize('initializer', [
    initializers.initializer('zeros'),
    initializers.initializer('constant', value=0.5),
    E.TableConfig(vocabulary_size=2, dim=2, name='t',
                  initializer=tf.random_normal_initializer(seed=1)
                 ).initializer,
    # Seeded, TensorFlow's truncated normal draws statelessly: no recipe.
    type(E.TableConfig(vocabulary_size=2, dim=2, name='t').initializer)(
        seed=4),
    oov.ZeroOovRows(initializers.initializer('zeros'), first_row=1,
                    vocabulary_size=SHAPE[0], table_name='t'),
])
def test_no_recipe_where_the_plain_call_is_not_reproduced(initializer):
  assert initializers.row_recipe(initializer, SHAPE, tf.float32) is None


def test_zero_oov_rows_recipe_refuses_a_shard():
  init = oov.ZeroOovRows(None, first_row=5, vocabulary_size=SHAPE[0],
                         table_name='words')
  with pytest.raises(ValueError, match="'words'.*whole table"):
    init.row_recipe((4, SHAPE[1]), tf.float32)


_MEMORY_SCRIPT = textwrap.dedent('''
    import sys
    import tensorflow as tf
    from benchmarks import measure
    from components.embedding import cpu_embedding
    E = tf.tpu.experimental.embedding
    rows, dim = int(sys.argv[1]), int(sys.argv[2])
    table = E.TableConfig(vocabulary_size=rows, dim=dim, name='items')
    embedding = cpu_embedding.CpuEmbedding(
        {'items': E.FeatureConfig(table=table)}, E.Adagrad(0.1))
    tf.zeros([1]) + 1.0
    before = measure.current_rss_bytes()
    embedding.build()
    build_growth = measure.peak_rss_bytes() - before
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')  # Resets the peak (VmHWM) to the current RSS.
    before = measure.current_rss_bytes()
    read = embedding.embedding_tables[table].read_value()
    print(build_growth, measure.peak_rss_bytes() - before)
''')


@pytest.mark.slow
def test_build_peak_memory_stays_near_tables_and_slots():
  """A fresh process: building a 64 MiB table + Adagrad slot peaks < 1.25x.

  Built whole, the truncated normal alone peaks at three full-size tensors
  (about 1.5x of table + slot here). Then a dense read of the table must
  share its buffer (no copy-on-read mode left by the in-place writes), not
  copy the table.
  """
  rows, dim = 1 << 18, 64
  plan = 2 * rows * dim * 4
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_USE_LEGACY_KERAS='1',
             PYTHONPATH=root)
  result = subprocess.run(
      [sys.executable, '-c', _MEMORY_SCRIPT, str(rows), str(dim)],
      env=env, cwd=root, capture_output=True, text=True, check=True,
      timeout=300)
  build_growth, read_growth = map(
      int, result.stdout.strip().splitlines()[-1].split())
  assert build_growth < 1.25 * plan, (build_growth / 2**20, plan / 2**20)
  assert read_growth < 0.125 * plan, (read_growth / 2**20, plan / 2**20)

