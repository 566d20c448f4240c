"""The typed, frozen configuration of the pipeline.

`load_config` builds a `PipelineConfig` once, at the edge of the program (a
runner file, the CLI, a test), from defaults, an optional YAML/JSON file and
explicit overrides, and validates it. `pipeline.pipeline.create_pipeline`
takes the result and reads nothing else.
"""

import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Dict, Mapping, Optional, Tuple

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "parameter_server")
BEAM_RUNNERS = ("DirectRunner", "DataflowRunner")
DIRECT_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")


class ConfigError(ValueError):
    """A configuration value a user set is wrong; the message says which and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Model and training hyperparameters (the Tuner may replace the model ones)."""

    learning_rate: float = 0.01
    hidden_units: Tuple[int, ...] = (16, 8)
    dropout: float = 0.0
    batch_size: int = 32
    train_steps: int = 300
    eval_steps: int = 20
    # Training steps Keras runs per call into TensorFlow (`Model.compile(steps_per_execution=)`).
    # The default model's step is a fraction of a millisecond of work; one Python round trip per
    # step cost as much again (BENCHMARKS.md, "Goal 4: the Trainer's ms/step"). Results do not
    # depend on it: the steps, their order and their batches are the same. Callbacks see one
    # batch end per execution; a value that does not divide train_steps ends with one shorter
    # execution.
    steps_per_execution: int = 25

    def trainer_values(self) -> Dict[str, Any]:
        """What the Trainer's custom_config carries (steps go in its TrainArgs/EvalArgs instead).

        One definition for the pipeline and the loopback cluster jobs, which both hand it to
        `models.trainer.TrainingArgs.from_custom_config`.
        """
        values = dataclasses.asdict(self)
        del values["train_steps"], values["eval_steps"]
        values["hidden_units"] = list(self.hidden_units)
        return values


@dataclasses.dataclass(frozen=True)
class EvalThresholds:
    """Evaluator gates: a model is blessed only if it passes every one.

    The first two apply to the Overall slice only; the slice gate is opt-in.
    """

    # Overall accuracy the candidate must reach.
    min_accuracy: float = 0.9
    # How much overall accuracy may drop against the current blessed baseline
    # (absolute; 0.02 = two points).
    max_accuracy_drop: float = 0.02
    # Opt-in: accuracy every slice of models.features.SLICE_KEYS must reach (0 = no slice gate).
    slice_min_accuracy: float = 0.0
    # Slices with fewer eval examples than this are reported but not gated (too noisy).
    slice_min_examples: int = 30


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """Data checks of the AnomaliesGate beyond ExampleValidator's (pipeline.components.anomalies_gate)."""

    # Fewest examples each split (train, eval) must hold; fewer stop the run before Transform.
    min_examples_per_split: int = 20
    # Largest fraction of a split's examples that may be blank in a column the schema allows to
    # be blank (`value_count { min: 0 }`; Transform imputes them). Per split; 0.1 = 10%.
    max_blank_fraction: float = 0.1
    # Per-column exceptions to max_blank_fraction, e.g. {sex: 0.2}.
    blank_fractions: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    """Edge export (`pipeline.components.edge_export`): int8 TFLite models gated by accuracy parity."""

    # Whether the pipeline runs EdgeExport after the Evaluator.
    enabled: bool = True
    # How far a variant's eval accuracy may fall below the SavedModel's
    # (absolute; 0.01 = one point) and still be deployable.
    max_accuracy_drop: float = 0.01
    # Transformed training examples that calibrate the int8 model.
    representative_examples: int = 300


