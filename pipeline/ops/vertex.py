"""Kubeflow Pipelines v2 / Vertex AI Pipelines: compile the pipeline, and submit it.

`runners/kubeflow_v2_runner.py` and the tfx CLI (`--engine=vertex`) call these.
`compile_pipeline` writes the PipelineSpec JSON with KubeflowV2DagRunner; two
values become runtime parameters that a submission may override without
recompiling: `data_root` (ExampleGen's input) and `train_steps` (the Trainer's
`train_args`). `build_job` makes the google-cloud-aiplatform PipelineJob;
`submit` sends it, or with `dry_run` prints the request and touches no network.
With `lifecycle.schedule` set, `submit` creates a Vertex AI PipelineJobSchedule instead of one
job (`build_schedule`; the dry run prints the CreateSchedule request), at most one run at a time.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, TextIO

from pipeline.config import ConfigError, PipelineConfig

# The image `docker build -t tfxt-pipeline .` makes; a real submit names a registry image.
LOCAL_IMAGE = "tfxt-pipeline:latest"
# User-facing override name -> pipeline parameter name.
RUNTIME_PARAMETERS = {"data_root": "data_root", "train_steps": "train_args"}
# Airflow's presets, which Vertex AI's cron does not accept, as cron expressions.
CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
                "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}


def runtime_parameter_defaults(config: PipelineConfig) -> Dict[str, str]:
    """The pipeline parameters' default values: what `create_pipeline(config)` uses."""
    return {"data_root": config.data_root,
            "train_args": json.dumps({"num_steps": config.hyperparameters.train_steps})}


def expose_runtime_parameters(tfx_pipeline, config: PipelineConfig):
    """Turns ExampleGen's input_base and the Trainer's train_args into runtime parameters.

    Their defaults are the config's values, so an unchanged submission runs the
    pipeline `create_pipeline(config)` describes. Returns `tfx_pipeline`.
    """
    from tfx.orchestration import data_types

    defaults = runtime_parameter_defaults(config)
    nodes = {node.id: node for node in tfx_pipeline.components}
    for node_id, exec_property, name in (("CsvExampleGen", "input_base", "data_root"),
                                         ("Trainer", "train_args", "train_args")):
        nodes[node_id].exec_properties[exec_property] = data_types.RuntimeParameter(
            name=name, ptype=str, default=defaults[name])
    return tfx_pipeline


def kubeflow_v2_runner(config: PipelineConfig, output_path: str):
    """The KubeflowV2DagRunner that writes the PipelineSpec JSON to `output_path`."""
    from tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner import (
        KubeflowV2DagRunner,
        KubeflowV2DagRunnerConfig,
    )

    runner_config = KubeflowV2DagRunnerConfig(
        default_image=config.orchestration.image or LOCAL_IMAGE, use_pipeline_spec_2_1=True)
    return KubeflowV2DagRunner(config=runner_config, output_dir=os.path.dirname(output_path) or ".",
                               output_filename=os.path.basename(output_path))


def compile_pipeline(config: PipelineConfig, output_path: str) -> str:
    """Compiles `create_pipeline(config)` to a PipelineSpec JSON file; returns its path."""
    from pipeline.pipeline import create_pipeline

    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    from pipeline.components.baseline_resolver import use_builtin_strategy

    pipeline = use_builtin_strategy(expose_runtime_parameters(create_pipeline(config), config))
    kubeflow_v2_runner(config, output_path).run(
        pipeline, parameter_values=runtime_parameter_defaults(config))
    return output_path


def default_template_path(config: PipelineConfig) -> str:
    """build/<pipeline_name>_pipeline.json under the working directory (output_dir may be gs://)."""
    return os.path.abspath(os.path.join("build", f"{config.pipeline_name}_pipeline.json"))


def check_submit(config: PipelineConfig) -> None:
    """Raises ConfigError unless `config` can be submitted to Vertex AI Pipelines."""
    orchestration = config.orchestration
    for name in ("project", "region", "image"):
        if not getattr(orchestration, name):
            raise ConfigError(f"Submitting to Vertex AI needs orchestration.{name}; it is empty. Set it "
                              "in the config file (see README, Kubeflow Pipelines v2 / Vertex AI).")
    for name in ("output_dir", "data_root", "schema_path"):
        if not getattr(config, name).startswith("gs://"):
            raise ConfigError(f"Submitting to Vertex AI needs {name} on Cloud Storage (gs://...), got "
                              f"{getattr(config, name)}: Vertex workers cannot read this machine's files.")


