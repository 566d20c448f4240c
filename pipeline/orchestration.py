"""Beam arguments resolved from the `orchestration` config section.

`create_pipeline` passes `beam_pipeline_args(config)` to every component that
runs Beam, whichever orchestrator runs the pipeline; `runners/beam_runner.py
--dry-run` prints them. Validation lives in `pipeline.config.validate`.
"""

from typing import List

from pipeline.config import PipelineConfig

# What `beam_runner: DirectRunner` runs: Beam's in-process FnApiRunner, named by its class path
# (Beam 2.59 knows no short name for it). Beam 2.68 made --runner=DirectRunner try Prism first,
# a Go runner it downloads at run time: offline that costs seconds per Beam job before it falls
# back, and online it would run the job outside this process, where the in_memory row order
# (pipeline/components/example_gen.py) is not promised. Beam's note on that change says to pin
# FnApiRunner, which DirectRunner chose for every TFX job before it.
DIRECT_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
    """The full Beam argument list: the runner's settings, then `config.beam_args`.

    DirectRunner (Beam's FnApiRunner, see DIRECT_RUNNER) gets its running mode and worker
    count; DataflowRunner gets the project, region, temp and staging locations, machine
    type and the setup.py its workers install the template from. Extra `beam_args` come
    last, so they win.

    Both name the setup file. Without one, TFX's Beam executors (ExampleGen,
    StatisticsGen, Transform, Evaluator) each copy TFX's installed package and build
    an sdist of it to ship to workers (`tfx.utils.dependency_utils`), 1.5-5 s each and
    about 40 MB left in $TMPDIR per component per run. The DirectRunner runs in this
    process and stages nothing, so for it the flag only stops that packaging.
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
            f"--runner={DIRECT_RUNNER}",
            f"--direct_running_mode={orchestration.direct_running_mode}",
            f"--direct_num_workers={orchestration.direct_num_workers}",
            f"--setup_file={orchestration.setup_file}",
        ]
    return args + list(config.beam_args)


def name_artifacts_by_component(tfx_pipeline):
    """Makes TFX's legacy launcher (AirflowDagRunner) name output artifacts per component.

    The legacy driver names each output artifact `<output key>:<run id>`, and ML
    Metadata refuses two artifacts of one type with one name, so SchemaGen and
    ImportSchemaGen (both output `schema`) cannot run in the same Airflow run.
    Each component's driver is wrapped to prefix the component id. Returns `tfx_pipeline`.
    """
    for component in tfx_pipeline.components:
        component.driver_class = _component_named_driver(component.driver_class)
    return tfx_pipeline


def _component_named_driver(driver_class):
    class ComponentNamedDriver(driver_class):
        def _prepare_output_artifacts(self, input_artifacts, output_dict, exec_properties, execution_id,
                                      pipeline_info, component_info):
            outputs = super()._prepare_output_artifacts(
                input_artifacts, output_dict, exec_properties, execution_id, pipeline_info, component_info)
            for artifacts in outputs.values():
                for artifact in artifacts:
                    if artifact.name:
                        artifact.name = f"{component_info.component_id}.{artifact.name}"
            return outputs

    ComponentNamedDriver.__name__ = f"ComponentNamed{driver_class.__name__}"
    return ComponentNamedDriver
