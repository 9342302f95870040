// CPU kernels for the two row accesses of a sparse embedding step: combining
// the rows each example looks up, and applying an optimizer to the distinct
// rows a batch touched.
//
// Their arithmetic is TensorFlow's (SparseSegmentSum/Mean/SqrtN, and the
// update rules of `tpu_update_rules.py`). What differs is the memory access:
// a large table's rows are not in any cache, and TensorFlow's kernels wait
// for each row in turn. These kernels prefetch the rows a few ids ahead, so
// that several rows are on their way from memory at once, and split the work
// across the CPU device's threads.
//
// Built by `native_kernels.py` on first use, against the installed
// TensorFlow's headers.

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// Rows are requested this many ids ahead of the one being combined or
// updated, into the core's L2 cache (locality 2: prefetcht1 on x86) rather
// than L1. A core keeps more misses in flight into L2 than into L1, and the
// rows of a large table are all misses: on the 2-core AMD EPYC machine of
// BENCHMARKS.md, 10,240 ids of a 10^6-row table updated with Adagrad in
// 0.42 ms against 0.57 ms with L1 prefetches 16 ids ahead, and a
// cache-resident 10^4-row table ran as fast either way.
constexpr int64_t kPrefetchDistance = 32;
constexpr int64_t kFloatsPerCacheLine = 16;
constexpr int kPrefetchLocality = 2;

inline void PrefetchForRead(const float* row, int64_t dim) {
  for (int64_t c = 0; c < dim; c += kFloatsPerCacheLine) {
    __builtin_prefetch(row + c, /*rw=*/0, kPrefetchLocality);
  }
}

inline void PrefetchForWrite(const float* row, int64_t dim) {
  for (int64_t c = 0; c < dim; c += kFloatsPerCacheLine) {
    __builtin_prefetch(row + c, /*rw=*/1, kPrefetchLocality);
  }
}

// --- Backing large tables with huge pages ----------------------------------

// A row of a large table is a TLB miss as well as a cache miss: 10,240 ids a
// step touch 10,240 distinct 4 KiB pages of a 10^6-row table, far more than
// a TLB holds, and each miss walks the page table. Backed by 2 MiB pages, a
// 256 MiB table needs 128 TLB entries. The first kernel to see a buffer of
// at least kHugePageMinBytes asks Linux to back it with transparent huge
// pages (MADV_HUGEPAGE, which THP's default "madvise" mode requires) and to
// collapse the pages it already has (MADV_COLLAPSE, Linux 6.1+) at once,
// rather than within minutes by khugepaged. Both are advice: contents never
// change, and where the kernel refuses (THP off, an older kernel, no free
// huge pages) the buffer stays as it was.
constexpr int64_t kHugePageBytes = int64_t{2} << 20;
constexpr int64_t kHugePageMinBytes = int64_t{16} << 20;

void AdviseHugePages(const Tensor& tensor) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = static_cast<int64_t>(tensor.TotalBytes());
  if (bytes < kHugePageMinBytes) return;
  const auto start = reinterpret_cast<uintptr_t>(tensor.tensor_data().data());
  const uintptr_t begin = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePageBytes - 1);
  static mutex advised_mu(LINKER_INITIALIZED);
  static auto* advised = new std::set<std::pair<uintptr_t, uintptr_t>>();
  {
    mutex_lock lock(advised_mu);
    if (!advised->insert({begin, end}).second) return;
  }
  void* range = reinterpret_cast<void*>(begin);
  if (madvise(range, end - begin, MADV_HUGEPAGE) != 0) return;
#ifndef MADV_COLLAPSE
  constexpr int MADV_COLLAPSE = 25;  // Linux 6.1's; older headers lack it.
#endif
  madvise(range, end - begin, MADV_COLLAPSE);
#endif
}

// Fails unless every id lies in [0, num_rows).
absl::Status CheckIds(const int64_t* ids, int64_t n, int64_t num_rows) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= num_rows) {
      return errors::InvalidArgument("id ", ids[i], " at position ", i,
                                     " is not in [0, ", num_rows, ").");
    }
  }
  return absl::OkStatus();
}

// --- Combining the rows of each example ------------------------------------

