"""The prefetching native kernels against TensorFlow's ops and the reference
update rules, their build and fallback, and where the product uses them.

The kernels split sorted distinct rows across threads; the tables here are
large enough (thousands of rows per step) for that split to happen.
"""

import platform
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components.embedding import cpu_embedding
from components.embedding import native_kernels
from components.embedding import tpu_update_rules
from components.trainer import backends

E = tf.tpu.experimental.embedding
ROWS = 20_000
DIM = 24
BATCH = 300


@pytest.fixture(name='library')
def fixture_library():
  library = native_kernels.library()
  if library is None and shutil.which('c++') is None and shutil.which('g++') \
      is None:
    pytest.skip('No C++ compiler on this machine: the kernels cannot build.')
  return library


def test_the_kernels_build_where_a_compiler_exists(library):
  assert library is not None
  assert hasattr(library, 'embedding_rows_apply_adagrad')


def _bags(rng, lengths):
  """Ids and sorted row numbers of bags of the given lengths (0: empty)."""
  rows = np.repeat(np.arange(len(lengths)), lengths)
  ids = rng.integers(0, ROWS, size=len(rows))
  ids[:3] = ids[0]  # A repeated id in one bag.
  return tf.constant(ids, tf.int64), tf.constant(rows, tf.int64)


_SEGMENT_OPS = {'sum': tf.sparse.segment_sum, 'mean': tf.sparse.segment_mean,
                'sqrtn': tf.sparse.segment_sqrt_n}


@pytest.mark.parametrize('combiner', ['sum', 'mean', 'sqrtn'])
def test_bag_reduce_and_its_gradient_equal_tensorflows(library, combiner):
  del library
  rng = np.random.default_rng(3)
  lengths = rng.integers(0, 40, size=BATCH)
  lengths[[0, 7, BATCH - 1]] = 0  # Empty bags, the last one among them.
  ids, rows = _bags(rng, lengths)
  table = tf.constant(rng.normal(size=(ROWS, DIM)), tf.float32)
  upstream = tf.constant(rng.normal(size=(BATCH, DIM)), tf.float32)

  def lookup_and_gradient(lookup):
    with tf.GradientTape() as tape:
      tape.watch(table)
      out = lookup()
      loss = tf.reduce_sum(out * upstream)
    return out, tape.gradient(loss, table)

  got, got_gradient = lookup_and_gradient(lambda: native_kernels.bag_reduce(
      table, ids, rows, BATCH, combiner))
  expected, expected_gradient = lookup_and_gradient(
      lambda: _SEGMENT_OPS[combiner](table, ids, rows, num_segments=BATCH,
                                     sparse_gradient=True))
  # Up to 40 rows summed in another grouping than TensorFlow's: rounding.
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=2e-5)
  np.testing.assert_array_equal(got.numpy()[[0, 7, BATCH - 1]], 0.0)
  assert isinstance(got_gradient, tf.IndexedSlices)
  np.testing.assert_array_equal(got_gradient.indices,
                                expected_gradient.indices)
  np.testing.assert_allclose(got_gradient.values, expected_gradient.values,
                             rtol=1e-6, atol=1e-6)


def test_the_bag_gradient_is_known_to_have_distinct_rows(library):
  """So that `apply_sparse` does not sum its duplicates a second time."""
  del library
  table = tf.Variable(tf.ones([5, 2]))
  seen = []

  @tf.function
  def gradient():
    with tf.GradientTape() as tape:
      out = native_kernels.bag_reduce(
          table, tf.constant([3, 1, 3], tf.int64),
          tf.constant([0, 0, 1], tf.int64), 2, 'mean')
      loss = tf.reduce_sum(out)
    result = tape.gradient(loss, table)
    seen.append(tpu_update_rules.has_distinct_rows(result))
    return result.indices, result.values

  ids, values = gradient()
  assert seen == [True]
  np.testing.assert_array_equal(ids, [1, 3])
  np.testing.assert_allclose(values, [[0.5, 0.5], [1.5, 1.5]])


