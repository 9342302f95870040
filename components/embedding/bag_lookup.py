"""A fused CPU lookup of unweighted bags: one gather-and-reduce op per feature.

`serving_embedding_lookup` looks a rank-2 bag up as a `RaggedTensor`: a ragged
gather, a multiplication by unit weights, a ragged sum, a second sum for the
weights and a division, each a handful of ops per feature and step. For an
unweighted bag the result is the combiner applied to the rows of each example,
which TensorFlow computes in one kernel, `SparseSegmentSum/Mean/SqrtN`, with
`sparse_gradient=True` so that the table's gradient is `tf.IndexedSlices` over
the distinct rows (duplicates summed). Rows without ids embed to zeros, as on
the ragged path and on a TPU; no id is added or dropped, so the rows a batch
touches are exactly those it looks up.

Weighted bags, sequence features, `output_shape` features and dense inputs keep
`serving_embedding_lookup` (see `CpuEmbedding`).

With `native=True` the same reduction runs in `native_kernels`' prefetching
kernel where it is built and the table is on a CPU; its gradient, also
native, is what TensorFlow gives the fused op (`tf.IndexedSlices` over the
sorted distinct rows).
"""

from typing import Any, Callable, Dict, Optional

import tensorflow as tf

from components.embedding import native_kernels

_REDUCERS: Dict[str, Callable[..., tf.Tensor]] = {
    'sum': tf.sparse.segment_sum,
    'mean': tf.sparse.segment_mean,
    'sqrtn': tf.sparse.segment_sqrt_n,
}


def is_fused_bag(inputs: Any, weights: Optional[Any], feature: Any) -> bool:
  """Whether `inputs` of `feature` is an unweighted rank-2 bag of known rule.

  Args:
    inputs: the feature's ids (any input `CpuEmbedding` accepts).
    weights: its weights, or None.
    feature: its `tf.tpu.experimental.embedding.FeatureConfig`.
  """
  if weights is not None or feature.max_sequence_length or feature.output_shape:
    return False
  if feature.table.combiner not in _REDUCERS:
    return False
  if isinstance(inputs, tf.SparseTensor):
    return inputs.shape.rank == 2
  if isinstance(inputs, tf.RaggedTensor):
    return inputs.shape.rank == 2 and inputs.ragged_rank == 1
  return False


def lookup_bag(table: tf.Variable, inputs: Any, combiner: str,
               native: bool = False) -> tf.Tensor:
  """Returns `[batch, dim]`: the combined rows of each example of `inputs`.

  Args:
    table: the embedding table variable, `[vocabulary_size, dim]`.
    inputs: a rank-2 `tf.SparseTensor` in row-major order (as parsing and
      `IdMapper` leave it; column positions are ignored) or a rank-2
      `tf.RaggedTensor` of ids.
    combiner: 'sum', 'mean' or 'sqrtn'.
    native: whether to use `native_kernels.bag_reduce` where it can run.
  """
  if isinstance(inputs, tf.SparseTensor):
    ids, rows, nrows = (inputs.values, inputs.indices[:, 0],
                        inputs.dense_shape[0])
  else:
    ids, rows, nrows = inputs.values, inputs.value_rowids(), inputs.nrows()
  # Reading without the copy that copy-on-read variables make for dense reads;
  # `embedding_lookup_sparse` reads its tables the same way.
  read = getattr(table, 'read_value_no_copy', table.read_value)
  if native and native_kernels.usable_for(table):
    return native_kernels.bag_reduce(read(), ids, rows, nrows, combiner)
  return _REDUCERS[combiner](read(), ids, rows, num_segments=nrows,
                             sparse_gradient=True)