REGISTER_OP("EmbeddingRowsBagReduce")
    .Input("data: float")
    .Input("indices: int64")
    .Input("segment_ids: int64")
    .Input("num_segments: int64")
    .Output("output: float")
    .Attr("combiner: {'sum', 'mean', 'sqrtn'}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle data;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &data));
      DimensionHandle segments;
      TF_RETURN_IF_ERROR(c->MakeDimForScalarInput(3, &segments));
      c->set_output(0, c->Matrix(segments, c->Dim(data, 1)));
      return absl::OkStatus();
    })
    .Doc(R"doc(
SparseSegmentSum/Mean/SqrtN with num_segments: output row s combines the rows
data[indices[i]] of the positions i whose segment_ids[i] == s; empty segments
are zeros. segment_ids must be sorted.
)doc");

// What the lookup and its gradient share: the combiner, and the checks of
// inputs (0) a matrix, (1) indices and (2) segment_ids.
class BagOpBase : public OpKernel {
 public:
  explicit BagOpBase(OpKernelConstruction* context) : OpKernel(context) {
    std::string combiner;
    OP_REQUIRES_OK(context, context->GetAttr("combiner", &combiner));
    mean_ = combiner == "mean";
    sqrtn_ = combiner == "sqrtn";
  }

 protected:
  static absl::Status CheckShapes(OpKernelContext* context) {
    if (!TensorShapeUtils::IsMatrix(context->input(0).shape())) {
      return errors::InvalidArgument("Input 0 must be a matrix.");
    }
    const TensorShape& indices = context->input(1).shape();
    if (!TensorShapeUtils::IsVector(indices) ||
        indices != context->input(2).shape()) {
      return errors::InvalidArgument(
          "indices and segment_ids must be vectors of one length.");
    }
    return absl::OkStatus();
  }

  bool mean_ = false;
  bool sqrtn_ = false;
};

class BagReduceOp : public BagOpBase {
 public:
  using BagOpBase::BagOpBase;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckShapes(context));
    const Tensor& data = context->input(0);
    const Tensor& indices = context->input(1);
    const Tensor& segment_ids = context->input(2);
    const Tensor& num_segments = context->input(3);
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(num_segments.shape()),
                errors::InvalidArgument("num_segments must be a scalar."));
    const int64_t n = indices.NumElements();
    const int64_t dim = data.dim_size(1);
    const int64_t segments = num_segments.scalar<int64_t>()();
    const int64_t* ids = indices.flat<int64_t>().data();
    const int64_t* rows_of = segment_ids.flat<int64_t>().data();
    OP_REQUIRES_OK(context, CheckIds(ids, n, data.dim_size(0)));
    OP_REQUIRES(context, segments >= 0,
                errors::InvalidArgument("num_segments must be >= 0."));
    // starts[s]: the first position of segment s; starts[segments] == n.
    std::vector<int64_t> starts(segments + 1, n);
    int64_t previous = 0;
    for (int64_t i = n - 1; i >= 0; --i) {
      const int64_t s = rows_of[i];
      OP_REQUIRES(context, s >= 0 && s < segments,
                  errors::InvalidArgument("segment id ", s, " is not in [0, ",
                                          segments, ")."));
      OP_REQUIRES(context, i == n - 1 || s <= previous,
                  errors::InvalidArgument("segment ids are not sorted."));
      previous = s;
    }
    for (int64_t i = n - 1; i >= 0; --i) starts[rows_of[i]] = i;
    for (int64_t s = segments - 1; s >= 0; --s) {
      starts[s] = std::min(starts[s], starts[s + 1]);
    }

    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({segments, dim}), &output));
    AdviseHugePages(data);
    const float* table = data.flat<float>().data();
    float* out = output->flat<float>().data();
    auto combine = [&](int64_t first_segment, int64_t end_segment) {
      const int64_t end = starts[end_segment];
      for (int64_t s = first_segment; s < end_segment; ++s) {
        float* row = out + s * dim;
        std::fill(row, row + dim, 0.0f);
        for (int64_t i = starts[s]; i < starts[s + 1]; ++i) {
          if (i + kPrefetchDistance < end) {
            PrefetchForRead(table + ids[i + kPrefetchDistance] * dim, dim);
          }
          const float* looked_up = table + ids[i] * dim;
          for (int64_t c = 0; c < dim; ++c) row[c] += looked_up[c];
        }
        const int64_t count = starts[s + 1] - starts[s];
        if (count > 1 && (mean_ || sqrtn_)) {
          const float divisor =
              mean_ ? static_cast<float>(count)
                    : static_cast<float>(std::sqrt(static_cast<double>(count)));
          for (int64_t c = 0; c < dim; ++c) row[c] /= divisor;
        }
      }
    };
    const auto* threads = context->device()->tensorflow_cpu_worker_threads();
    const int64_t ids_per_segment = segments > 0 ? n / segments + 1 : 1;
    Shard(threads->num_threads, threads->workers, segments,
          /*cost_per_unit=*/ids_per_segment * dim * 8, combine);
  }
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsBagReduce").Device(DEVICE_CPU),
                        BagReduceOp);