def parameter_values(overrides: Mapping[str, str]) -> Dict[str, Any]:
    """Pipeline parameter values from user overrides such as {"train_steps": "500"}."""
    values: Dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in RUNTIME_PARAMETERS:
            raise ConfigError(f"Unknown runtime parameter {name!r}: choose one of "
                              f"{', '.join(RUNTIME_PARAMETERS)}.")
        if name == "train_steps":
            if not str(value).isdigit() or int(value) < 1:
                raise ConfigError(f"Runtime parameter train_steps must be a positive integer, got {value!r}.")
            values["train_args"] = json.dumps({"num_steps": int(value)})
        else:
            values[RUNTIME_PARAMETERS[name]] = value
    return values


def build_job(config: PipelineConfig, template_path: str, overrides: Mapping[str, str],
              credentials=None):
    """The aiplatform PipelineJob for a compiled template (constructing it sends nothing)."""
    from google.cloud.aiplatform import pipeline_jobs

    check_submit(config)
    return pipeline_jobs.PipelineJob(
        display_name=config.pipeline_name,
        template_path=template_path,
        pipeline_root=config.pipeline_root,
        parameter_values=parameter_values(overrides),
        enable_caching=config.enable_cache,
        project=config.orchestration.project,
        location=config.orchestration.region,
        credentials=credentials,
    )


def schedule_cron(config: PipelineConfig) -> str:
    """The Vertex AI cron of `lifecycle.schedule`, with its time zone ("TZ=Etc/UTC 0 3 * * *")."""
    schedule = config.lifecycle.schedule
    cron = CRON_PRESETS.get(schedule, schedule)
    if cron.startswith("@"):
        raise ConfigError(f"lifecycle.schedule {schedule!r} has no Vertex AI equivalent: use a cron "
                          f"expression or one of {', '.join(CRON_PRESETS)}.")
    return f"TZ={config.lifecycle.schedule_time_zone} {cron}"


def build_schedule(config: PipelineConfig, job, credentials=None):
    """The PipelineJobSchedule that starts `job` on `lifecycle.schedule` (constructing it sends nothing).

    `max_concurrent_run_count` is 1: one run at a time, as the local run lock does.
    """
    from google.cloud.aiplatform.pipeline_job_schedules import PipelineJobSchedule

    schedule = PipelineJobSchedule(pipeline_job=job, display_name=f"{config.pipeline_name}-schedule",
                                   credentials=credentials)
    # What PipelineJobSchedule.create puts in the request before sending it.
    schedule._gca_resource.cron = schedule_cron(config)
    schedule._gca_resource.max_concurrent_run_count = 1
    if config.orchestration.service_account:
        schedule._gca_resource.create_pipeline_job_request.pipeline_job.service_account = \
            config.orchestration.service_account
    return schedule


def schedule_request(config: PipelineConfig, job, credentials=None) -> Dict[str, Any]:
    """The CreateSchedule request body (without the compiled template, already on disk)."""
    from google.protobuf import json_format

    schedule = build_schedule(config, job, credentials)
    body = json_format.MessageToDict(schedule._gca_resource._pb)
    body.get("createPipelineJobRequest", {}).get("pipelineJob", {}).pop("pipelineSpec", None)
    return {"parent": schedule._parent, "schedule": body}


def submit(config: PipelineConfig, template_path: str, overrides: Mapping[str, str],
           dry_run: bool, stream: TextIO) -> Optional[str]:
    """Submits the compiled pipeline; returns the job's resource name (None on a dry run).

    A dry run builds the same request with anonymous credentials and prints it.
    """
    if dry_run:
        from google.auth.credentials import AnonymousCredentials

        job = build_job(config, template_path, overrides, credentials=AnonymousCredentials())
        request = job.to_dict()
        request.pop("pipelineSpec", None)  # the compiled template itself, already on disk
        if config.orchestration.service_account:
            request["serviceAccount"] = config.orchestration.service_account
        stream.write(f"Dry run: would create PipelineJob {job.job_id} in projects/"
                     f"{config.orchestration.project}/locations/{config.orchestration.region}\n"
                     f"Template: {template_path}\n{json.dumps(request, indent=2, sort_keys=True)}\n")
        if config.lifecycle.schedule:
            stream.write(f"Dry run: would create a PipelineJobSchedule ({schedule_cron(config)}) with:\n"
                         + json.dumps(schedule_request(config, job, AnonymousCredentials()), indent=2,
                                      sort_keys=True) + "\n")
        return None
    job = build_job(config, template_path, overrides)
    if config.lifecycle.schedule:
        schedule = build_schedule(config, job)
        schedule.create(cron=schedule_cron(config), max_concurrent_run_count=1,
                        service_account=config.orchestration.service_account or None)
        stream.write(f"Created schedule {schedule.resource_name} ({schedule_cron(config)})\n")
        return schedule.resource_name
    job.submit(service_account=config.orchestration.service_account or None)
    stream.write(f"Submitted {job.resource_name}\n{job._dashboard_uri()}\n")
    return job.resource_name
