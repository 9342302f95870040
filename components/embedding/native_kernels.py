"""Prefetching CPU kernels for an embedding table's rows, built on first use.

A step of a sparse embedding model touches its tables twice: the lookup reads
the rows each example names, and the optimizer updates the distinct rows the
batch touched. Once a table is larger than the CPU's caches, both wait on
memory, and TensorFlow's kernels (`SparseSegmentMean`,
`ResourceSparseApplyAdagrad`, the scatters) wait for one row at a time. The
kernels in `native/embedding_rows.cc` compute the same thing while asking for
the rows of the next ids ahead, which keeps several memory accesses in flight,
and split the rows across the CPU device's threads. The lookup's gradient
(distinct rows by a radix sort, then one pass) replaces
`SparseSegment*GradV2`, the largest op of a step over 10k ids.

They are compiled with the system's C++ compiler against the installed
TensorFlow's headers (`tf.sysconfig`), once per source, TensorFlow version and
compiler, into a cache folder, and loaded with `tf.load_op_library`. Where
that fails (no compiler, a failed build or load) a warning says why and the
callers keep TensorFlow's kernels: the results are the same up to float
rounding (sums taken in another order), only slower on large tables.

Environment:
  TPU_EMBEDDING_NATIVE_KERNELS: '0' keeps TensorFlow's kernels.
  TPU_EMBEDDING_NATIVE_CACHE: the folder for the built library (default
    `$XDG_CACHE_HOME/tpu_embedding_tfx` or `~/.cache/tpu_embedding_tfx`, else a
    folder of its own under the temporary folder).
  CXX: the compiler (default `c++`, then `g++`).

`python -m components.embedding.native_kernels` builds them ahead, as an
image's build step does (with `TPU_EMBEDDING_NATIVE_CACHE` set to a folder
inside the image), so that training there needs no compiler.
"""

import functools
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Optional, Tuple

import tensorflow as tf

SWITCH_VARIABLE = 'TPU_EMBEDDING_NATIVE_KERNELS'
CACHE_VARIABLE = 'TPU_EMBEDDING_NATIVE_CACHE'
SOURCE = pathlib.Path(__file__).parent / 'native' / 'embedding_rows.cc'
# No FMA contraction, so each product and sum rounds as TensorFlow's separate
# ops round them; no errno, so the square roots vectorize; no trapping math
# (nothing here reads the floating-point flags), so FTRL's comparisons become
# vector selects; AVX on x86, which TensorFlow's own x86 wheels require.
# None of these changes a result.
_CXX_FLAGS = ('-O3', '-fno-math-errno', '-fno-trapping-math',
              '-ffp-contract=off', '-shared', '-fPIC') + (
                  ('-mavx',) if platform.machine().lower() in (
                      'x86_64', 'amd64') else ())


def enabled() -> bool:
  """Whether the environment allows the native kernels (the default)."""
  return os.environ.get(SWITCH_VARIABLE, '1') != '0'


def library() -> Optional[Any]:
  """The loaded kernels' module, or None where they are off or unbuildable."""
  return _load() if enabled() else None


def on_cpu(variable: Any) -> bool:
  """Whether `variable` lives on a CPU (the only device these kernels have)."""
  device = getattr(variable, 'device', '') or ''
  return tf.DeviceSpec.from_string(device).device_type in (None, 'CPU')


def usable_for(variable: Any) -> bool:
  """Whether the kernels are loaded and can run on `variable`."""
  return on_cpu(variable) and library() is not None


def _compiler() -> Optional[str]:
  """The path of `$CXX`, else of `c++` or `g++`; None if none is found."""
  for name in (os.environ.get('CXX'), 'c++', 'g++'):
    path = shutil.which(name) if name else None
    if path:
      return path
  return None


def _cache_folder() -> pathlib.Path:
  """The configured cache folder, or a private one under the temporary
  folder where that cannot be written (a read-only home, say)."""
  if os.environ.get(CACHE_VARIABLE):
    return pathlib.Path(os.environ[CACHE_VARIABLE])
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  folder = pathlib.Path(base) / 'tpu_embedding_tfx'
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    pass
  if os.access(folder, os.W_OK):
    return folder
  return pathlib.Path(tempfile.gettempdir()) / f'tpu_embedding_tfx_{os.getuid()}'


def _command(compiler: str, output: pathlib.Path) -> list:
  return [compiler, *_CXX_FLAGS, str(SOURCE), '-o', str(output),
          *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]