REGISTER_OP("EmbeddingRowsBagReduceGrad")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("segment_ids: int64")
    .Input("num_rows: int64")
    .Output("values: float")
    .Output("distinct_indices: int64")
    .Attr("combiner: {'sum', 'mean', 'sqrtn'}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle grad;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &grad));
      const DimensionHandle distinct = c->UnknownDim();
      c->set_output(0, c->Matrix(distinct, c->Dim(grad, 1)));
      c->set_output(1, c->Vector(distinct));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The gradient of EmbeddingRowsBagReduce with respect to the rows it read, as
SparseSegment*GradV2 gives it: one row of values per distinct index, the
indices in increasing order.
)doc");

// Stable LSD radix sort of positions 0..n-1 by ids[position], 11 bits a
// pass: a batch's ids (thousands, below num_rows) in a few linear passes.
std::vector<int64_t> PositionsByIds(const int64_t* ids, int64_t n,
                                    int64_t num_rows) {
  constexpr int kBits = 11;
  constexpr int64_t kBuckets = int64_t{1} << kBits;
  std::vector<int64_t> order(n), scratch(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int shift = 0; shift < 63 && (num_rows - 1) >> shift > 0;
       shift += kBits) {
    std::vector<int64_t> starts(kBuckets + 1, 0);
    for (int64_t i = 0; i < n; ++i) {
      ++starts[((ids[i] >> shift) & (kBuckets - 1)) + 1];
    }
    for (int64_t b = 0; b < kBuckets; ++b) starts[b + 1] += starts[b];
    for (int64_t position : order) {
      scratch[starts[(ids[position] >> shift) & (kBuckets - 1)]++] = position;
    }
    order.swap(scratch);
  }
  return order;
}

class BagReduceGradOp : public BagOpBase {
 public:
  using BagOpBase::BagOpBase;

  void Compute(OpKernelContext* context) override {
    OP_REQUIRES_OK(context, CheckShapes(context));
    const Tensor& grad = context->input(0);
    const Tensor& indices = context->input(1);
    const Tensor& segment_ids = context->input(2);
    OP_REQUIRES(context, TensorShapeUtils::IsScalar(context->input(3).shape()),
                errors::InvalidArgument("num_rows must be a scalar."));
    const int64_t num_rows = context->input(3).scalar<int64_t>()();
    const int64_t n = indices.NumElements();
    const int64_t segments = grad.dim_size(0);
    const int64_t dim = grad.dim_size(1);
    const int64_t* ids = indices.flat<int64_t>().data();
    const int64_t* rows_of = segment_ids.flat<int64_t>().data();
    OP_REQUIRES_OK(context, CheckIds(ids, n, num_rows));
    // Each example's factor: 1, 1 / count or 1 / sqrt(count).
    std::vector<float> scale(segments, 1.0f);
    if (mean_ || sqrtn_) {
      std::vector<int64_t> counts(segments, 0);
      for (int64_t i = 0; i < n; ++i) {
        OP_REQUIRES(context, rows_of[i] >= 0 && rows_of[i] < segments,
                    errors::InvalidArgument("segment id ", rows_of[i],
                                            " is not in [0, ", segments,
                                            ")."));
        ++counts[rows_of[i]];
      }
      for (int64_t s = 0; s < segments; ++s) {
        const double count = std::max<int64_t>(counts[s], 1);
        scale[s] = static_cast<float>(mean_ ? 1.0 / count
                                            : 1.0 / std::sqrt(count));
      }
    }
    const std::vector<int64_t> order = PositionsByIds(ids, n, num_rows);
    // group_starts[k]: where the k-th distinct id begins in `order`.
    std::vector<int64_t> group_starts;
    for (int64_t i = 0; i < n; ++i) {
      if (i == 0 || ids[order[i]] != ids[order[i - 1]]) {
        group_starts.push_back(i);
      }
    }
    const int64_t distinct = static_cast<int64_t>(group_starts.size());
    group_starts.push_back(n);

    Tensor* values = nullptr;
    Tensor* distinct_indices = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({distinct, dim}), &values));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, TensorShape({distinct}), &distinct_indices));
    const float* upstream = grad.flat<float>().data();
    float* out = values->flat<float>().data();
    int64_t* out_ids = distinct_indices->flat<int64_t>().data();
    auto sum_groups = [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        out_ids[k] = ids[order[group_starts[k]]];
        float* row = out + k * dim;
        std::fill(row, row + dim, 0.0f);
        for (int64_t i = group_starts[k]; i < group_starts[k + 1]; ++i) {
          const int64_t s = rows_of[order[i]];
          const float* example = upstream + s * dim;
          for (int64_t c = 0; c < dim; ++c) row[c] += example[c] * scale[s];
        }
      }
    };
    const auto* threads = context->device()->tensorflow_cpu_worker_threads();
    Shard(threads->num_threads, threads->workers, distinct,
          /*cost_per_unit=*/dim * 4, sum_groups);
  }
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsBagReduceGrad").Device(DEVICE_CPU),
                        BagReduceGradOp);