@dataclasses.dataclass(frozen=True)
class Orchestration:
    """Where the pipeline runs: Beam runner and its settings, Google Cloud and Vertex AI.

    `pipeline.orchestration.beam_pipeline_args` turns this section into Beam arguments.
    """

    # One of BEAM_RUNNERS; DirectRunner runs Beam in the orchestrator's process.
    beam_runner: str = "DirectRunner"
    # DirectRunner only: one of DIRECT_RUNNING_MODES, and how many workers.
    direct_running_mode: str = "in_memory"
    direct_num_workers: int = 1
    # Google Cloud project and region, for Dataflow jobs and Vertex AI Pipelines.
    project: str = ""
    region: str = ""
    # Dataflow: gs:// folders for temporary files and staged packages (staging
    # defaults to <temp_location>/staging), the worker machine type, and the
    # setup.py that workers install the template from.
    temp_location: str = ""
    staging_location: str = ""
    machine_type: str = "n1-standard-4"
    setup_file: str = "./setup.py"
    # Vertex AI Pipelines: the container image holding this package (see Dockerfile),
    # and an optional service account the pipeline job runs as.
    image: str = ""
    service_account: str = ""


@dataclasses.dataclass(frozen=True)
class TunerConfig:
    """Optional hyperparameter search (TFX Tuner + KerasTuner) whose best values the Trainer uses."""

    enabled: bool = False
    # Dotted path of the Tuner's entry point; the search space lives next to it.
    tuner_fn: str = "models.tuning.tuner_fn"
    max_trials: int = 3
    # Steps of each trial (the Trainer's own steps stay hyperparameters.train_steps).
    train_steps: int = 100
    eval_steps: int = 10


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
    """Where ML Metadata lives: SQLite under output_dir (default) or a MySQL/MariaDB server."""

    # "sqlite" or "mysql".
    backend: str = "sqlite"
    # SQLite file; empty means <output_dir>/metadata/<pipeline_name>/metadata.db.
    sqlite_path: str = ""
    # MySQL/MariaDB server (backend "mysql"); ML Metadata creates `database` if missing.
    host: str = "127.0.0.1"
    port: int = 3306
    database: str = "mlmd"
    user: str = "root"
    # Not recorded with the run (run history stores the config without it).
    password: str = ""


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Serving: the local TF Serving-compatible server and the generated TF Serving files."""

    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    # base_path written into models.config; empty = the local serving_model_dir.
    # Set it to where TF Serving sees the versions (e.g. gs://bucket/serving_model/penguin).
    model_base_path: str = ""
    # How many of the newest versions to serve when no version is labelled.
    num_versions: int = 1
    # Seconds between scans for new versions and models.config changes.
    poll_seconds: float = 1.0
    # Largest request body (REST) or message (gRPC) the local server accepts.
    max_request_bytes: int = 4 * 1024 * 1024
    # Fraction of requests written to the request log (0 turns it off).
    request_log_sample_rate: float = 1.0
    # The request log rotates when it would grow past this size, keeping this many old files
    # (requests.jsonl.1 is the newest of them).
    request_log_max_bytes: int = 64 * 1024 * 1024
    request_log_backups: int = 5
    # TF Serving's --allow_version_labels_for_unavailable_models, which the generated Docker
    # command and Kubernetes manifest pass; the local server applies the same label rule.
    allow_version_labels_for_unavailable_models: bool = True
    # Server-side batching of concurrent Predict requests: the local server merges requests that
    # arrive while a model call runs (serving/batching.py), and the generated Docker command and
    # Kubernetes manifest pass TF Serving's --enable_batching.
    enable_batching: bool = True
    # TF Serving's batching parameters (batching_parameters.txt); the local server uses
    # max_batch_size (rows per merged call) and never waits (batch_timeout_micros is TF Serving's).
    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Production monitoring: drift between spans, served-model decay, training/serving skew.

    Drift compares the newest span with the one before it (DistributionValidator);
    decay evaluates the served model on both before retraining
    (`pipeline.components.drift_gate`, `pipeline.components.model_decay`).
    Both need at least two spans in the run; with one span they are left out.
    """

    enabled: bool = True
    # What a drift past a threshold does: "stop" fails the run before Transform
    # (the pushed model stays), "warn" logs it and goes on.
    drift_action: str = "stop"
    # Defaults per feature kind. Jensen-Shannon divergence for numeric features
    # and L-infinity distance for categorical ones (the label counts as
    # categorical). The bundled spans reach at most 0.12 and 0.16 between
    # neighbours (README, "Monitoring"), so these leave room for sampling noise.
    numeric_drift_threshold: float = 0.2
    categorical_drift_threshold: float = 0.25
    # Per-feature thresholds that win over the defaults, e.g. {body_mass_g: 0.3}.
    feature_thresholds: Dict[str, float] = dataclasses.field(default_factory=dict)
    # Retrain trigger: the served model's accuracy on the newest span is lower
    # than on the span before it by more than this (absolute; 0.05 = five points).
    decay_threshold: float = 0.05
    # `tfxt monitor skew`: serving rows against the served model's training
    # statistics, same measures as drift.
    numeric_skew_threshold: float = 0.2
    categorical_skew_threshold: float = 0.25