def library_path(compiler: str) -> pathlib.Path:
  """Where the library built from this source, TensorFlow and compiler goes."""
  key = hashlib.sha256()
  key.update(SOURCE.read_bytes())
  key.update(' '.join(_command(compiler, pathlib.Path('-'))).encode())
  key.update(tf.version.VERSION.encode())
  return _cache_folder() / f'embedding_rows_{key.hexdigest()[:16]}.so'


def build(compiler: str) -> pathlib.Path:
  """Compiles the kernels unless already built; returns the library's path.

  Raises:
    OSError: the cache folder cannot be written.
    subprocess.CalledProcessError: the compiler failed (its output attached).
  """
  target = library_path(compiler)
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  # Built beside the target and renamed: processes building at the same time
  # each write their own file, and a reader never sees half a library.
  with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
    partial = pathlib.Path(scratch) / target.name
    subprocess.run(_command(compiler, partial), check=True,
                   capture_output=True, text=True, timeout=600)
    os.replace(partial, target)
  return target


@functools.lru_cache(maxsize=None)
def _load() -> Optional[Any]:
  """Builds and loads the kernels once per process; None, with a warning
  saying why, where they cannot be."""
  compiler = _compiler()
  if compiler is None:
    logging.warning('No C++ compiler (set CXX): the embedding keeps '
                    "TensorFlow's CPU kernels, slower on large tables.")
    return None
  try:
    return tf.load_op_library(str(build(compiler)))
  except subprocess.CalledProcessError as error:
    logging.warning("The embedding's native kernels did not compile; keeping "
                    "TensorFlow's kernels. %s", error.stderr[-2000:])
  except (OSError, subprocess.SubprocessError, tf.errors.OpError) as error:
    logging.warning("The embedding's native kernels could not be built or "
                    "loaded (%s); keeping TensorFlow's kernels.", error)
  return None


def bag_reduce(table: tf.Tensor, ids: tf.Tensor, rows: tf.Tensor,
               num_rows: tf.Tensor, combiner: str) -> tf.Tensor:
  """`tf.sparse.segment_<combiner>(table, ids, rows, num_rows)`, prefetched.

  Its gradient is the one TensorFlow gives `SparseSegment*` with
  `sparse_gradient=True`: `tf.IndexedSlices` over the sorted distinct ids
  (`EmbeddingRowsBagReduceGrad`, a radix sort and one pass).
  """
  return library().embedding_rows_bag_reduce(
      table, tf.cast(ids, tf.int64), tf.cast(rows, tf.int64),
      tf.cast(num_rows, tf.int64), combiner=combiner)


@tf.RegisterGradient('EmbeddingRowsBagReduce')
def _bag_reduce_gradient(op: Any, upstream: tf.Tensor) -> tuple:
  """The table's gradient over the sorted distinct ids, as TensorFlow gives
  `SparseSegment*` with `sparse_gradient=True`, from the native kernel."""
  table, ids, rows, _ = op.inputs
  # A table's shape is static: `tf.shape` is then a constant, and the
  # table's value stays the lookup's alone (`deferred_updates` relies on it).
  shape = tf.shape(table, out_type=tf.int64)
  values, distinct = library().embedding_rows_bag_reduce_grad(
      upstream, ids, rows, shape[0], combiner=op.get_attr('combiner'))
  return tf.IndexedSlices(values, distinct, shape), None, None, None


