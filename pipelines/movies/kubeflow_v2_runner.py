"""Compiles the movies pipeline for Vertex AI Pipelines (Kubeflow Pipelines v2).

    python -m pipelines.movies.kubeflow_v2_runner --project P --region R \\
        --image IMAGE --pipeline-root gs://BUCKET/root --output pipeline.json \\
        [--tpu-machine-type ct6e-standard-4t | --tpu-accelerator TPU_V3 \\
         --tpu-cores 8] [--database-uri gs://BUCKET/movies.db] [--submit]

Every component runs in IMAGE (see the Dockerfile); the Beam components run
their Beam work on Dataflow with workers started from the same image, and the
Trainer runs as a Vertex AI custom job on a TPU VM. ``--submit`` also submits
the compiled pipeline with the Vertex AI SDK, using Application Default
Credentials.
"""

import argparse
import os
import sys
from typing import List, Optional

from pipelines import run_options  # Imports no TensorFlow.

run_options.quiet_startup()

from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top

from components.trainer import vertex  # pylint: disable=g-import-not-at-top
from pipelines.movies import pipeline

# A v6e host (4 chips, SparseCore): its engine shards the tables. A v5e
# (ct5lp-hightpu-4t) has no embedding hardware: tables replicated (engine v0),
# refused before training when they do not fit one chip.
DEFAULT_TPU_MACHINE_TYPE = 'ct6e-standard-4t'
CLOUD_SCOPE = 'https://www.googleapis.com/auth/cloud-platform'


def _gcs_path(value: str) -> str:
  """An argparse type: only gs:// paths exist for the cloud workers."""
  if not value.startswith('gs://'):
    raise argparse.ArgumentTypeError(
        f'{value!r} is not a gs:// path; Vertex AI and Dataflow cannot read '
        'this machine\'s files.')
  return value.rstrip('/')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--project', required=True, help='Google Cloud project')
  parser.add_argument('--region', required=True,
                      help='region of Vertex AI, Dataflow and the TPU')
  parser.add_argument('--image', required=True,
                      help='container image of the components and of the '
                      'Dataflow workers (see the Dockerfile)')
  parser.add_argument('--trainer-image', default=None,
                      help='image of the TPU training job (default: --image)')
  parser.add_argument('--pipeline-root', required=True, type=_gcs_path,
                      help='gs:// directory of the pipeline\'s artifacts')
  parser.add_argument('--output', default='pipeline.json',
                      help='where to write the compiled pipeline (JSON)')
  tpu = parser.add_mutually_exclusive_group()
  tpu.add_argument('--tpu-machine-type', default=None,
                   help='TPU VM machine type (default: '
                   f'{DEFAULT_TPU_MACHINE_TYPE})')
  tpu.add_argument('--tpu-accelerator', default=None,
                   choices=sorted(vertex.ACCELERATOR_TPU),
                   help='TPU of machine type cloud-tpu')
  parser.add_argument('--tpu-cores', type=int, default=None,
                      help='TPU cores with --tpu-accelerator (default: 8)')
  parser.add_argument('--tpu-topology', default=None,
                      help='TPU topology, e.g. 2x2x1 for TPU_V4_POD')
  parser.add_argument('--service-account', default=None,
                      help='service account of the pipeline and training job')
  parser.add_argument('--database-uri', type=_gcs_path, default=None,
                      help='gs:// movies SQLite file (default: the one in '
                      'the image)')
  parser.add_argument('--temp-location', type=_gcs_path, default=None,
                      help='Dataflow temp location (default: '
                      '<pipeline-root>/dataflow-tmp)')
  parser.add_argument('--dataflow-machine-type', default='n1-standard-4',
                      help='Dataflow worker machine type')
  parser.add_argument('--max-num-workers', type=int, default=10,
                      help='Dataflow autoscaling limit')
  run_options.add_run_options(parser, pipeline.PIPELINE_NAME)
  pipeline.add_data_options(parser)
  parser.add_argument('--submit', action='store_true',
                      help='submit the compiled pipeline to Vertex AI')
  args = parser.parse_args(argv)
  if args.tpu_cores is not None and not args.tpu_accelerator:
    parser.error('--tpu-cores goes with --tpu-accelerator')
  return args


