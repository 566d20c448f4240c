"""The canonical TFX pipeline, as one pure function of `PipelineConfig`.

ExampleGen -> StatisticsGen -> SchemaGen / ImportSchemaGen (fingerprinted) -> ExampleValidator
-> AnomaliesGate -> Transform -> [Tuner, if tuner.enabled] -> Trainer -> Resolver -> Evaluator
-> ServingModel (warmup requests, blessing record) -> Pusher
(+ with two spans or more and config.monitoring.enabled: SpanExampleGen -> SpanStatisticsGen
-> BaselineStatistics -> DriftValidator (TFX's DistributionValidator) -> DriftGate, and ModelDecay, between
AnomaliesGate and Transform)
(+ RunRecord first, and EdgeExport after the Evaluator when config.edge.enabled;
with config.lifecycle.warm_start the resolver's model is also the Trainer's base_model)

Every runner in `runners/` hands `create_pipeline(config)` to its orchestrator.
Imports are the component modules themselves, not `tfx.v1`, which would pull in
the Vertex AI client (about 10 s) in every process that builds the pipeline.
"""

import json
from typing import List, NamedTuple

from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx.components import (
    DistributionValidator,
    Evaluator,
    ExampleValidator,
    FileBasedExampleGen,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common import resolver
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2
from tfx.types import Channel
from tfx.types.standard_artifacts import Model, ModelBlessing

from models import features
from pipeline import mlmd
from pipeline.code_fingerprint import code_fingerprint
from pipeline.components import drift_gate
from pipeline.components import example_gen as csv_example_gen
from pipeline.components.anomalies_gate import AnomaliesGate
from pipeline.components.baseline_resolver import (
    BASELINE_RESOLVER_ID,
    SERVED_MODEL_RESOLVER_ID,
    PreviousBlessedModelStrategy,
    ServedModelStrategy,
)
from pipeline.components.edge_export import EdgeExport
from pipeline.components.model_decay import ModelDecay
from pipeline.components.pusher import ServingPusher
from pipeline.components.run_record import make_run_record, resolved_spans
from pipeline.components.schema_importer import FingerprintedImportSchemaGen
from pipeline.components.serving_model import ServingModel
from pipeline.components.tuner import tuner_component
from pipeline.config import PipelineConfig, span_pattern
from pipeline.orchestration import beam_pipeline_args
from pipeline.training.feature_check import check_features


class CustomMetric(NamedTuple):
    """One of the Evaluator's own metrics, by the module and class TFMA loads when it runs."""

    module: str
    class_name: str


# Named, not imported: importing them loads TFMA's whole metrics library (nltk, sacrebleu),
# about 3 s of CPU before the first component could start (runners/startup.py).
SLICE_GATE_METRIC = CustomMetric("pipeline.components.slice_gate", "SliceGateAccuracy")
CLASS_METRIC = CustomMetric("pipeline.components.class_metrics", "ClassPrecisionRecall")


def create_pipeline(config: PipelineConfig) -> tfx_pipeline.Pipeline:
    """The pipeline described by `config`; it reads nothing else."""
    check_features()
    example_gen = _example_gen(config, [
        example_gen_pb2.Input.Split(name="single_split", pattern=span_pattern(config.spans)),
    ], example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
    ]))).with_id("CsvExampleGen")
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    # SchemaGen's inferred schema is what `tfxt schema refresh` starts from;
    # validation and Transform use the curated schema.
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    import_schema_gen = FingerprintedImportSchemaGen(
        schema_file=config.schema_path, schema_fingerprint=config.schema_fingerprint,
    ).with_id("ImportSchemaGen")
    curated_schema = import_schema_gen.outputs["schema"]
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=curated_schema)
    validation = config.validation
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"], statistics=statistics_gen.outputs["statistics"],
        schema=curated_schema, min_examples_per_split=validation.min_examples_per_split,
        max_blank_fraction=validation.max_blank_fraction,
        blank_fractions_json=json.dumps(validation.blank_fractions, sort_keys=True),
        text_columns_json=json.dumps(list(features.CATEGORICAL_FEATURE_KEYS)),
        label_key=features.LABEL_KEY,
        numeric_columns_json=json.dumps(list(features.NUMERIC_FEATURE_KEYS)),
        int_columns_json=json.dumps(list(features.INT_FEATURE_KEYS)))
    # SchemaGen must finish before the gate can stop a run: `tfxt schema refresh`
    # needs its inferred schema exactly when the data no longer fits the curated one.
    anomalies_gate.add_upstream_node(schema_gen)
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=curated_schema,
        preprocessing_fn=config.preprocessing_fn,
        # Edited user code must not be served from the cache (pipeline/code_fingerprint.py).
        custom_config={"code_fingerprint": code_fingerprint(config.preprocessing_fn)},
        disable_statistics=not config.transform_statistics,
        # TFX writes an analyzer cache for a later Transform to read through its `analyzer_cache`
        # input; this pipeline gives it none, so the cache was work for nobody: 1.5-2.5 s of the
        # penguin run's Transform (5 interleaved rounds, same results).
        disable_analyzer_cache=True,
    )
    transform.add_upstream_node(anomalies_gate)
    tuner = tuner_component(
        config, transform.outputs["transformed_examples"], transform.outputs["transform_graph"],
        curated_schema, code_fingerprint(config.tuner.tuner_fn)) if config.tuner.enabled else None
    # The served model: the latest blessed model that was not rolled back, resolved before
    # training. ModelDecay scores it on the new spans, and continuous training warm-starts from
    # it. (The Evaluator's baseline resolver below waits for the Trainer, so it cannot serve either.)
    served_model_resolver = resolver.Resolver(
        strategy_class=ServedModelStrategy,
        model=Channel(type=Model),
        model_blessing=Channel(type=ModelBlessing),
    ).with_id(SERVED_MODEL_RESOLVER_ID)
    hp = config.hyperparameters
    trainer = Trainer(
        run_fn=config.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=curated_schema,
        train_args=trainer_pb2.TrainArgs(num_steps=hp.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=hp.eval_steps),
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
        # Continuous training starts from the served (latest blessed) model;
        # `models.trainer` falls back to a cold start when it no longer fits.
        base_model=served_model_resolver.outputs["model"] if config.lifecycle.warm_start else None,
        custom_config={
            "hyperparameters": hp.trainer_values(),
            "strategy": config.strategy,
            "seed": config.seed,
            "deterministic_ops": config.deterministic_ops,
            "code_fingerprint": code_fingerprint(config.run_fn),
        },
    )
    # The latest blessed model trained before this run's candidate (and not rolled back), so
    # that an unchanged re-run resolves the same baseline as the first and the cache serves the
    # Evaluator (pipeline/components/baseline_resolver.py says why).
    model_resolver = resolver.Resolver(
        strategy_class=PreviousBlessedModelStrategy,
        model=Channel(type=Model),
        model_blessing=Channel(type=ModelBlessing),
        candidate=trainer.outputs["model"],
    ).with_id(BASELINE_RESOLVER_ID)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config),
    )
    # The trained model plus TF Serving warmup requests and its blessing record.
    serving_model = ServingModel(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        blessing=evaluator.outputs["blessing"], model_name=config.pipeline_name)
    pusher = ServingPusher(
        model=serving_model.outputs["serving_model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=config.serving_model_dir)),
    ).with_id("Pusher")
    monitoring = _monitoring_nodes(config, served_model_resolver.outputs["model"])
    if monitoring:
        # After the schema check, whose findings are the more precise (a missing column
        # would also be a drift); before Transform, so that drift stops the run before
        # retraining and the served model is scored on the new span first.
        monitoring[0].add_upstream_node(anomalies_gate)
        transform.add_upstream_node(monitoring[-1])
    if monitoring or config.lifecycle.warm_start:
        monitoring = [served_model_resolver] + monitoring
    # Runs first, so that even a run that fails later is recorded with its config.
    run_record = make_run_record(config)
    example_gen.add_upstream_node(run_record)
    components: List = [
        run_record, example_gen, statistics_gen, schema_gen, import_schema_gen, example_validator,
        anomalies_gate, transform, trainer, model_resolver, evaluator, serving_model, pusher,
    ] + ([tuner] if tuner else []) + monitoring
    if config.edge.enabled:
        components.append(EdgeExport(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            transform_graph=transform.outputs["transform_graph"],
            examples=example_gen.outputs["examples"],
            max_accuracy_drop=config.edge.max_accuracy_drop,
            representative_examples=config.edge.representative_examples,
        ))
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=mlmd.connection_config(config),
        beam_pipeline_args=beam_pipeline_args(config),
    )


