"""The Vertex AI (Kubeflow Pipelines v2) runner: what the compiled JSON holds.

Nothing here contacts Google Cloud: the pipeline is only compiled, the Vertex
AI job launch is replaced by a recorder, and ``--submit`` runs without
credentials.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, Tuple

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.extensions.google_cloud_ai_platform.trainer import (
    executor as ai_platform_executor)
from tfx.orchestration.kubeflow.v2.container import (
    kubeflow_v2_entrypoint_utils)

from components.embedding_stats import artifact as stats_artifact
from components.trainer import vertex
from pipelines.movies import kubeflow_v2_runner
from pipelines.movies import pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 'us-docker.pkg.dev/my-project/pipelines/movies:1.0'
TRAINER_IMAGE = 'us-docker.pkg.dev/my-project/pipelines/movies-tpu:1.0'
PIPELINE_ROOT = 'gs://my-bucket/pipelines'
COMMON_ARGS = ['--project', 'my-project', '--region', 'us-central1',
               '--image', IMAGE, '--pipeline-root', PIPELINE_ROOT]
TASKS = {'MoviesExampleGen', 'StatisticsGen', 'SchemaGen', 'Transform',
         'EmbeddingStatsGen', 'VertexTpuEmbeddingTrainer'}
BEAM_TASKS = ['MoviesExampleGen', 'StatisticsGen', 'Transform',
              'EmbeddingStatsGen']
TRAINER = 'VertexTpuEmbeddingTrainer'
CLOUD = tfx.extensions.google_cloud_ai_platform


def load_pipeline_spec(path: str) -> Tuple[str, Any]:
  """The file's text and its PipelineSpec (also from a PipelineJob JSON)."""
  with open(path) as f:
    text = f.read()
  document = json.loads(text)
  document = document.get('pipelineSpec', document)
  return text, json_format.ParseDict(document,
                                     pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope='module')
def compiled(tmp_path_factory) -> Dict[str, Tuple[str, Any]]:
  """Both TPU forms, compiled with the runner's CLI entry point."""
  forms = {
      'tpu_vm': ['--tpu-machine-type', 'ct5lp-hightpu-4t',
                 '--trainer-image', TRAINER_IMAGE],
      'cloud_tpu': ['--tpu-accelerator', 'TPU_V3', '--tpu-cores', '8',
                    '--database-uri', 'gs://my-bucket/data/movies.db'],
  }
  result = {}
  for name, extra in forms.items():
    output = str(tmp_path_factory.mktemp(name) / 'pipeline.json')
    assert kubeflow_v2_runner.main(
        COMMON_ARGS + ['--output', output] + extra) == 0
    result[name] = load_pipeline_spec(output)
  return result


def _executor(spec: Any, task: str) -> Any:
  """The task's PipelineContainerSpec (image, command, args)."""
  deployment = json_format.ParseDict(
      json_format.MessageToDict(spec.deployment_spec),
      pipeline_spec_pb2.PipelineDeploymentConfig())
  component = spec.components[spec.root.dag.tasks[task].component_ref.name]
  return deployment.executors[component.executor_label].container


def _parameter(spec: Any, task: str, name: str) -> str:
  """A constant string parameter (schema 2.0 or 2.1 encoding)."""
  value = spec.root.dag.tasks[task].inputs.parameters[name].runtime_value
  return value.constant_value.string_value or value.constant.string_value


def _custom_config(spec: Any) -> Dict[str, Any]:
  return json.loads(_parameter(spec, TRAINER, 'custom_config'))


def _worker_pool(spec: Any) -> Dict[str, Any]:
  training_args = _custom_config(spec)[CLOUD.TRAINING_ARGS_KEY]
  (pool,) = training_args['job_spec']['worker_pool_specs']
  return pool


@pytest.mark.parametrize('form', ['tpu_vm', 'cloud_tpu'])
def test_all_components_are_tasks(compiled, form):
  _, spec = compiled[form]
  assert set(spec.root.dag.tasks) == TASKS
  assert set(spec.root.dag.tasks[TRAINER].dependent_tasks) == {
      'Transform', 'EmbeddingStatsGen', 'MoviesExampleGen'}  # Raw examples.


def test_custom_artifact_type_is_declared(compiled):
  _, spec = compiled['tpu_vm']
  stats = spec.components[
      spec.root.dag.tasks['EmbeddingStatsGen'].component_ref.name]
  trainer = spec.components[spec.root.dag.tasks[TRAINER].component_ref.name]
  for artifact_spec in (
      stats.output_definitions.artifacts['statistics'],
      trainer.input_definitions.artifacts['embedding_statistics']):
    schema = artifact_spec.artifact_type.instance_schema
    assert f'title: {stats_artifact.TYPE_NAME}' in schema