def test_the_bag_gradient_leaves_the_table_value_to_the_lookup(library):
  """The gradient takes the table's static shape, not its value: the value
  read for the lookup is then released when the lookup ends, and a deferred
  update (`deferred_updates`) can write the table in place instead of
  copying it for a reader still to come."""
  del library
  table = tf.Variable(tf.zeros([50, DIM]))

  @tf.function
  def gradient(ids, rows):
    with tf.GradientTape() as tape:
      looked_up = native_kernels.bag_reduce(table.read_value_no_copy(), ids,
                                            rows, 3, 'sum')
      loss = tf.reduce_sum(looked_up)
    return tape.gradient(loss, table)

  ids_spec = tf.TensorSpec([None], tf.int64)
  graph = gradient.get_concrete_function(ids_spec, ids_spec).graph

  def readers(op):  # The ops reading op's output, through Identity ops.
    for consumer in op.outputs[0].consumers():
      yield from (readers(consumer) if consumer.type == 'Identity' else
                  [consumer.type])

  reads = [op for op in graph.get_operations() if op.type == 'ReadVariableOp']
  assert {kind for op in reads for kind in readers(op)} == {
      'EmbeddingRowsBagReduce'}


def test_bag_reduce_refuses_bad_ids_and_unsorted_rows(library):
  del library
  table = tf.zeros([5, 2])
  with pytest.raises(tf.errors.InvalidArgumentError, match='not in'):
    native_kernels.bag_reduce(table, tf.constant([1, 5], tf.int64),
                              tf.constant([0, 1], tf.int64), 2, 'mean')
  with pytest.raises(tf.errors.InvalidArgumentError, match='not sorted'):
    native_kernels.bag_reduce(table, tf.constant([1, 2], tf.int64),
                              tf.constant([1, 0], tf.int64), 2, 'sum')


def _variables(optimizer):
  tf.keras.utils.set_random_seed(1)
  table = tf.Variable(tf.random.normal([ROWS, DIM]))
  slots = {name: tf.Variable(tf.random.uniform([ROWS, DIM], 0.1, 0.5))
           for name in tpu_update_rules.slot_names(optimizer)}
  return table, slots


def _apply(optimizer, gradients, native):
  """The table and slots after each gradient, fused kernels (native or
  TensorFlow's) or the gather / `update_rows` / scatter reference."""
  table, slots = _variables(optimizer)

  @tf.function
  def apply(gradient):
    tpu_update_rules.apply_sparse(
        optimizer, table, slots, gradient,
        tpu_update_rules.evaluate_learning_rate(optimizer.learning_rate),
        use_fused_kernels=native is not None,
        use_native_kernels=bool(native))

  for gradient in gradients:
    apply(gradient)
  return table.numpy(), {name: slot.numpy() for name, slot in slots.items()}


def _gradient(rng, sort, id_dtype=tf.int64):
  """A gradient over 5,000 distinct rows, in increasing order or not."""
  ids = rng.choice(ROWS, size=5_000, replace=False)
  if sort:
    ids = np.sort(ids)
  return tf.IndexedSlices(
      tf.constant(rng.normal(size=(len(ids), DIM)), tf.float32),
      tf.constant(ids, id_dtype), tf.constant([ROWS, DIM], tf.int64))


@pytest.mark.parametrize('optimizer', [
    E.SGD(0.3),
    E.Adagrad(0.2),
    E.Adagrad(0.2, clipvalue=(-0.5, 0.4)),
    E.Adam(0.1),
    E.Adam(0.1, sum_inside_sqrt=False),
    E.FTRL(0.2, l1_regularization_strength=0.05,
           l2_regularization_strength=0.3, beta=0.1),
    E.FTRL(0.2, learning_rate_power=-0.3, l1_regularization_strength=0.05,
           l2_regularization_strength=0.3, beta=0.1,
           multiply_linear_by_learning_rate=True),
    E.AdagradMomentum(0.1, momentum=0.9),
    E.AdagradMomentum(0.1, momentum=0.5, use_nesterov=True, exponent=3.0,
                      beta2=0.99, epsilon=0.05),
], ids=['sgd', 'adagrad', 'adagrad_clip_gradient', 'lazy_adam',
        'lazy_adam_epsilon_outside', 'ftrl', 'ftrl_power_linear_by_lr',
        'adagrad_momentum', 'adagrad_momentum_nesterov_power_beta2'])
@pytest.mark.parametrize('sort, id_dtype', [
    (True, tf.int64), (False, tf.int64), (True, tf.int32)],
                         ids=['sorted_threads', 'unsorted_in_turn',
                              'int32_ids'])