def _example_gen(config: PipelineConfig, splits, output_config) -> FileBasedExampleGen:
    # Checks each span file's header, then reads it typed by the curated schema, files in
    # sorted order (pipeline/components/example_gen.py says why).
    return FileBasedExampleGen(
        input_base=config.data_root,
        input_config=example_gen_pb2.Input(splits=splits),
        output_config=output_config,
        custom_config=csv_example_gen.custom_config(config.schema_path, config.schema_fingerprint),
        custom_executor_spec=executor_spec.BeamExecutorSpec(csv_example_gen.Executor))


def _monitoring_nodes(config: PipelineConfig, served_model: Channel) -> List:
    """Drift between the newest two spans and the served model's decay (`config.monitoring`).

    The two spans are read again as two splits of one Examples artifact, so
    TFX's DistributionValidator can compare their statistics and ModelDecay can
    score the served model on each. Left out with fewer than two spans, or when
    `data_root` is remote and no spans are configured (they cannot be listed).
    Returns the nodes, from SpanExampleGen to DriftGate, which runs after ModelDecay so that a
    run the gate stops still records the served model's accuracy.
    """
    spans = resolved_spans(config)
    if not config.monitoring.enabled or len(spans) < 2:
        return []
    previous_span, newest_span = spans[-2:]
    span_examples = _example_gen(config, [
        example_gen_pb2.Input.Split(name=drift_gate.NEWEST_SPLIT, pattern=span_pattern((newest_span,))),
        example_gen_pb2.Input.Split(name=drift_gate.PREVIOUS_SPLIT,
                                    pattern=span_pattern((previous_span,))),
    ], example_gen_pb2.Output()).with_id("SpanExampleGen")
    span_statistics = StatisticsGen(examples=span_examples.outputs["examples"]).with_id(
        "SpanStatisticsGen")
    baseline = drift_gate.BaselineStatistics(
        statistics=span_statistics.outputs["statistics"], split=drift_gate.PREVIOUS_SPLIT,
    ).with_id(drift_gate.BASELINE_NODE_ID)
    validator = DistributionValidator(
        statistics=span_statistics.outputs["statistics"],
        baseline_statistics=baseline.outputs["baseline"],
        config=drift_gate.distribution_validator_config(config.monitoring),
        include_split_pairs=[(drift_gate.NEWEST_SPLIT, drift_gate.PREVIOUS_SPLIT)],
    ).with_id(drift_gate.VALIDATOR_NODE_ID)
    decay = ModelDecay(
        examples=span_examples.outputs["examples"], model=served_model,
        newest_span=newest_span, previous_span=previous_span,
        decay_threshold=config.monitoring.decay_threshold).with_id("ModelDecay")
    gate = drift_gate.DriftGate(
        anomalies=validator.outputs["anomalies"], action=config.monitoring.drift_action,
        newest_span=newest_span, previous_span=previous_span).with_id(drift_gate.NODE_ID)
    gate.add_upstream_node(decay)
    return [span_examples, span_statistics, baseline, validator, decay, gate]