def partition(ids: tf.Tensor, next_ids: tf.Tensor,
              num_rows: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """The positions in `ids` of the ids in `next_ids`, and of the others.

  Both in increasing order; `next_ids` may repeat ids or hold ids outside
  `[0, num_rows)` (which match nothing).
  """
  return library().embedding_rows_partition(
      tf.cast(ids, tf.int64), tf.cast(next_ids, tf.int64),
      tf.constant(num_rows, tf.int64))


def _rows(positions: Optional[tf.Tensor]) -> tf.Tensor:
  """The kernels' `positions` input: the rows to update, or -1 for all."""
  if positions is None:
    return tf.constant(-1, tf.int64)
  return tf.cast(positions, tf.int64)


def apply_sgd(table: tf.Variable, ids: tf.Tensor, grads: tf.Tensor,
              lr: tf.Tensor,
              positions: Optional[tf.Tensor] = None) -> Any:
  """`table[ids] -= lr * grads`, one row per distinct id."""
  return library().embedding_rows_apply_sgd(
      table.handle, lr, grads, tf.cast(ids, tf.int64), _rows(positions))


def apply_adagrad(table: tf.Variable, accumulators: tf.Variable,
                  ids: tf.Tensor, grads: tf.Tensor, lr: tf.Tensor,
                  positions: Optional[tf.Tensor] = None) -> Any:
  """`accum += g * g; w -= lr * g * rsqrt(accum)` on the distinct rows."""
  return library().embedding_rows_apply_adagrad(
      table.handle, accumulators.handle, lr, grads, tf.cast(ids, tf.int64),
      _rows(positions))


def apply_lazy_adam(optimizer: Any, table: tf.Variable, momenta: tf.Variable,
                    velocities: tf.Variable, ids: tf.Tensor,
                    grads: tf.Tensor, lr: tf.Tensor,
                    positions: Optional[tf.Tensor] = None) -> Any:
  """Adam without bias correction on the distinct rows (the TPU's lazy Adam).

  The constants are rounded to float32 from the same Python expressions as
  `tpu_update_rules._adam_step`'s, so both compute with the same numbers.
  """
  return library().embedding_rows_apply_lazy_adam(
      table.handle, momenta.handle, velocities.handle, lr, grads,
      tf.cast(ids, tf.int64), _rows(positions),
      beta_1=optimizer.beta_1, one_minus_beta_1=1.0 - optimizer.beta_1,
      beta_2=optimizer.beta_2, one_minus_beta_2=1.0 - optimizer.beta_2,
      epsilon=optimizer.epsilon, epsilon_squared=optimizer.epsilon**2,
      sum_inside_sqrt=optimizer.sum_inside_sqrt)


def apply_ftrl(optimizer: Any, table: tf.Variable, accumulators: tf.Variable,
               linears: tf.Variable, ids: tf.Tensor, grads: tf.Tensor,
               lr: tf.Tensor,
               positions: Optional[tf.Tensor] = None) -> Any:
  """FTRL-proximal with the TPU's `beta` on the distinct rows
  (`tpu_update_rules._ftrl_rule`): the same float32 constants, the same
  order of operations; a power of 1/2 is a square root (TensorFlow's `Pow`
  may differ from it in the last bit)."""
  return library().embedding_rows_apply_ftrl(
      table.handle, accumulators.handle, linears.handle, lr, grads,
      tf.cast(ids, tf.int64), _rows(positions),
      power=-optimizer.learning_rate_power,
      l1=optimizer.l1_regularization_strength,
      l2=optimizer.l2_regularization_strength,
      two_l2=2.0 * optimizer.l2_regularization_strength,
      beta=optimizer.beta,
      multiply_linear_by_lr=optimizer.multiply_linear_by_learning_rate)


def apply_adagrad_momentum(optimizer: Any, table: tf.Variable,
                           accumulators: tf.Variable, momenta: tf.Variable,
                           ids: tf.Tensor, grads: tf.Tensor,
                           lr: tf.Tensor,
                           positions: Optional[tf.Tensor] = None) -> Any:
  """Adagrad with momentum on the distinct rows
  (`tpu_update_rules._adagrad_momentum_rule`), with the same float32
  constants; a power of -1/2 is `1 / sqrt` (TensorFlow's `Rsqrt` may differ
  from it in the last bit)."""
  return library().embedding_rows_apply_adagrad_momentum(
      table.handle, accumulators.handle, momenta.handle, lr, grads,
      tf.cast(ids, tf.int64), _rows(positions), beta2=optimizer.beta2,
      one_minus_beta2=1.0 - optimizer.beta2,
      beta2_is_one=optimizer.beta2 == 1.0, epsilon=optimizer.epsilon,
      power=-1.0 / optimizer.exponent, momentum=optimizer.momentum,
      use_nesterov=optimizer.use_nesterov)


def main(argv: Optional[list] = None) -> int:
  """Builds the kernels into the cache folder and says where, or why not.

  Exits 0 either way (training falls back to TensorFlow's kernels), unless
  `--require` is given: then 1 when they could not be built.
  """
  args = sys.argv[1:] if argv is None else argv
  if _load() is None:
    print("The native embedding kernels were not built (see the warning); "
          "training will use TensorFlow's kernels.")
    return 1 if '--require' in args else 0
  print(f'Built the native embedding kernels: {library_path(_compiler())}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