DRIFT_ACTIONS = ("stop", "warn")


@dataclasses.dataclass(frozen=True)
class LifecycleConfig:
    """Continuous training: warm start, the watcher's rolling window, rollback on decay.

    Used by `pipeline.pipeline` (warm start), `pipeline.ops.watch` (`tfxt watch`),
    `pipeline.ops.rollback` and `pipeline.ops.rehearsal` (`tfxt rehearse`).
    """

    # Whether the Trainer starts from the latest blessed model's weights (TFX resolver ->
    # Trainer base_model); it falls back to a cold start, with a logged reason, when the
    # vocabularies or the model's shape changed. Off by default: with it on, the Trainer's
    # input changes after every push, so an unchanged rerun trains again instead of hitting the cache.
    warm_start: bool = False
    # How many of the newest complete spans `tfxt watch` trains on (0 = every complete span).
    window_spans: int = 3
    # Seconds between the watcher's scans of data_root.
    poll_seconds: float = 30.0
    # A span folder without a _SUCCESS marker counts as complete once none of its files
    # changed for this many seconds (0 = only a _SUCCESS marker makes a span complete).
    stable_seconds: float = 0.0
    # Whether a served model that does worse on the next labelled span than the model it
    # replaced is rolled back (the `stable` label moves back), and by how much worse (absolute
    # accuracy; 0.05 = five points) it must do.
    auto_rollback: bool = False
    rollback_accuracy_drop: float = 0.05
    # Airflow: the DAG's schedule (a cron expression or preset such as "@daily"; empty = none)
    # and the Vertex AI schedule the dry-run emits (cron; empty = none).
    schedule: str = ""
    # Time zone of the Vertex AI schedule's cron.
    schedule_time_zone: str = "Etc/UTC"


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """The run report and the model card (`pipeline.ops.report`, `pipeline.ops.model_card`)."""

    # Whether every run ends by writing outputs/reports/<pipeline>/<run id>/index.html.
    enabled: bool = True
    # The model card's "intended use" and "limitations": say what your model is for.
    intended_use: str = ("Predicts a penguin's species (Adelie, Gentoo or Chinstrap) from its island, "
                         "sex and four body measurements. It is the template's example model: use it to "
                         "try the pipeline, not to draw conclusions about penguins.")
    limitations: Tuple[str, ...] = (
        "Trained on a few hundred penguins from three islands of the Palmer Archipelago; other "
        "islands and populations are outside its data.",
        "An unseen island or sex value goes to an out-of-vocabulary bucket; its predictions rest "
        "on the measurements alone.",
        "The eval split is small (under a hundred examples), so per-slice metrics move by several "
        "points from one example.",
    )


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs. Paths are absolute after `load_config`."""

    pipeline_name: str = "penguin"
    # Root of all outputs: pipeline artifacts, ML Metadata, pushed models.
    output_dir: str = "outputs"
    # Folder holding one sub-folder per span: <data_root>/span-<N>/*.csv.
    data_root: str = "data/penguins"
    # Spans to train on; empty means every span present.
    spans: Tuple[int, ...] = ()
    # The curated schema that ExampleValidator and Transform use.
    schema_path: str = "schema/schema.pbtxt"
    # Hash of the schema file's content; `load_config` computes it, so that an
    # edited schema is re-imported instead of served from the cache.
    schema_fingerprint: str = ""
    # Dotted paths of user code, resolved from the installed package.
    preprocessing_fn: str = "models.preprocessing.preprocessing_fn"
    run_fn: str = "models.trainer.run_fn"
    hyperparameters: Hyperparameters = Hyperparameters()
    thresholds: EvalThresholds = EvalThresholds()
    validation: ValidationConfig = ValidationConfig()
    edge: EdgeConfig = EdgeConfig()
    tuner: TunerConfig = TunerConfig()
    metadata: MetadataConfig = MetadataConfig()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringConfig = MonitoringConfig()
    report: ReportConfig = ReportConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    # tf.distribute strategy for the Trainer: one of STRATEGIES.
    strategy: str = "one_device"
    # Hash buckets of the train/eval split.
    train_buckets: int = 3
    eval_buckets: int = 1
    seed: int = 42
    # TensorFlow's op determinism in the Trainer (tf.config.experimental.enable_op_determinism):
    # the same data and seed give the same weights, at some cost in training speed.
    deterministic_ops: bool = True
    # Transform's pre- and post-transform statistics and anomalies (its `pre_transform_stats`,
    # `post_transform_stats`, ... outputs). Off by default: StatisticsGen already computes the raw
    # data's statistics and nothing here reads Transform's; they cost a fifth of its time.
    transform_statistics: bool = False
    enable_cache: bool = True
    orchestration: Orchestration = Orchestration()
    # Extra Beam pipeline arguments, appended after those `orchestration` resolves
    # (so they win), e.g. ["--max_num_workers=4"].
    beam_args: Tuple[str, ...] = ()

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return self.metadata.sqlite_path or os.path.join(
            self.output_dir, "metadata", self.pipeline_name, "metadata.db")

    @property
    def serving_model_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model", self.pipeline_name)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict; `load_config(overrides=config.to_dict())` rebuilds it."""
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A stable hash of the config, recorded with every run."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
                base_dir: Optional[str] = None, require_schema: bool = True) -> PipelineConfig:
    """Builds and validates the config.

    Args:
      path: optional YAML or JSON file with any subset of the fields (nested for
        `hyperparameters` and `thresholds`). Relative paths inside it are taken
        relative to `base_dir`.
      overrides: values that win over the file (e.g. from CLI flags or tests).
      base_dir: directory relative paths are resolved against (default: cwd).
      require_schema: whether the schema file must exist (not for `schema refresh`).

    Raises:
      ConfigError: on an unknown field, a wrong type or an invalid value.
    """
    values: Dict[str, Any] = {}
    if path:
        values = _merge(values, _read_file(path))
    if overrides:
        values = _merge(values, dict(overrides))
    config = _build(PipelineConfig, values, "config")
    _check_paths_set(config)
    config = _absolute_paths(config, base_dir or os.getcwd())
    validate(config)
    if require_schema and "://" not in config.schema_path and not os.path.isfile(config.schema_path):
        raise ConfigError(f"schema_path {config.schema_path} does not exist; run the pipeline, "
                          "then `tfxt schema refresh` to create it from SchemaGen's output.")
    if os.path.isfile(config.schema_path):
        with open(config.schema_path, "rb") as f:
            config = dataclasses.replace(
                config, schema_fingerprint=hashlib.sha256(f.read()).hexdigest()[:16])
    return config