def test_custom_artifact_type_resolves_at_run_time(compiled):
  """The container entry point imports the type name as a class path."""
  _, spec = compiled['tpu_vm']
  trainer = spec.components[spec.root.dag.tasks[TRAINER].component_ref.name]
  artifact_type = trainer.input_definitions.artifacts[
      'embedding_statistics'].artifact_type
  executor_input = pipeline_spec_pb2.ExecutorInput()
  executor_input.inputs.artifacts['embedding_statistics'].artifacts.add(
      name='statistics', uri=f'{PIPELINE_ROOT}/stats', type=artifact_type)
  parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(
      executor_input.inputs.artifacts)
  (statistics,) = parsed['embedding_statistics']
  assert isinstance(statistics, stats_artifact.EmbeddingStatistics)
  assert statistics.uri == f'{PIPELINE_ROOT}/stats'


def test_beam_components_run_on_dataflow_from_the_image(compiled):
  _, spec = compiled['tpu_vm']
  for task in BEAM_TASKS:
    args = list(_executor(spec, task).args)
    for expected in ['--runner=DataflowRunner', '--project=my-project',
                     '--region=us-central1',
                     f'--temp_location={PIPELINE_ROOT}/dataflow-tmp',
                     '--machine_type=n1-standard-4',
                     f'--sdk_container_image={IMAGE}',
                     '--sdk_location=container']:
      assert expected in args, (task, expected, args)


@pytest.mark.parametrize('form', ['tpu_vm', 'cloud_tpu'])
def test_every_component_runs_in_the_image(compiled, form):
  _, spec = compiled[form]
  for task in TASKS:
    container = _executor(spec, task)
    assert container.image == IMAGE
    assert list(container.command)[-1] == (
        'tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor')


def test_trainer_runs_as_vertex_job_on_tpu_vm(compiled):
  _, spec = compiled['tpu_vm']
  args = list(_executor(spec, TRAINER).args)
  assert args[args.index('--executor_class_path') + 1] == (
      'components.trainer.vertex.VertexExecutor')
  config = _custom_config(spec)
  assert config[CLOUD.ENABLE_VERTEX_KEY] is True
  assert config[CLOUD.VERTEX_REGION_KEY] == 'us-central1'
  assert config[CLOUD.TRAINING_ARGS_KEY]['project'] == 'my-project'
  pool = _worker_pool(spec)
  assert pool['machine_spec'] == {'machine_type': 'ct5lp-hightpu-4t'}
  assert pool['container_spec'] == {'image_uri': TRAINER_IMAGE}
  assert pool['replica_count'] == 1
  assert json.loads(_parameter(spec, TRAINER, 'training_config'))[
      'tpu'] == 'local'
  assert _parameter(spec, TRAINER, 'tpu_type') == 'v5e-4'
  # Each pipeline job writes its outputs in a folder of its own; a crashed
  # run's state waits for the rerun under the root that every job shares.
  assert _parameter(spec, TRAINER, 'resume_root') == (
      PIPELINE_ROOT + '/TpuEmbeddingTrainer/resume')


def test_trainer_on_cloud_tpu_accelerator(compiled):
  _, spec = compiled['cloud_tpu']
  pool = _worker_pool(spec)
  assert pool['machine_spec'] == {'machine_type': 'cloud-tpu',
                                  'accelerator_type': 'TPU_V3',
                                  'accelerator_count': 8}
  assert pool['container_spec'] == {'image_uri': IMAGE}
  assert _parameter(spec, TRAINER, 'tpu_type') == 'v3-8'
  assert _parameter(spec, 'MoviesExampleGen', 'database_uri') == (
      'gs://my-bucket/data/movies.db')


@pytest.mark.parametrize('form', ['tpu_vm', 'cloud_tpu'])
def test_nothing_local_leaks(compiled, form, tmp_path_factory):
  text, spec = compiled[form]
  home = os.path.expanduser('~')
  for local in [REPO_ROOT, '/tmp/', home + '/', '/work/',
                str(tmp_path_factory.getbasetemp())]:
    assert local not in text, local
  assert 'module_file' not in text
  assert 'file://' not in text
  assert _parameter(spec, 'Transform', 'preprocessing_fn') == (
      pipeline.PREPROCESSING_FN)


