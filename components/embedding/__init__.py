"""TPU embedding columns declared as in TF 1.15, configured for today's API.

Declare columns with the TF 1.15 `tf.tpu.experimental.embedding_column`
signatures, group them with an optimizer in an `EmbeddingSpec`, serialise the
spec to JSON, resolve it at training time against the Transform output, and
compile it to `tf.tpu.experimental.embedding.FeatureConfig`s:

  spec = EmbeddingSpec(
      columns=[embedding_column(
          categorical_column_with_transform_vocabulary('genre_id', 'genre'),
          dimension=16)],
      optimizer=Adagrad(learning_rate=0.1))
  resolved = EmbeddingSpec.from_json(spec.to_json()).resolve(
      tf_transform_output=tft.TFTransformOutput(transform_dir))
  resolved.memory_plan().check(tpu_hbm_bytes_per_device('v5e'), num_devices=8)
  feature_config = resolved.compile(global_step)
  ids, weights = resolved.id_mapper()(features)
"""

from components.embedding.categorical import as_categorical_column
from components.embedding.categorical import CategoricalColumn
from components.embedding.categorical import categorical_column_with_identity
from components.embedding.categorical import categorical_column_with_transform_vocabulary
from components.embedding.categorical import categorical_column_with_vocabulary_file
from components.embedding.categorical import categorical_column_with_vocabulary_list
from components.embedding.categorical import IdentityColumn
from components.embedding.categorical import sequence_categorical_column_with_identity
from components.embedding.categorical import sequence_categorical_column_with_transform_vocabulary
from components.embedding.categorical import sequence_categorical_column_with_vocabulary_file
from components.embedding.categorical import sequence_categorical_column_with_vocabulary_list
from components.embedding.categorical import TransformVocabularyColumn
from components.embedding.categorical import VocabularyFileColumn
from components.embedding.categorical import VocabularyListColumn
from components.embedding.categorical import weighted_categorical_column
from components.embedding.categorical import WeightedColumn
from components.embedding.columns import AUTO
from components.embedding.columns import embedding_column
from components.embedding.columns import EmbeddingColumn
from components.embedding.columns import shared_embedding_columns
from components.embedding.ids import IdMapper
from components.embedding.initializers import initializer
from components.embedding.initializers import Initializer
from components.embedding.memory import host_memory_bytes
from components.embedding.memory import MemoryBudgetExceededError
from components.embedding.memory import MemoryPlan
from components.embedding.memory import plan_memory
from components.embedding.memory import TableMemory
from components.embedding.memory import TPU_GENERATIONS
from components.embedding.memory import TpuGeneration
from components.embedding.memory import TpuSlice
from components.embedding.memory import format_bytes
from components.embedding.memory import parse_tpu_slice
from components.embedding.memory import sparse_core_padded_shape
from components.embedding.memory import tpu_generation
from components.embedding.memory import TPU_HBM_BYTES_PER_CHIP
from components.embedding.memory import tpu_hbm_bytes_per_device
from components.embedding.optimizers import Adagrad
from components.embedding.optimizers import AdagradMomentum
from components.embedding.optimizers import Adam
from components.embedding.optimizers import EmbeddingOptimizer
from components.embedding.optimizers import FTRL
from components.embedding.optimizers import SGD
from components.embedding.registry import allow_module_prefixes
from components.embedding.registry import SpecSerializationError
from components.embedding.registry import SpecValidationError
from components.embedding.resolution import transform_vocabulary_size
from components.embedding.resolved import ResolvedEmbeddingSpec
from components.embedding.resolved import ResolvedFeature
from components.embedding.resolved import ResolvedTable
from components.embedding.schedules import learning_rate_schedule
from components.embedding.schedules import LearningRateSchedule
from components.embedding.spec import EmbeddingSpec