def validate(config: PipelineConfig) -> None:
    """Raises ConfigError naming the first invalid value."""
    if config.strategy not in STRATEGIES:
        raise ConfigError(
            f"Unknown strategy {config.strategy!r}: choose one of {', '.join(STRATEGIES)}.")
    hp = config.hyperparameters
    for name in ("batch_size", "train_steps", "eval_steps", "steps_per_execution"):
        if getattr(hp, name) < 1:
            raise ConfigError(f"hyperparameters.{name} must be at least 1, got {getattr(hp, name)}.")
    if not math.isfinite(hp.learning_rate) or hp.learning_rate <= 0:
        raise ConfigError(f"hyperparameters.learning_rate must be a positive number, got {hp.learning_rate}.")
    if not 0.0 <= hp.dropout < 1.0:
        raise ConfigError(f"hyperparameters.dropout must lie in [0, 1) (the fraction of units dropped), "
                          f"got {hp.dropout}.")
    if config.seed < 0:
        raise ConfigError(f"seed must be 0 or more, got {config.seed}.")
    if not hp.hidden_units or any(u < 1 for u in hp.hidden_units):
        raise ConfigError(f"hyperparameters.hidden_units must be positive sizes, got {hp.hidden_units}.")
    for name in ("max_trials", "train_steps", "eval_steps"):
        if getattr(config.tuner, name) < 1:
            raise ConfigError(f"tuner.{name} must be at least 1, got {getattr(config.tuner, name)}.")
    if config.thresholds.slice_min_examples < 1:
        raise ConfigError("thresholds.slice_min_examples must be at least 1, "
                          f"got {config.thresholds.slice_min_examples}.")
    for name in ("min_accuracy", "max_accuracy_drop", "slice_min_accuracy"):
        value = getattr(config.thresholds, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"thresholds.{name} must lie in [0, 1] (0.02 = two points), got {value}.")
    if not 0.0 <= config.edge.max_accuracy_drop <= 1.0:
        raise ConfigError(f"edge.max_accuracy_drop must lie in [0, 1] (0.01 = one point), "
                          f"got {config.edge.max_accuracy_drop}.")
    if config.edge.representative_examples < 1:
        raise ConfigError("edge.representative_examples must be at least 1 (a few hundred is typical).")
    if config.report.enabled and not config.report.intended_use.strip():
        raise ConfigError("report.intended_use is empty: say in a sentence what the model is for "
                          "(it heads the model card).")
    if config.train_buckets < 1 or config.eval_buckets < 1:
        raise ConfigError("train_buckets and eval_buckets must be at least 1.")
    if not config.pipeline_name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"pipeline_name {config.pipeline_name!r} may hold letters, digits, - and _ only.")
    if config.metadata.backend not in ("sqlite", "mysql"):
        raise ConfigError(f"metadata.backend must be sqlite or mysql, got {config.metadata.backend!r}.")
    if config.metadata.backend == "mysql" and not (
            config.metadata.host and config.metadata.database and 0 < config.metadata.port < 65536):
        raise ConfigError("metadata.backend mysql needs metadata.host, metadata.database and a "
                          "metadata.port between 1 and 65535.")
    if "://" not in config.data_root:
        _check_spans(config)
    _check_orchestration(config.orchestration)
    _validate_serving(config.serving)
    _validate_monitoring(config.monitoring)
    _check_validation(config.validation)
    _validate_lifecycle(config.lifecycle)