// --- Applying an optimizer to the distinct rows ----------------------------

// The inputs of one sparse update: the table and slot variables (the first
// `num_variables` inputs), locked and ready to write in place as TensorFlow's
// own ResourceSparseApply* kernels take them, then lr, grad, indices and
// positions: the positions in indices of the rows to update, increasing, or
// a scalar for every row (`deferred_updates` applies an update in two parts).
class SparseUpdate {
 public:
  SparseUpdate(OpKernelContext* context, int num_variables)
      : locks_(MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(
            context, /*do_lock=*/false, /*sparse=*/true,
            FirstInputs(num_variables))) {
    for (int input = 0; input < num_variables; ++input) {
      Tensor tensor;
      status_ = GetInputTensorFromVariable<CPUDevice, float>(
          context, input, /*lock_held=*/false, /*sparse=*/true, &tensor);
      if (!status_.ok()) return;
      AdviseHugePages(tensor);
      tensors_.push_back(tensor);
    }
    const Tensor& first = tensors_[0];
    const Tensor& lr = context->input(num_variables);
    const Tensor& grad = context->input(num_variables + 1);
    const Tensor& indices = context->input(num_variables + 2);
    if (!TensorShapeUtils::IsScalar(lr.shape())) {
      status_ = errors::InvalidArgument("lr must be a scalar.");
      return;
    }
    lr_ = lr.scalar<float>()();
    if (!TensorShapeUtils::IsMatrix(first.shape())) {
      status_ = errors::InvalidArgument("The table must be a matrix.");
      return;
    }
    for (const Tensor& tensor : tensors_) {
      if (tensor.shape() != first.shape()) {
        status_ = errors::InvalidArgument(
            "A slot's shape differs from the table's.");
        return;
      }
    }
    n_ = indices.NumElements();
    dim_ = first.dim_size(1);
    if (!TensorShapeUtils::IsVector(indices.shape()) ||
        grad.shape() != TensorShape({n_, dim_})) {
      status_ = errors::InvalidArgument(
          "grad must be [len(indices), dim] and indices a vector.");
      return;
    }
    ids_ = indices.flat<int64_t>().data();
    grads_ = grad.flat<float>().data();
    status_ = CheckIds(ids_, n_, first.dim_size(0));
    if (!status_.ok()) return;
    const Tensor& positions = context->input(num_variables + 3);
    count_ = n_;
    if (TensorShapeUtils::IsScalar(positions.shape())) return;  // All rows.
    if (!TensorShapeUtils::IsVector(positions.shape())) {
      status_ = errors::InvalidArgument(
          "positions must be a vector, or a scalar for every row.");
      return;
    }
    positions_ = positions.flat<int64_t>().data();
    count_ = positions.NumElements();
    for (int64_t k = 0; k < count_; ++k) {
      if (positions_[k] < 0 || positions_[k] >= n_ ||
          (k > 0 && positions_[k] <= positions_[k - 1])) {
        status_ = errors::InvalidArgument(
            "positions must increase within [0, ", n_, ").");
        return;
      }
    }
  }

  const absl::Status& status() const { return status_; }
  float lr() const { return lr_; }
  float* rows(int variable) { return tensors_[variable].flat<float>().data(); }
  int num_variables() const { return static_cast<int>(tensors_.size()); }