def beam_pipeline_args(args: argparse.Namespace) -> List[str]:
  """Dataflow options: workers start from the pipeline's own image."""
  temp_location = args.temp_location or f'{args.pipeline_root}/dataflow-tmp'
  result = [
      '--runner=DataflowRunner',
      f'--project={args.project}',
      f'--region={args.region}',
      f'--temp_location={temp_location}',
      f'--machine_type={args.dataflow_machine_type}',
      f'--max_num_workers={args.max_num_workers}',
      f'--sdk_container_image={args.image}',
      # Beam is in the image: do not stage an SDK tarball.
      '--sdk_location=container',
  ]
  if args.service_account:
    result.append(f'--service_account_email={args.service_account}')
  return result


def vertex_job(args: argparse.Namespace) -> vertex.VertexTpuJob:
  """The Trainer's Vertex AI custom job: one TPU VM."""
  if args.tpu_accelerator:
    machine = dict(machine_type=vertex.CLOUD_TPU_MACHINE_TYPE,
                   accelerator_type=args.tpu_accelerator,
                   accelerator_count=args.tpu_cores or 8)
  else:
    machine = dict(
        machine_type=args.tpu_machine_type or DEFAULT_TPU_MACHINE_TYPE)
  return vertex.VertexTpuJob(
      project=args.project, region=args.region,
      image_uri=args.trainer_image or args.image,
      tpu_topology=args.tpu_topology,
      service_account=args.service_account, **machine)


def create_pipeline(args: argparse.Namespace) -> tfx.dsl.Pipeline:
  """The shared movies pipeline, placed on Dataflow and a Vertex TPU job."""
  job = vertex_job(args)
  # The Vertex job runs on the TPU VM itself.
  overrides = run_options.training_overrides(args, tpu='local')

  def trainer_class(**kwargs):
    return vertex.VertexTpuEmbeddingTrainer(vertex_job=job, **kwargs)

  return pipeline.create_pipeline(
      pipeline_name=args.pipeline_name,
      pipeline_root=args.pipeline_root,
      beam_pipeline_args=beam_pipeline_args(args),
      database_uri=args.database_uri,
      sample_rows=args.sample_rows,
      enable_cache=not args.no_cache,
      training_config=pipeline.default_training_config(**overrides),
      tpu_type=job.tpu_type,
      trainer_class=trainer_class)


def compile_pipeline(args: argparse.Namespace) -> str:
  """Writes the pipeline job JSON to ``args.output``; returns its path."""
  output = os.path.abspath(args.output)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=args.image),
      output_dir=os.path.dirname(output),
      output_filename=os.path.basename(output))
  runner.run(create_pipeline(args))
  return output


def submit(path: str, args: argparse.Namespace) -> int:
  """Submits the compiled pipeline to Vertex AI Pipelines; 0 on success."""
  import google.auth  # pylint: disable=g-import-not-at-top
  from google.auth import exceptions  # pylint: disable=g-import-not-at-top
  try:
    credentials, _ = google.auth.default(scopes=[CLOUD_SCOPE])
  except exceptions.DefaultCredentialsError as error:
    print(f'Cannot submit: no Google Cloud credentials found ({error}).\n'
          'Run `gcloud auth application-default login` or set '
          'GOOGLE_APPLICATION_CREDENTIALS to a service account key, then '
          f'submit again. The compiled pipeline is at {path}.',
          file=sys.stderr)
    return 1
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  job = aiplatform.PipelineJob(
      display_name=args.pipeline_name, template_path=path,
      pipeline_root=args.pipeline_root, enable_caching=not args.no_cache,
      project=args.project, location=args.region, credentials=credentials)
  job.submit(service_account=args.service_account)
  print(f'Submitted: {job.resource_name}')
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  args = parse_args(argv)
  path = compile_pipeline(args)
  print(f'Compiled pipeline written to {path}')
  if args.submit:
    return submit(path, args)
  return 0


if __name__ == '__main__':
  sys.exit(main())
