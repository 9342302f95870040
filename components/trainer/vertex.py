"""VertexTpuEmbeddingTrainer: the TPU embedding Trainer as a Vertex AI job.

On Vertex AI Pipelines the component's own container only launches the
training: TFX's AI Platform executor forwards the inputs, outputs and execution
properties to ``python -m tfx.scripts.run_executor`` in a Vertex AI custom job,
which runs ``components.trainer.executor.Executor`` (the same training as
locally) on a TPU VM. The job's settings are the component's ``custom_config``
under the keys of ``tfx.v1.extensions.google_cloud_ai_platform``, so the
compiled pipeline states them in full.
"""

import dataclasses
import math
import re
from typing import Any, Dict, Optional

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import (
    executor as ai_platform_executor)

from components.embedding import memory
from components.trainer import component
from components.trainer import config as config_lib
from components.trainer import executor

# TPU VM machine types by prefix, and their TPU generation. The suffix counts
# the chips of one VM: ct5lp-hightpu-4t (v5e), ct5p-hightpu-4t (v5p),
# ct6e-standard-4t (v6e) are 4-chip hosts (cloud.google.com/tpu/docs/v6e,
# /v5e; Vertex AI "Configure compute resources for training"). A multi-host
# slice is ``tpu_topology`` (e.g. '4x4' = 16 v6e chips) over VMs of that
# machine type: one worker-pool replica per VM.
_MACHINE_TYPE_TPU = {'ct4p-': 'v4', 'ct5lp-': 'v5e', 'ct5p-': 'v5p',
                     'ct6e-': 'v6e'}
# Vertex AI accelerator types of the ``cloud-tpu`` machine type.
ACCELERATOR_TPU = {'TPU_V2': 'v2', 'TPU_V3': 'v3', 'TPU_V4_POD': 'v4'}
CLOUD_TPU_MACHINE_TYPE = 'cloud-tpu'