  // Calls update({row of each variable}, grad row) for every id (of the
  // positions, if given), with the rows prefetched ahead. Distinct ids in
  // increasing order (the gradient of a bag lookup) are split across
  // threads; otherwise the ids are updated one after the other, so repeated
  // ids apply in turn.
  template <typename Update>
  void ForEachRow(OpKernelContext* context, Update update) {
    const int count = num_variables();
    std::vector<float*> bases(count);
    for (int v = 0; v < count; ++v) bases[v] = rows(v);
    const int64_t* positions = positions_;
    auto at = [positions](int64_t k) { return positions ? positions[k] : k; };
    auto work = [&](int64_t begin, int64_t end) {
      float* row[4];  // The table and at most three slots.
      for (int64_t k = begin; k < end; ++k) {
        if (k + kPrefetchDistance < end) {
          const int64_t ahead = ids_[at(k + kPrefetchDistance)] * dim_;
          for (int v = 0; v < count; ++v) {
            PrefetchForWrite(bases[v] + ahead, dim_);
          }
        }
        const int64_t i = at(k);
        for (int v = 0; v < count; ++v) row[v] = bases[v] + ids_[i] * dim_;
        update(row, grads_ + i * dim_, dim_);
      }
    };
    bool increasing = true;
    for (int64_t k = 1; k < count_ && increasing; ++k) {
      increasing = ids_[at(k)] > ids_[at(k - 1)];
    }
    if (!increasing) {
      work(0, count_);
      return;
    }
    const auto* threads = context->device()->tensorflow_cpu_worker_threads();
    Shard(threads->num_threads, threads->workers, count_,
          /*cost_per_unit=*/dim_ * count * 16, work);
  }

 private:
  VariableInputLockHolder locks_;
  std::vector<Tensor> tensors_;
  absl::Status status_;
  int64_t n_ = 0;
  int64_t dim_ = 0;
  float lr_ = 0.0f;
  const int64_t* ids_ = nullptr;
  const float* grads_ = nullptr;
  const int64_t* positions_ = nullptr;  // None: every row.
  int64_t count_ = 0;  // How many rows to update.

  static std::vector<int> FirstInputs(int count) {
    std::vector<int> inputs(count);
    for (int i = 0; i < count; ++i) inputs[i] = i;
    return inputs;
  }
};

// An update whose only hyper-parameter is the learning rate: `Rule` says how
// many variables it writes (the table first) and how one row changes.
template <typename Rule>
class LearningRateUpdateOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  void Compute(OpKernelContext* context) override {
    SparseUpdate update(context, Rule::kVariables);
    OP_REQUIRES_OK(context, update.status());
    const float lr = update.lr();
    update.ForEachRow(context, [lr](float** row, const float* g, int64_t dim) {
      Rule::Apply(row, g, dim, lr);
    });
  }
};

struct SgdRule {
  static constexpr int kVariables = 1;
  static void Apply(float** row, const float* g, int64_t dim, float lr) {
    float* w = row[0];
    for (int64_t c = 0; c < dim; ++c) w[c] -= lr * g[c];
  }
};

struct AdagradRule {
  static constexpr int kVariables = 2;
  static void Apply(float** row, const float* g, int64_t dim, float lr) {
    float* __restrict w = row[0];
    float* __restrict accumulator = row[1];
    for (int64_t c = 0; c < dim; ++c) {
      accumulator[c] += g[c] * g[c];
      w[c] -= lr * g[c] * (1.0f / std::sqrt(accumulator[c]));
    }
  }
};

REGISTER_OP("EmbeddingRowsApplySgd")
    .Input("var: resource")
    .Input("lr: float")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("positions: int64")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc("var[indices] -= lr * grad (one row per id).");

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsApplySgd").Device(DEVICE_CPU),
                        LearningRateUpdateOp<SgdRule>);

REGISTER_OP("EmbeddingRowsApplyAdagrad")
    .Input("var: resource")
    .Input("accum: resource")
    .Input("lr: float")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("positions: int64")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc("accum += g * g; var -= lr * g * rsqrt(accum), row by row.");

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsApplyAdagrad").Device(DEVICE_CPU),
                        LearningRateUpdateOp<AdagradRule>);

REGISTER_OP("EmbeddingRowsApplyLazyAdam")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("lr: float")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("positions: int64")
    .Attr("beta_1: float")
    .Attr("one_minus_beta_1: float")
    .Attr("beta_2: float")
    .Attr("one_minus_beta_2: float")
    .Attr("epsilon: float")
    .Attr("epsilon_squared: float")
    .Attr("sum_inside_sqrt: bool")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc(R"doc(
Adam without bias correction on the given rows only (lazy Adam):
m = beta_1 m + (1 - beta_1) g; v = beta_2 v + (1 - beta_2) g^2;
var -= lr m / (sqrt(v + epsilon^2) or sqrt(v) + epsilon).
)doc");

class ApplyLazyAdamOp : public OpKernel {
 public:
  explicit ApplyLazyAdamOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("beta_1", &beta_1_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("one_minus_beta_1", &one_minus_beta_1_));
    OP_REQUIRES_OK(context, context->GetAttr("beta_2", &beta_2_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("one_minus_beta_2", &one_minus_beta_2_));
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("epsilon_squared", &epsilon_squared_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("sum_inside_sqrt", &sum_inside_sqrt_));
  }