def eval_config(config: PipelineConfig) -> tfma_config.EvalConfig:
    """TFMA config: accuracy gates, per-class precision/recall, a confusion matrix, slices from `features`.

    The value and change thresholds gate the Overall slice only: on a small slice one more
    wrong prediction can move accuracy by several points. The per-slice gate is opt-in
    (`thresholds.slice_min_accuracy`) and skips slices under `thresholds.slice_min_examples`.

    The messages come from TFMA's config_pb2: TFMA 0.52 (TFX 1.21) no longer exports them
    at the package's top level, and the module is the same one on TFMA 0.47 (TFX 1.16).
    """
    thresholds = config.thresholds
    overall_threshold = tfma_config.PerSliceMetricThreshold(
        slicing_specs=[tfma_config.SlicingSpec()],
        threshold=tfma_config.MetricThreshold(
            value_threshold=tfma_config.GenericValueThreshold(lower_bound={"value": thresholds.min_accuracy}),
            # A baseline exists from the second blessed run on; until then TFMA
            # skips change thresholds.
            change_threshold=tfma_config.GenericChangeThreshold(
                direction=tfma_config.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -thresholds.max_accuracy_drop})))
    gated_metrics = [
        tfma_config.MetricConfig(class_name="ExampleCount"),
        tfma_config.MetricConfig(class_name="SparseCategoricalAccuracy",
                                 per_slice_thresholds=[overall_threshold]),
    ]
    if thresholds.slice_min_accuracy > 0:
        gated_metrics.append(tfma_config.MetricConfig(
            class_name=SLICE_GATE_METRIC.class_name, module=SLICE_GATE_METRIC.module,
            config=json.dumps({"min_examples": thresholds.slice_min_examples}),
            per_slice_thresholds=[tfma_config.PerSliceMetricThreshold(
                slicing_specs=[tfma_config.SlicingSpec(feature_keys=[key]) for key in features.SLICE_KEYS],
                threshold=tfma_config.MetricThreshold(value_threshold=tfma_config.GenericValueThreshold(
                    lower_bound={"value": thresholds.slice_min_accuracy})))]))
    return tfma_config.EvalConfig(
        model_specs=[tfma_config.ModelSpec(
            # Loaded as a SavedModel and called through its signatures. Left to infer the
            # type, TFMA loads the model as a Keras model once to find out that it is one and
            # again to evaluate it, and adds the compiled metrics itself; that cost 35-40% of
            # the Evaluator's CPU time on the taxi bench (bench/anchor.py), for the same numbers.
            model_type="tf_generic",
            signature_name="serving_default",
            label_key=features.transformed_name(features.LABEL_KEY),
            prediction_key="scores",
            preprocessing_function_names=["transform_features"],
        )],
        slicing_specs=[tfma_config.SlicingSpec()]
        + [tfma_config.SlicingSpec(feature_keys=[key]) for key in features.SLICE_KEYS],
        metrics_specs=[
            tfma_config.MetricsSpec(metrics=gated_metrics + [
                # The confusion matrix the run report draws (pipeline/ops/report.py).
                tfma_config.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                # The model's compiled loss and metric (models/model.py), which TFMA added by
                # itself when it loaded the model as a Keras model; the report shows the loss.
                tfma_config.MetricConfig(class_name="SparseCategoricalCrossentropy",
                                         config=json.dumps({"name": "loss"})),
                tfma_config.MetricConfig(class_name="SparseCategoricalAccuracy",
                                         config=json.dumps({"name": "accuracy"})),
            ]),
            # Each class's precision and recall, with the keys of TFMA's binarized Precision and
            # Recall, counted in one pass (pipeline/components/class_metrics.py says why).
            tfma_config.MetricsSpec(metrics=[tfma_config.MetricConfig(
                class_name=CLASS_METRIC.class_name, module=CLASS_METRIC.module,
                config=json.dumps({"class_ids": list(range(len(features.LABEL_CLASSES)))}))]),
        ],
    )