def _validate_monitoring(monitoring: MonitoringConfig) -> None:
    if monitoring.drift_action not in DRIFT_ACTIONS:
        raise ConfigError(f"monitoring.drift_action must be one of {', '.join(DRIFT_ACTIONS)}, "
                          f"got {monitoring.drift_action!r}.")
    thresholds = {name: getattr(monitoring, name) for name in (
        "numeric_drift_threshold", "categorical_drift_threshold", "decay_threshold",
        "numeric_skew_threshold", "categorical_skew_threshold")}
    thresholds.update({f"feature_thresholds.{k}": v for k, v in monitoring.feature_thresholds.items()})
    for name, value in thresholds.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"monitoring.{name} must lie in [0, 1], got {value}.")


def _check_validation(validation: ValidationConfig) -> None:
    if validation.min_examples_per_split < 1:
        raise ConfigError("validation.min_examples_per_split must be at least 1, got "
                          f"{validation.min_examples_per_split}.")
    fractions = {"validation.max_blank_fraction": validation.max_blank_fraction,
                 **{f"validation.blank_fractions.{k}": v for k, v in validation.blank_fractions.items()}}
    for name, fraction in fractions.items():
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"{name} must lie in [0, 1] (0.1 = 10% blank), got {fraction}.")


def _check_paths_set(config: PipelineConfig) -> None:
    """An empty path would silently mean the working directory (outputs in the repo root)."""
    for name in ("output_dir", "data_root", "schema_path"):
        if not getattr(config, name).strip():
            raise ConfigError(f"{name} is empty: set it to a folder or file path (default "
                              f"{getattr(PipelineConfig(), name)!r}).")