  void Compute(OpKernelContext* context) override {
    SparseUpdate update(context, /*num_variables=*/3);
    OP_REQUIRES_OK(context, update.status());
    const float lr = update.lr();
    if (sum_inside_sqrt_) {
      Apply</*kSumInsideSqrt=*/true>(context, update, lr);
    } else {
      Apply</*kSumInsideSqrt=*/false>(context, update, lr);
    }
  }

 private:
  // The constants are copied into the lambda: read through `this`, the
  // compiler would reload them after every store to a row (they could
  // alias), and the loop would not vectorize.
  template <bool kSumInsideSqrt>
  void Apply(OpKernelContext* context, SparseUpdate& update, float lr) const {
    const float beta_1 = beta_1_, one_minus_beta_1 = one_minus_beta_1_;
    const float beta_2 = beta_2_, one_minus_beta_2 = one_minus_beta_2_;
    const float epsilon = epsilon_, epsilon_squared = epsilon_squared_;
    update.ForEachRow(context, [=](float** row, const float* g, int64_t dim) {
      float* __restrict w = row[0];
      float* __restrict m = row[1];
      float* __restrict v = row[2];
      for (int64_t c = 0; c < dim; ++c) {
        m[c] = beta_1 * m[c] + one_minus_beta_1 * g[c];
        v[c] = beta_2 * v[c] + one_minus_beta_2 * (g[c] * g[c]);
        const float denominator = kSumInsideSqrt
                                      ? std::sqrt(v[c] + epsilon_squared)
                                      : std::sqrt(v[c]) + epsilon;
        w[c] -= lr * m[c] / denominator;
      }
    });
  }

  float beta_1_, one_minus_beta_1_, beta_2_, one_minus_beta_2_;
  float epsilon_, epsilon_squared_;
  bool sum_inside_sqrt_;
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsApplyLazyAdam").Device(DEVICE_CPU),
                        ApplyLazyAdamOp);

// Calls apply(raise) with raise(x) = x^power. The usual powers, 1/2 (FTRL)
// and -1/2 (Adagrad with momentum), are square roots: exactly rounded, and
// they vectorize where powf does not.
template <typename Apply>
void WithPower(float power, Apply apply) {
  if (power == 0.5f) {
    apply([](float x) { return std::sqrt(x); });
  } else if (power == -0.5f) {
    apply([](float x) { return 1.0f / std::sqrt(x); });
  } else {
    apply([power](float x) { return std::pow(x, power); });
  }
}

REGISTER_OP("EmbeddingRowsApplyFtrl")
    .Input("var: resource")
    .Input("accum: resource")
    .Input("linear: resource")
    .Input("lr: float")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("positions: int64")
    .Attr("power: float")
    .Attr("l1: float")
    .Attr("l2: float")
    .Attr("two_l2: float")
    .Attr("beta: float")
    .Attr("multiply_linear_by_lr: bool")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc(R"doc(
FTRL-proximal with the TPU's beta, on the given rows only:
accum' = accum + g^2; sigma = accum'^power - accum^power;
linear += g - sigma / lr * var (or lr g - sigma var when multiplied by lr);
var = |linear| <= threshold ? 0 : (sign(linear) threshold - linear) / quadratic.
)doc");