def test_updates_equal_the_reference_rule(library, optimizer, sort, id_dtype):
  del library
  rng = np.random.default_rng(5)
  gradients = [_gradient(rng, sort, id_dtype) for _ in range(3)]
  native = _apply(optimizer, gradients, native=True)
  plain = _apply(optimizer, gradients, native=None)
  np.testing.assert_allclose(native[0], plain[0], rtol=1e-6, atol=1e-6)
  # Rules that raise to a power (Adagrad with momentum; FTRL's other than
  # 1/2): the C library's and TensorFlow's vectorized pow and rsqrt may
  # differ in the last bit, which cancellation in the momentum and linear
  # slots magnifies.
  raises_to_a_power = isinstance(optimizer, E.AdagradMomentum) or getattr(
      optimizer, 'learning_rate_power', -0.5) != -0.5
  slot_atol = 1e-6 if raises_to_a_power else 1e-7
  for name in plain[1]:
    np.testing.assert_allclose(native[1][name], plain[1][name], rtol=1e-6,
                               atol=slot_atol, err_msg=name)
  untouched = np.setdiff1d(np.arange(ROWS), np.concatenate(
      [g.indices.numpy() for g in gradients]))
  before = _variables(optimizer)[0].numpy()
  np.testing.assert_array_equal(native[0][untouched], before[untouched])