def _validate_lifecycle(lifecycle: LifecycleConfig) -> None:
    if lifecycle.window_spans < 0:
        raise ConfigError(f"lifecycle.window_spans must be 0 (every span) or more, "
                          f"got {lifecycle.window_spans}.")
    if lifecycle.poll_seconds <= 0:
        raise ConfigError(f"lifecycle.poll_seconds must be positive, got {lifecycle.poll_seconds}.")
    if lifecycle.stable_seconds < 0:
        raise ConfigError(f"lifecycle.stable_seconds must be 0 (a _SUCCESS marker only) or more, "
                          f"got {lifecycle.stable_seconds}.")
    if not 0.0 <= lifecycle.rollback_accuracy_drop <= 1.0:
        raise ConfigError(f"lifecycle.rollback_accuracy_drop must lie in [0, 1] (0.05 = five points), "
                          f"got {lifecycle.rollback_accuracy_drop}.")
    schedule = lifecycle.schedule
    if schedule and not (schedule.startswith("@") or len(schedule.split()) == 5):
        raise ConfigError(f"lifecycle.schedule {lifecycle.schedule!r} must be a five-field cron expression "
                          "(e.g. '0 3 * * *') or an Airflow preset such as @daily.")


def _check_orchestration(orchestration: Orchestration) -> None:
    if orchestration.beam_runner not in BEAM_RUNNERS:
        raise ConfigError(f"Unknown orchestration.beam_runner {orchestration.beam_runner!r}: "
                          f"choose one of {', '.join(BEAM_RUNNERS)}.")
    if orchestration.direct_running_mode not in DIRECT_RUNNING_MODES:
        raise ConfigError(f"Unknown orchestration.direct_running_mode {orchestration.direct_running_mode!r}: "
                          f"choose one of {', '.join(DIRECT_RUNNING_MODES)}.")
    if orchestration.direct_num_workers < 0:
        raise ConfigError("orchestration.direct_num_workers must be 0 (one per CPU) or more.")
    if orchestration.beam_runner == "DataflowRunner":
        if not orchestration.temp_location.startswith("gs://"):
            raise ConfigError("orchestration.beam_runner is DataflowRunner but orchestration.temp_location "
                              f"is {orchestration.temp_location!r}: set it to a gs:// folder, "
                              "e.g. gs://my-bucket/tmp.")
        for name in ("project", "region"):
            if not getattr(orchestration, name):
                raise ConfigError(f"orchestration.beam_runner is DataflowRunner but orchestration.{name} "
                                  "is empty: set the Google Cloud project and region Dataflow runs in.")



def _validate_serving(serving: ServingSettings) -> None:
    for name in ("rest_port", "grpc_port"):
        if not 0 <= getattr(serving, name) <= 65535:
            raise ConfigError(f"serving.{name} must be a port number (0-65535; 0 picks a free one).")
    if serving.rest_port == serving.grpc_port and serving.rest_port != 0:
        raise ConfigError("serving.rest_port and serving.grpc_port must differ.")
    for name in ("num_versions", "max_request_bytes", "max_batch_size", "num_batch_threads",
                 "max_enqueued_batches"):
        if getattr(serving, name) < 1:
            raise ConfigError(f"serving.{name} must be at least 1, got {getattr(serving, name)}.")
    if serving.poll_seconds <= 0:
        raise ConfigError("serving.poll_seconds must be positive.")
    if not 0.0 <= serving.request_log_sample_rate <= 1.0:
        raise ConfigError("serving.request_log_sample_rate must lie in [0, 1].")
    if serving.request_log_max_bytes < 4096:
        raise ConfigError(f"serving.request_log_max_bytes must be at least 4096, "
                          f"got {serving.request_log_max_bytes}.")
    if serving.request_log_backups < 0:
        raise ConfigError(f"serving.request_log_backups must be 0 or more, "
                          f"got {serving.request_log_backups}.")