class ApplyFtrlOp : public OpKernel {
 public:
  explicit ApplyFtrlOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("power", &power_));
    OP_REQUIRES_OK(context, context->GetAttr("l1", &l1_));
    OP_REQUIRES_OK(context, context->GetAttr("l2", &l2_));
    OP_REQUIRES_OK(context, context->GetAttr("two_l2", &two_l2_));
    OP_REQUIRES_OK(context, context->GetAttr("beta", &beta_));
    OP_REQUIRES_OK(context, context->GetAttr("multiply_linear_by_lr",
                                             &multiply_linear_by_lr_));
  }

  void Compute(OpKernelContext* context) override {
    SparseUpdate update(context, /*num_variables=*/3);
    OP_REQUIRES_OK(context, update.status());
    WithPower(power_, [&](auto raise) {
      if (multiply_linear_by_lr_) {
        Apply<true>(context, update, raise);
      } else {
        Apply<false>(context, update, raise);
      }
    });
  }

 private:
  // The order of the operations is `tpu_update_rules._ftrl_rule`'s; the
  // constants are copied for the reason ApplyLazyAdamOp gives.
  template <bool kMultiplyByLr, typename Power>
  void Apply(OpKernelContext* context, SparseUpdate& update,
             Power raise) const {
    const float lr = update.lr();
    // TensorFlow divides a tensor by the scalar lr as a multiplication by
    // its reciprocal; so does this kernel, to round as the reference rule.
    const float inverse_lr = 1.0f / lr;
    const float l1 = l1_, l2 = l2_, two_l2 = two_l2_, beta = beta_;
    const float threshold = kMultiplyByLr ? lr * l1 : l1;
    const float quadratic_term = kMultiplyByLr ? 2.0f * lr * l2 : two_l2;
    update.ForEachRow(context, [=](float** row, const float* g, int64_t dim) {
      float* __restrict w = row[0];
      float* __restrict accumulator = row[1];
      float* __restrict linear = row[2];
      for (int64_t c = 0; c < dim; ++c) {
        const float old_power = raise(accumulator[c]);
        accumulator[c] += g[c] * g[c];
        const float new_power = raise(accumulator[c]);
        const float sigma = new_power - old_power;
        float quadratic;
        if constexpr (kMultiplyByLr) {
          linear[c] = linear[c] + lr * g[c] - sigma * w[c];
          quadratic = new_power + beta + quadratic_term;
        } else {
          linear[c] = linear[c] + g[c] - sigma * inverse_lr * w[c];
          quadratic = (new_power + beta) * inverse_lr + quadratic_term;
        }
        const float sign = linear[c] > 0.0f   ? 1.0f
                           : linear[c] < 0.0f ? -1.0f
                                              : 0.0f;
        const float shrunk = (sign * threshold - linear[c]) / quadratic;
        // A NaN linear term reaches the weight, as in the reference rule.
        w[c] = std::abs(linear[c]) <= threshold ? 0.0f : shrunk;
      }
    });
  }

  float power_, l1_, l2_, two_l2_, beta_;
  bool multiply_linear_by_lr_;
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsApplyFtrl").Device(DEVICE_CPU),
                        ApplyFtrlOp);

REGISTER_OP("EmbeddingRowsApplyAdagradMomentum")
    .Input("var: resource")
    .Input("accum: resource")
    .Input("momenta: resource")
    .Input("lr: float")
    .Input("grad: float")
    .Input("indices: int64")
    .Input("positions: int64")
    .Attr("beta2: float")
    .Attr("one_minus_beta2: float")
    .Attr("beta2_is_one: bool")
    .Attr("epsilon: float")
    .Attr("power: float")
    .Attr("momentum: float")
    .Attr("use_nesterov: bool")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc(R"doc(
Adagrad with momentum on the given rows only:
accum = accum + g^2 (or beta2 accum + (1 - beta2) g^2);
scaled = g (accum + epsilon)^power; momenta = momentum momenta + scaled;
var -= lr (momenta, or momentum momenta + scaled with Nesterov).
)doc");

class ApplyAdagradMomentumOp : public OpKernel {
 public:
  explicit ApplyAdagradMomentumOp(OpKernelConstruction* context)
      : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("beta2", &beta2_));
    OP_REQUIRES_OK(context,
                   context->GetAttr("one_minus_beta2", &one_minus_beta2_));
    OP_REQUIRES_OK(context, context->GetAttr("beta2_is_one", &beta2_is_one_));
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(context, context->GetAttr("power", &power_));
    OP_REQUIRES_OK(context, context->GetAttr("momentum", &momentum_));
    OP_REQUIRES_OK(context, context->GetAttr("use_nesterov", &use_nesterov_));
  }

  void Compute(OpKernelContext* context) override {
    SparseUpdate update(context, /*num_variables=*/3);
    OP_REQUIRES_OK(context, update.status());
    WithPower(power_, [&](auto raise) { Apply(context, update, raise); });
  }

 private:
  // `tpu_update_rules._adagrad_momentum_rule`'s operations in its order.
  template <typename Power>
  void Apply(OpKernelContext* context, SparseUpdate& update,
             Power raise) const {
    const float lr = update.lr();
    const float beta2 = beta2_, one_minus_beta2 = one_minus_beta2_;
    const float epsilon = epsilon_, momentum = momentum_;
    const bool beta2_is_one = beta2_is_one_, use_nesterov = use_nesterov_;
    update.ForEachRow(context, [=](float** row, const float* g, int64_t dim) {
      float* __restrict w = row[0];
      float* __restrict accumulator = row[1];
      float* __restrict momenta = row[2];
      for (int64_t c = 0; c < dim; ++c) {
        const float squared = g[c] * g[c];
        accumulator[c] = beta2_is_one
                             ? accumulator[c] + squared
                             : beta2 * accumulator[c] + one_minus_beta2 * squared;
        const float scaled = g[c] * raise(accumulator[c] + epsilon);
        momenta[c] = momentum * momenta[c] + scaled;
        const float step =
            use_nesterov ? momentum * momenta[c] + scaled : momenta[c];
        w[c] = w[c] - lr * step;
      }
    });
  }

  float beta2_, one_minus_beta2_, epsilon_, power_, momentum_;
  bool beta2_is_one_, use_nesterov_;
};