@dataclasses.dataclass(frozen=True)
class VertexTpuJob:
  """Where the training job runs: a Vertex AI custom job on one TPU VM.

  Attributes:
    project: the Google Cloud project of the job.
    region: the Vertex AI region (it must offer the TPU).
    image_uri: the container image with this project installed.
    machine_type: a TPU VM machine type such as 'ct5lp-hightpu-4t', or
      'cloud-tpu' with ``accelerator_type`` and ``accelerator_count``.
    accelerator_type: with 'cloud-tpu': 'TPU_V2', 'TPU_V3' or 'TPU_V4_POD'.
    accelerator_count: with 'cloud-tpu': TPU cores (8 for a v2-8 or v3-8).
    tpu_topology: optional TPU topology, e.g. '2x2x1' for TPU_V4_POD.
    service_account: optional service account the job runs as.
  """

  project: str
  region: str
  image_uri: str
  machine_type: str = 'ct6e-standard-4t'
  accelerator_type: Optional[str] = None
  accelerator_count: Optional[int] = None
  tpu_topology: Optional[str] = None
  service_account: Optional[str] = None

  def __post_init__(self):
    for name in ('project', 'region', 'image_uri', 'machine_type'):
      if not getattr(self, name):
        raise ValueError(f'VertexTpuJob.{name} is required.')
    if self.machine_type == CLOUD_TPU_MACHINE_TYPE:
      if self.accelerator_type not in ACCELERATOR_TPU:
        raise ValueError(
            f'machine_type cloud-tpu needs accelerator_type in '
            f'{sorted(ACCELERATOR_TPU)}, got {self.accelerator_type!r}.')
      if not self.accelerator_count or self.accelerator_count <= 0:
        raise ValueError('machine_type cloud-tpu needs accelerator_count > 0 '
                         f'(TPU cores), got {self.accelerator_count!r}.')
    elif self.accelerator_type or self.accelerator_count:
      raise ValueError(
          f'accelerator_type and accelerator_count go with machine_type '
          f'cloud-tpu; {self.machine_type} has its TPU built in.')
    elif self.generation is None:
      raise ValueError(
          f'{self.machine_type!r} is not a TPU VM machine type (known '
          f'prefixes: {sorted(_MACHINE_TYPE_TPU)}) nor '
          f'{CLOUD_TPU_MACHINE_TYPE!r}.')

  @property
  def generation(self) -> Optional[str]:
    """The TPU generation ('v5e', 'v3', ...)."""
    if self.machine_type == CLOUD_TPU_MACHINE_TYPE:
      return ACCELERATOR_TPU.get(self.accelerator_type)
    for prefix, generation in _MACHINE_TYPE_TPU.items():
      if self.machine_type.startswith(prefix):
        return generation
    return None

  @property
  def chips_per_vm(self) -> int:
    """Chips of one VM: the machine type's '-<n>t' suffix."""
    match = re.search(r'-(\d+)t$', self.machine_type)
    return int(match.group(1)) if match else 1

  @property
  def num_chips(self) -> int:
    """Chips of the slice: the topology's product, else one VM's chips."""
    if self.machine_type == CLOUD_TPU_MACHINE_TYPE:
      return self.accelerator_count // 2  # cloud-tpu counts TensorCores.
    if self.tpu_topology:
      return math.prod(int(d) for d in self.tpu_topology.split('x'))
    return self.chips_per_vm

  @property
  def replica_count(self) -> int:
    """VMs of the slice: one worker-pool replica per host."""
    if self.machine_type == CLOUD_TPU_MACHINE_TYPE:
      return 1
    return max(self.num_chips // self.chips_per_vm, 1)

  @property
  def tpu_type(self) -> Optional[str]:
    """The slice ('v6e-16', 'v5p-8', 'v3-8'), which bounds the memory plan."""
    generation = self.generation
    if generation is None:
      return None
    return memory.TpuSlice(memory.TPU_GENERATIONS[generation],
                           self.num_chips).name

  def machine_spec(self) -> Dict[str, Any]:
    """The worker pool's ``machine_spec`` (Vertex AI ``MachineSpec``)."""
    spec = {'machine_type': self.machine_type}
    if self.accelerator_type:
      spec['accelerator_type'] = self.accelerator_type
      spec['accelerator_count'] = self.accelerator_count
    if self.tpu_topology:
      spec['tpu_topology'] = self.tpu_topology
    return spec

  def custom_config(self) -> Dict[str, Any]:
    """The Trainer's ``custom_config`` read by TFX's AI Platform executor."""
    job_spec = {
        'worker_pool_specs': [{
            'machine_spec': self.machine_spec(),
            'replica_count': self.replica_count,
            'container_spec': {'image_uri': self.image_uri},
        }],
    }
    if self.service_account:
      job_spec['service_account'] = self.service_account
    cloud = tfx.extensions.google_cloud_ai_platform
    return {
        cloud.ENABLE_VERTEX_KEY: True,
        cloud.VERTEX_REGION_KEY: self.region,
        cloud.TRAINING_ARGS_KEY: {'project': self.project,
                                  'job_spec': job_spec},
    }


class VertexExecutor(ai_platform_executor.GenericExecutor):
  """Runs the TPU embedding Trainer's executor in a Vertex AI custom job."""

  def _GetExecutorClass(self):
    return executor.Executor


class VertexTpuEmbeddingTrainer(component.TpuEmbeddingTrainer):
  """TpuEmbeddingTrainer whose training runs as a Vertex AI custom job on TPUs.

  Takes the arguments of ``TpuEmbeddingTrainer`` plus ``vertex_job``. The
  job runs on the TPU VM itself, so ``training_config.tpu`` must be 'local'
  (or ''), and ``tpu_type`` defaults to the job's TPU generation.
  """

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexExecutor)

  def __init__(self, *, vertex_job: VertexTpuJob,
               training_config: config_lib.TrainingConfig,
               tpu_type: Optional[str] = None, **kwargs: Any):
    if isinstance(training_config, dict):
      training_config = config_lib.TrainingConfig.from_dict(training_config)
    if training_config.tpu not in ('local', ''):
      raise ValueError(
          "The Vertex AI job trains on its own TPU VM: set TrainingConfig.tpu "
          f"to 'local', got {training_config.tpu!r}.")
    super().__init__(training_config=training_config,
                     tpu_type=tpu_type or vertex_job.tpu_type,
                     custom_config=vertex_job.custom_config(), **kwargs)