def span_pattern(spans: Tuple[int, ...]) -> str:
    """The ExampleGen file pattern (relative to data_root) that selects `spans`.

    ExampleGen ingests one pattern as one Examples artifact, and glob has no
    alternation, so a set of spans is written as one character class per digit;
    `_check_spans` makes sure that class selects exactly the requested spans.
    """
    if not spans:
        return "span-*/*.csv"
    names = [str(s) for s in sorted(set(spans))]
    if len({len(n) for n in names}) != 1:
        raise ConfigError(f"spans {spans} have different digit counts; name spans of equal width.")
    glob = "".join(
        chars[0] if len(set(chars)) == 1 else "[" + "".join(sorted(set(chars))) + "]"
        for chars in zip(*names))
    return f"span-{glob}/*.csv"


def available_spans(data_root: str) -> Tuple[int, ...]:
    """The span numbers present under a local data_root."""
    if not os.path.isdir(data_root):
        return ()
    spans = []
    for name in os.listdir(data_root):
        if name.startswith("span-") and name[5:].isdigit():
            spans.append(int(name[5:]))
    return tuple(sorted(spans))


def _check_spans(config: PipelineConfig) -> None:
    present = available_spans(config.data_root)
    if not present:
        raise ConfigError(f"data_root {config.data_root} holds no span-<N>/ folders with CSV files.")
    wanted = tuple(sorted(set(config.spans))) or present
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise ConfigError(f"spans {missing} are not in {config.data_root} (present: {list(present)}).")
    for span in wanted:
        folder = os.path.join(config.data_root, f"span-{span}")
        if not any(name.endswith(".csv") for name in os.listdir(folder)):
            raise ConfigError(f"Span folder {folder} holds no .csv file: add the span's CSV or remove "
                              "the folder (or leave the span out of `spans`).")
    import fnmatch

    selected = tuple(s for s in present
                     if fnmatch.fnmatch(f"span-{s}/x.csv", span_pattern(config.spans)))
    if selected != wanted:
        raise ConfigError(
            f"spans {list(wanted)} cannot be selected by one file pattern without also taking "
            f"{sorted(set(selected) - set(wanted))}; choose a contiguous set of spans.")


def _read_file(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path} does not exist.")
    with open(path) as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise ConfigError(f"Config file {path} is not valid: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of field names to values.")
    return data


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), dict(value))
        else:
            merged[key] = value
    return merged


def _build(cls, values: Mapping[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"Unknown field(s) in {where}: {', '.join(unknown)}. "
                          f"Known: {', '.join(fields)}.")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        kwargs[name] = _coerce(value, default, f"{where}.{name}", fields[name].type)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str, field_type: Any = None) -> Any:
    if dataclasses.is_dataclass(default):
        if isinstance(value, type(default)):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}.")
        return _build(type(default), value, where)
    if isinstance(default, dict):
        # Dict fields map names to numbers (monitoring.feature_thresholds, validation.blank_fractions).
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of names to numbers, got {value!r}.")
        return {str(k): _coerce(v, 0.0, f"{where}.{k}") for k, v in value.items()}
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        # An empty default says nothing about its items; the annotation does.
        declared = [t for t in getattr(field_type, "__args__", ()) if isinstance(t, type)]
        item_type = type(default[0]) if default else (declared[0] if declared else int)
        return tuple(_coerce(v, item_type(), where) for v in value)
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if isinstance(default, (int, float)):
        try:
            number = type(default)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}.") from None
        if isinstance(default, int) and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{where} must be a whole number, got {value!r}.")
        return number
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}.")
        return value
    return value


def _absolute_paths(config: PipelineConfig, base_dir: str) -> PipelineConfig:
    def absolute(path: str) -> str:
        return path if "://" in path else os.path.abspath(os.path.join(base_dir, path))

    return dataclasses.replace(
        config,
        output_dir=absolute(config.output_dir),
        data_root=absolute(config.data_root),
        schema_path=absolute(config.schema_path),
        metadata=dataclasses.replace(config.metadata, sqlite_path=absolute(
            config.metadata.sqlite_path)) if config.metadata.sqlite_path else config.metadata,
    )