REGISTER_KERNEL_BUILDER(
    Name("EmbeddingRowsApplyAdagradMomentum").Device(DEVICE_CPU),
    ApplyAdagradMomentumOp);

// --- Which pending rows the next lookup reads --------------------------------

REGISTER_OP("EmbeddingRowsPartition")
    .Input("indices: int64")
    .Input("next_indices: int64")
    .Input("num_rows: int64")
    .Output("read: int64")
    .Output("unread: int64")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      return absl::OkStatus();
    })
    .Doc(R"doc(
The positions in `indices` (the rows a pending update writes) of the ids that
`next_indices` holds (`read`) and of the others (`unread`), each in increasing
order. Ids of `next_indices` outside [0, num_rows) match nothing.
)doc");

// Up to this many rows, membership is a bitmap over the rows (1 MiB).
constexpr int64_t kBitmapMaxRows = int64_t{1} << 23;

class PartitionOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* context) override {
    const Tensor& indices = context->input(0);
    const Tensor& next_indices = context->input(1);
    OP_REQUIRES(context,
                TensorShapeUtils::IsVector(indices.shape()) &&
                    TensorShapeUtils::IsVector(next_indices.shape()) &&
                    TensorShapeUtils::IsScalar(context->input(2).shape()),
                errors::InvalidArgument(
                    "indices and next_indices must be vectors, num_rows a "
                    "scalar."));
    const int64_t num_rows = context->input(2).scalar<int64_t>()();
    const int64_t n = indices.NumElements();
    const int64_t* ids = indices.flat<int64_t>().data();
    OP_REQUIRES_OK(context, CheckIds(ids, n, num_rows));
    std::vector<bool> is_read(n, false);
    const int64_t* next_ids = next_indices.flat<int64_t>().data();
    const int64_t m = next_indices.NumElements();
    if (num_rows <= kBitmapMaxRows) {
      // A bit per row (1 MiB at most), set and tested in cache.
      std::vector<bool> next(num_rows, false);
      for (int64_t k = 0; k < m; ++k) {
        if (next_ids[k] >= 0 && next_ids[k] < num_rows) {
          next[next_ids[k]] = true;
        }
      }
      for (int64_t i = 0; i < n; ++i) is_read[i] = next[ids[i]];
    } else {
      // Larger tables: the next ids in range, radix-sorted, merged with the
      // pending ids in their order.
      std::vector<int64_t> in_range;
      in_range.reserve(m);
      for (int64_t k = 0; k < m; ++k) {
        if (next_ids[k] >= 0 && next_ids[k] < num_rows) {
          in_range.push_back(next_ids[k]);
        }
      }
      const int64_t count = static_cast<int64_t>(in_range.size());
      std::vector<int64_t> sorted_next(count);
      const std::vector<int64_t> next_order =
          PositionsByIds(in_range.data(), count, num_rows);
      for (int64_t k = 0; k < count; ++k) {
        sorted_next[k] = in_range[next_order[k]];
      }
      int64_t j = 0;
      for (int64_t position : PositionsByIds(ids, n, num_rows)) {
        while (j < count && sorted_next[j] < ids[position]) ++j;
        is_read[position] = j < count && sorted_next[j] == ids[position];
      }
    }
    const int64_t num_read = std::count(is_read.begin(), is_read.end(), true);
    Tensor* read = nullptr;
    Tensor* unread = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({num_read}), &read));
    OP_REQUIRES_OK(context, context->allocate_output(
                                1, TensorShape({n - num_read}), &unread));
    int64_t* read_out = read->flat<int64_t>().data();
    int64_t* unread_out = unread->flat<int64_t>().data();
    for (int64_t i = 0; i < n; ++i) {
      *(is_read[i] ? read_out++ : unread_out++) = i;
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("EmbeddingRowsPartition").Device(DEVICE_CPU),
                        PartitionOp);

}  // namespace
}  // namespace tensorflow