def test_repeated_ids_apply_in_turn(library):
  """Called directly with repeated ids (`apply_sparse` sums them first), the
  kernel applies each in turn, as one thread: no two threads share a row."""
  del library
  table, slots = _variables(E.Adagrad(0.1))
  start, accumulators = table.numpy(), slots['accumulators'].numpy()
  ids = np.array([4, 9, 4, 4, 2], np.int64)
  grads = np.random.default_rng(0).normal(size=(5, DIM)).astype(np.float32)
  native_kernels.apply_adagrad(table, slots['accumulators'], tf.constant(ids),
                               tf.constant(grads), tf.constant(0.1))
  for row, grad in zip(ids, grads):
    accumulators[row] += grad * grad
    start[row] -= 0.1 * grad / np.sqrt(accumulators[row])
  np.testing.assert_allclose(table.numpy(), start, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(slots['accumulators'].numpy(), accumulators,
                             rtol=1e-6)


def test_updates_refuse_bad_ids_shapes_and_rates(library):
  del library
  table, slots = _variables(E.Adagrad(0.1))
  accumulators = slots['accumulators']
  ids = tf.constant([1, 2], tf.int64)
  with pytest.raises(tf.errors.InvalidArgumentError, match='not in'):
    native_kernels.apply_adagrad(table, accumulators,
                                 tf.constant([1, ROWS], tf.int64),
                                 tf.ones([2, DIM]), tf.constant(0.1))
  with pytest.raises(tf.errors.InvalidArgumentError, match='grad must be'):
    native_kernels.apply_adagrad(table, accumulators, ids,
                                 tf.ones([3, DIM]), tf.constant(0.1))
  with pytest.raises(tf.errors.InvalidArgumentError, match='lr must be'):
    native_kernels.apply_adagrad(table, accumulators, ids,
                                 tf.ones([2, DIM]), tf.constant([0.1]))


def _anon_huge_page_bytes():
  """This process's anonymous memory in transparent huge pages."""
  with open('/proc/self/smaps_rollup', encoding='utf-8') as rollup:
    for line in rollup:
      if line.startswith('AnonHugePages:'):
        return int(line.split()[1]) * 1024
  return 0


def _collapses_huge_pages():
  """Whether Linux backs advised memory with huge pages at once: THP not
  'never', and MADV_COLLAPSE (Linux 6.1)."""
  try:
    with open('/sys/kernel/mm/transparent_hugepage/enabled',
              encoding='utf-8') as mode:
      if '[never]' in mode.read():
        return False
  except OSError:
    return False
  major, minor = (int(part) for part in
                  platform.release().split('.')[:2])
  return (major, minor) >= (6, 1)


@pytest.mark.skipif(platform.system() != 'Linux' or not _collapses_huge_pages(),
                    reason='Transparent huge pages cannot be collapsed here.')
def test_large_tables_move_to_huge_pages_with_unchanged_values(library):
  """A table of 32 MiB and its slot, looked up and updated natively, end up
  in huge pages (the kernels' advice), and their values are TensorFlow's."""
  del library
  rows, dim = 131_072, 64  # 32 MiB: above the kernels' 16 MiB threshold.
  rng = np.random.default_rng(2)
  values = rng.normal(size=(rows, dim)).astype(np.float32)
  native_table, plain_table = tf.Variable(values), tf.Variable(values)
  native_accumulators = tf.Variable(tf.fill([rows, dim], 0.1))
  plain_accumulators = tf.Variable(tf.fill([rows, dim], 0.1))
  ids = tf.constant(np.sort(rng.choice(rows, 8_000, replace=False)))
  grads = tf.constant(rng.normal(size=(8_000, dim)).astype(np.float32))
  segments = tf.constant(np.repeat(np.arange(400), 20), tf.int64)
  before = _anon_huge_page_bytes()

  looked_up = native_kernels.bag_reduce(native_table, ids, segments,
                                        tf.constant(400, tf.int64), 'mean')
  after_lookup = _anon_huge_page_bytes()
  native_kernels.apply_adagrad(native_table, native_accumulators, ids, grads,
                               tf.constant(0.1))
  after_update = _anon_huge_page_bytes()

  # All but the partial 2 MiB pages at each end of a buffer.
  assert after_lookup - before >= 28 << 20
  assert after_update - after_lookup >= 28 << 20
  np.testing.assert_allclose(
      looked_up.numpy(),
      tf.sparse.segment_mean(values, ids, segments, num_segments=400).numpy(),
      rtol=1e-6, atol=2e-5)
  tf.raw_ops.ResourceSparseApplyAdagrad(
      var=plain_table.handle, accum=plain_accumulators.handle,
      lr=tf.constant(0.1), grad=grads, indices=ids)
  np.testing.assert_allclose(native_table.numpy(), plain_table.numpy(),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(native_accumulators.numpy(),
                             plain_accumulators.numpy(), rtol=1e-6)


def _op_types_of_step(embedding):
  """The op types of one traced lookup-and-update step of `embedding`."""
  features = {'bag': tf.ragged.constant([[1, 2], [3]], dtype=tf.int64)}

  @tf.function
  def step(features):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(embedding(features)['bag'])
    embedding.apply_gradients(
        tape.gradient(loss, embedding.trainable_variables))

  graph = step.get_concrete_function(features).graph
  return {op.type for op in graph.get_operations()}


def _bag_config():
  table = E.TableConfig(vocabulary_size=10, dim=4, name='t')
  return {'bag': E.FeatureConfig(table=table)}


def test_the_training_backend_uses_them_and_the_switch_turns_them_off(
    library, monkeypatch):
  del library
  backend = backends.CpuBackend(_bag_config(), E.Adagrad(0.1))
  assert {'EmbeddingRowsBagReduce', 'EmbeddingRowsApplyAdagrad'} <= (
      _op_types_of_step(backend.embedding))
  backend = backends.CpuBackend(_bag_config(), E.FTRL(0.1))
  assert 'EmbeddingRowsApplyFtrl' in _op_types_of_step(backend.embedding)
  monkeypatch.setenv(native_kernels.SWITCH_VARIABLE, '0')
  backend = backends.CpuBackend(_bag_config(), E.Adagrad(0.1))
  types = _op_types_of_step(backend.embedding)
  assert 'ResourceSparseApplyAdagrad' in types
  assert not any(name.startswith('EmbeddingRows') for name in types)


def test_embeddings_keep_tensorflows_ops_unless_asked(library):
  """Serving and warm start build `CpuEmbedding` without `native_kernels`:
  their SavedModels and graphs must load where the library is absent."""
  del library
  embedding = cpu_embedding.CpuEmbedding(_bag_config(), E.Adagrad(0.1))
  assert not any(name.startswith('EmbeddingRows')
                 for name in _op_types_of_step(embedding))


def test_on_cpu_only():
  assert native_kernels.on_cpu(tf.Variable(1.0))
  with tf.device('/CPU:0'):
    assert native_kernels.on_cpu(tf.Variable(1.0))

  class OnGpu:
    device = '/job:localhost/replica:0/task:0/device:GPU:0'
  assert not native_kernels.on_cpu(OnGpu())


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(monkeypatch,
                                                              tmp_path):
  blocked = tmp_path / 'a_file'
  blocked.write_text('')
  monkeypatch.delenv(native_kernels.CACHE_VARIABLE, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(blocked))
  folder = native_kernels._cache_folder()  # pylint: disable=protected-access
  assert not str(folder).startswith(str(blocked))
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  assert native_kernels._cache_folder() == (  # pylint: disable=protected-access
      tmp_path / 'cache' / 'tpu_embedding_tfx')


def test_the_build_command_builds_or_says_why_not(library, monkeypatch,
                                                  capsys):
  del library
  try:
    assert native_kernels.main([]) == 0
    assert str(native_kernels.library_path(native_kernels._compiler())) in (  # pylint: disable=protected-access
        capsys.readouterr().out)
    native_kernels._load.cache_clear()  # pylint: disable=protected-access
    monkeypatch.setenv('CXX', 'false')
    monkeypatch.setenv('PATH', '')
    assert native_kernels.main([]) == 0  # An image without a compiler.
    assert 'were not built' in capsys.readouterr().out
    assert native_kernels.main(['--require']) == 1
  finally:
    native_kernels._load.cache_clear()  # pylint: disable=protected-access
