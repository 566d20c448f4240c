"""Scheduled runs on Airflow: a sensor that starts the pipeline only when a new complete span arrived.

`runners/airflow_runner.py` calls `add_new_span_sensor` when `lifecycle.schedule` is set. On each
scheduled run the sensor pokes `pipeline.ops.watch.new_span_ready` every `lifecycle.poll_seconds`
(in reschedule mode, so it holds no worker slot while waiting); if no new span arrives within
`SENSOR_TIMEOUT_SECONDS` the run is skipped, not failed, and so are the pipeline's tasks.
(The Vertex AI schedule is in `pipeline.ops.vertex`.)
"""

from pipeline.config import PipelineConfig

SENSOR_TASK_ID = "new_span_sensor"
# How long one scheduled run waits for a span before it is skipped. The DAG allows one active
# run at a time (`max_active_runs`), so a waiting sensor delays, never doubles, the next run.
SENSOR_TIMEOUT_SECONDS = 23 * 3600


def add_new_span_sensor(dag, config: PipelineConfig):
    """Puts a `PythonSensor` in front of every task of `dag` that had no upstream task; returns `dag`."""
    from airflow.sensors.python import PythonSensor

    from pipeline.ops.watch import new_span_ready

    roots = list(dag.roots)
    sensor = PythonSensor(
        task_id=SENSOR_TASK_ID, dag=dag, python_callable=new_span_ready, op_args=[config],
        mode="reschedule", poke_interval=config.lifecycle.poll_seconds,
        timeout=SENSOR_TIMEOUT_SECONDS, soft_fail=True)
    for task in roots:
        sensor >> task
    return dag