def test_vertex_executor_launches_the_project_executor(monkeypatch):
  """TFX's AI Platform executor gets our executor and the TPU job spec."""
  calls = []
  monkeypatch.setattr(ai_platform_executor.runner, 'start_cloud_training',
                      lambda *args: calls.append(args))
  job = vertex.VertexTpuJob(project='p', region='europe-west4',
                            image_uri=IMAGE)
  vertex.VertexExecutor().Do(
      {}, {}, {'custom_config': json.dumps(job.custom_config())})
  ((_, _, _, class_path, job_args, _, _, enable_vertex, region),) = calls
  assert class_path == 'components.trainer.executor.Executor'
  assert enable_vertex is True and region == 'europe-west4'
  assert job_args['project'] == 'p'
  assert job_args['job_spec']['worker_pool_specs'][0]['machine_spec'] == {
      'machine_type': 'ct6e-standard-4t'}


def test_vertex_trainer_needs_the_local_tpu():
  job = vertex.VertexTpuJob(project='p', region='r', image_uri=IMAGE)
  with pytest.raises(ValueError, match="'local'"):
    vertex.VertexTpuEmbeddingTrainer(
        vertex_job=job, training_config=pipeline.default_training_config())


@pytest.mark.parametrize('kwargs,message', [
    ({'machine_type': 'n1-standard-8'}, 'not a TPU VM machine type'),
    ({'machine_type': 'cloud-tpu', 'accelerator_type': 'NVIDIA_TESLA_T4',
      'accelerator_count': 1}, 'accelerator_type'),
    ({'machine_type': 'ct5lp-hightpu-4t', 'accelerator_type': 'TPU_V3',
      'accelerator_count': 8}, 'has its TPU built in'),
])
def test_vertex_job_rejects_non_tpu_machines(kwargs, message):
  with pytest.raises(ValueError, match=message):
    vertex.VertexTpuJob(project='p', region='r', image_uri=IMAGE, **kwargs)


def test_cli_rejects_a_local_pipeline_root(capsys):
  with pytest.raises(SystemExit) as exit_info:
    kubeflow_v2_runner.parse_args(
        ['--project', 'p', '--region', 'r', '--image', IMAGE,
         '--pipeline-root', '/tmp/pipelines'])
  assert exit_info.value.code != 0
  assert 'not a gs:// path' in capsys.readouterr().err


def test_cli_submit_without_credentials_fails_clearly(tmp_path):
  """``--submit`` finds no credentials and says so, without any network."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(('GOOGLE_', 'CLOUDSDK_', 'GCE_'))}
  env.update(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / 'missing.json'),
             CLOUDSDK_CONFIG=str(tmp_path / 'gcloud'), NO_GCE_CHECK='True',
             TF_USE_LEGACY_KERAS='1')
  output = tmp_path / 'pipeline.json'
  result = subprocess.run(
      [sys.executable, '-m', 'pipelines.movies.kubeflow_v2_runner',
       *COMMON_ARGS, '--output', str(output), '--submit'],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode != 0
  assert 'no Google Cloud credentials found' in result.stderr
  assert output.exists()


def test_default_tpu_shards_embeddings():
  """The runner's default machine is a v6e host, whose engine is SparseCore."""
  from components.trainer import engines
  from pipelines.movies import kubeflow_v2_runner
  job = vertex.VertexTpuJob(
      project='p', region='us-central1', image_uri=TRAINER_IMAGE,
      machine_type=kubeflow_v2_runner.DEFAULT_TPU_MACHINE_TYPE)
  assert job.tpu_type == 'v6e-4'
  assert engines.engine_for_tpu_type(job.tpu_type) == engines.V2


@pytest.mark.parametrize('machine_type, topology, tpu_type, replicas', [
    ('ct6e-standard-4t', None, 'v6e-4', 1),
    ('ct6e-standard-4t', '4x4', 'v6e-16', 4),
    ('ct5p-hightpu-4t', '2x2x2', 'v5p-16', 2),
    ('ct5lp-hightpu-4t', None, 'v5e-4', 1),
])
def test_multi_host_slice_has_one_replica_per_vm(machine_type, topology,
                                                 tpu_type, replicas):
  job = vertex.VertexTpuJob(project='p', region='us-central1',
                            image_uri=TRAINER_IMAGE,
                            machine_type=machine_type, tpu_topology=topology)
  assert job.tpu_type == tpu_type
  cloud = tfx.extensions.google_cloud_ai_platform
  pool = job.custom_config()[cloud.TRAINING_ARGS_KEY]['job_spec'][
      'worker_pool_specs'][0]
  assert pool['replica_count'] == replicas
  assert pool['machine_spec'].get('tpu_topology') == topology
