"""The training job's settings: a plain, validated, JSON-serialisable dataclass.

It travels in the Trainer component's ``custom_config`` (and so in a compiled
Kubeflow pipeline), so every field is a JSON scalar; user code is named by
dotted path.
"""

import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Union

from components.trainer import tasks


# Settings that change how a run is carried out and reported, not the model it
# trains: a rerun after a crash resumes across changes to them
# (``run_identity``).
EXECUTION_ONLY_FIELDS = ('steps_per_execution', 'log_every',
                         'checkpoint_every')


def _is_int(value: Any, minimum: int) -> bool:
  """An int (not a bool) >= ``minimum``."""
  return (isinstance(value, int) and not isinstance(value, bool) and
          value >= minimum)


@dataclasses.dataclass
class TrainingConfig:
  """How to train: steps, batches, checkpoints, device and the user's model.

  Attributes:
    model_fn: dotted path of ``fn(resolved_spec, dense_feature_keys) ->
      tf_keras.Model``; the model maps ``{'embeddings': {...}, 'features':
      {...}}`` to the task's outputs (``components.trainer.tasks``: logits
      [batch, 1] for a binary task).
    label_key: the transformed label feature.
    raw_label_key: the label in raw tf.Examples, which serving requests do
      not carry (left out of the serving signature's parsing spec).
    task: what the model predicts (a ``TaskConfig`` or its dict): binary
      classification by default, multiclass, regression or the user's loss.
    train_steps: optimizer steps in total (a resumed run continues to it).
    eval_steps: batches evaluated at the end; 0 evaluates the whole eval split.
    batch_size: global batch size; every batch has exactly this many rows (the
      last partial batch is dropped) so shapes are static, as TPUs require.
    dense_learning_rate: Adam learning rate of the dense layers.
    checkpoint_every: steps between checkpoints (tables, optimizer slots, the
      step and the input position).
    log_every: steps between progress lines and TensorBoard points.
    steps_per_execution: optimizer steps per call of the traced training
      function (Keras's ``steps_per_execution``, TPUEstimator's
      ``iterations_per_loop``): the steps run in a graph loop, so Python and
      the host read the loss once per call instead of once per step. A call
      also ends at every log and checkpoint step and after a step whose loss
      is not finite.
    shuffle_buffer: examples in the training shuffle buffer.
    in_memory_train_mib: training files that total at most this many MiB (as
      Transform wrote them, gzipped) are read and parsed once into memory,
      and each epoch is a seeded permutation of all their examples (a full
      shuffle; ``shuffle_buffer`` applies to streamed files). Reading,
      decompressing and parsing every epoch were most of the input
      pipeline's CPU. The parsed data lives in host memory: 12.7 MiB of the
      demo's gzipped records (410k examples) raised the peak RSS by about
      320 MiB and took about 1 s to load. 0 never holds them in memory.
    parse_once: training files above ``in_memory_train_mib`` are parsed
      once into blocks of about ``shuffle_buffer`` examples in a local
      temporary folder (``tempfile.gettempdir()``, so ``TMPDIR`` moves it;
      removed when training ends), and every epoch reads the blocks and
      each block's examples in a new random order
      (``components.trainer.parsed_blocks``). Only the examples the run
      takes (``train_steps * batch_size``, at most all) are parsed. The
      folder needs about the parsed size of those examples (int64 ids: 5.7
      times the gzipped files for the demo's transformed examples). False
      streams the files through a ``shuffle_buffer`` and parses them every
      epoch, which on two cores delivered less than half the examples/s.
    seed: seeds the shuffle and the dense initialisation.
    tpu: None trains on the CPU/GPU; '' or 'local' the TPU VM's own TPU; else
      the name or grpc:// address given to ``TPUClusterResolver``.
    pipeline_execution_with_tensor_core: ``TPUEmbedding``'s option to overlap
      the embedding and TensorCore work of consecutive steps.
    export_projector: also write the tables and vocabularies for TensorBoard's
      embedding projector.
    spec_module_prefixes: module prefixes whose functions the embedding
      spec may name by dotted path (learning-rate functions, initializers);
      the top-level package of ``model_fn`` is always allowed. Any other path
      in the spec is refused before it is imported.
    embedding_engine: on TPU, 'auto' (from the TPU's embedding hardware),
      or force 'v0' (replicated tables), 'v1' (TPUEmbedding) or 'v2'
      (SparseCore); see ``components.trainer.engines``.
    warm_start_dense: with a base model, also restore the dense model (its
      variables must match the base's); False warm-starts the tables only.
    warm_start_on_mismatch: with a base model, what a table whose dimension,
      row kind or optimizer slots changed does: 'error' (refuse, the
      default) or 'fresh' (start it fresh, or keep its rows with fresh
      slots; logged). See ``components.trainer.warm_start``.
    min_table_movement: the Trainer warns about a table whose touched rows
      moved on average less than this share of their initial norm (see
      ``components.trainer.health``); 0 turns the warning off.
  """

  model_fn: str
  label_key: str
  raw_label_key: Optional[str] = None
  task: Union[tasks.TaskConfig, Dict[str, Any]] = dataclasses.field(
      default_factory=tasks.TaskConfig)
  train_steps: int = 1000
  eval_steps: int = 0
  batch_size: int = 256
  dense_learning_rate: float = 1e-3
  checkpoint_every: int = 200
  log_every: int = 50
  steps_per_execution: int = 50
  shuffle_buffer: int = 10_000
  in_memory_train_mib: int = 16
  parse_once: bool = True
  seed: int = 42
  tpu: Optional[str] = None
  pipeline_execution_with_tensor_core: bool = False
  export_projector: bool = True
  spec_module_prefixes: List[str] = dataclasses.field(default_factory=list)
  embedding_engine: str = 'auto'
  warm_start_dense: bool = True
  warm_start_on_mismatch: str = 'error'
  min_table_movement: float = 0.05

  def __post_init__(self):
    if isinstance(self.task, dict):
      known = {f.name for f in dataclasses.fields(tasks.TaskConfig)}
      unknown = sorted(set(self.task) - known)
      if unknown:
        raise ValueError(f'Unknown TrainingConfig.task fields {unknown}; '
                         f'known: {sorted(known)}.')
      self.task = tasks.TaskConfig(**self.task)
    for name in ('train_steps', 'batch_size', 'checkpoint_every', 'log_every',
                 'steps_per_execution', 'shuffle_buffer'):
      if not _is_int(getattr(self, name), minimum=1):
        raise ValueError(f'TrainingConfig.{name} must be an int > 0, got '
                         f'{getattr(self, name)!r}.')
    for name in ('eval_steps', 'in_memory_train_mib'):
      if not _is_int(getattr(self, name), minimum=0):
        raise ValueError(f'TrainingConfig.{name} must be an int >= 0, got '
                         f'{getattr(self, name)!r}.')
    rate = self.dense_learning_rate
    if (isinstance(rate, bool) or not isinstance(rate, (int, float)) or
        not math.isfinite(rate) or rate <= 0):
      raise ValueError('TrainingConfig.dense_learning_rate must be a finite '
                       f'number > 0, got {rate!r}.')
    for name in ('pipeline_execution_with_tensor_core', 'export_projector',
                 'parse_once'):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f'TrainingConfig.{name} must be true or false, got '
                         f'{getattr(self, name)!r}.')
    if not 0 <= self.min_table_movement < 1:
      raise ValueError('TrainingConfig.min_table_movement must be in [0, 1), '
                       f'got {self.min_table_movement!r}.')
    if self.embedding_engine not in ('auto', 'v0', 'v1', 'v2'):
      raise ValueError("TrainingConfig.embedding_engine must be 'auto', 'v0', "
                       f"'v1' or 'v2', got {self.embedding_engine!r}.")
    if self.warm_start_on_mismatch not in ('error', 'fresh'):
      raise ValueError("TrainingConfig.warm_start_on_mismatch must be 'error' "
                       f"or 'fresh', got {self.warm_start_on_mismatch!r}.")
    if '.' not in self.model_fn:
      raise ValueError(f'TrainingConfig.model_fn must be a dotted path such as '
                       f'"my_package.model.build", got {self.model_fn!r}.')

  def with_steps(self, train_steps: int = 0,
                 eval_steps: int = 0) -> 'TrainingConfig':
    """A copy with ``train_args.num_steps`` / ``eval_args.num_steps`` applied.

    TFX's protos say 0 for "not set"; set values replace the config's.
    """
    return dataclasses.replace(
        self, task=dataclasses.replace(self.task),
        train_steps=train_steps or self.train_steps,
        eval_steps=eval_steps or self.eval_steps)

  def allowed_spec_prefixes(self) -> List[str]:
    """``spec_module_prefixes`` plus the top-level package of ``model_fn``."""
    return list(dict.fromkeys(
        [self.model_fn.split('.')[0]] + list(self.spec_module_prefixes)))

  def run_identity(self, training_input: str) -> Dict[str, Any]:
    """The settings that decide the trained model, for resuming a run.

    Every field but ``EXECUTION_ONLY_FIELDS``; ``in_memory_train_mib`` and
    ``parse_once`` are replaced by their outcome for this run's files
    (``training_input``: ``inputs.training_input``), which decides the order
    of the examples and the form of the input position in a checkpoint.
    """
    identity = self.to_dict()
    for name in EXECUTION_ONLY_FIELDS + ('in_memory_train_mib', 'parse_once'):
      del identity[name]
    identity['training_input'] = training_input
    return identity

  @property
  def on_tpu(self) -> bool:
    return self.tpu is not None

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> 'TrainingConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f'Unknown TrainingConfig fields {unknown}; known: '
                       f'{sorted(known)}.')
    return cls(**values)

  @classmethod
  def from_json(cls, text: str) -> 'TrainingConfig':
    return cls.from_dict(json.loads(text))
