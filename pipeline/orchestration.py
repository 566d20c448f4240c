"""Beam arguments resolved from the `orchestration` config section.

`create_pipeline` passes `beam_pipeline_args(config)` to every component that
runs Beam, whichever orchestrator runs the pipeline; `runners/beam_runner.py
--dry-run` prints them. Validation lives in `pipeline.config.validate`.
"""

from typing import List

from pipeline.config import PipelineConfig


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
    """The full Beam argument list: the runner's settings, then `config.beam_args`.

    DirectRunner gets its running mode and worker count; DataflowRunner gets the
    project, region, temp and staging locations, machine type and the setup.py
    its workers install the template from. Extra `beam_args` come last, so they win.
    """
    orchestration = config.orchestration
    if orchestration.beam_runner == "DataflowRunner":
        staging = orchestration.staging_location or orchestration.temp_location.rstrip("/") + "/staging"
        args = [
            "--runner=DataflowRunner",
            f"--project={orchestration.project}",
            f"--region={orchestration.region}",
            f"--temp_location={orchestration.temp_location}",
            f"--staging_location={staging}",
            f"--machine_type={orchestration.machine_type}",
            f"--setup_file={orchestration.setup_file}",
        ]
    else:
        args = [
            "--runner=DirectRunner",
            f"--direct_running_mode={orchestration.direct_running_mode}",
            f"--direct_num_workers={orchestration.direct_num_workers}",
        ]
    return args + list(config.beam_args)
