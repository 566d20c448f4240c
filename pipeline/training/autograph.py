"""Keeps TensorFlow's AutoGraph from converting tf-keras's own code; `models.trainer.train` and
`pipeline.training.signatures.make_signatures` call `skip_tf_keras_conversion` before tracing.

AutoGraph rewrites every Python function a `tf.function` calls, except modules on its
do-not-convert list (`tensorflow.python.autograph.core.config.CONVERSION_RULES`). That list
names `keras`, whose code is written for graphs and needs no conversion, but not `tf_keras`,
the same code under the package name TFX 1.16 needs (Keras 2, set in pipeline/__init__.py). So the first
training step converted tf-keras's train step, optimizer, losses and metrics source by source:
about 25 s on an idle 2-core machine (79 s under load), which made the default 300-step
Trainer look like 84 ms per step, and the SavedModel export and edge export paid it again.
Measured on the penguin Transform output with the same seed: the first step went from 79.1 s
to 5.5 s, and loss, accuracy and validation numbers were identical to the last digit.

TensorFlow offers no public switch for this list, hence the private rule added here.
"""

_RULE_PREFIX = "tf_keras"


def skip_tf_keras_conversion() -> None:
    """Adds `tf_keras` to AutoGraph's do-not-convert rules, as TensorFlow does for `keras`. Idempotent."""
    from tensorflow.python.autograph.core import config, config_lib

    if any(isinstance(rule, config_lib.DoNotConvert) and rule._prefix == _RULE_PREFIX  # noqa: SLF001
           for rule in config.CONVERSION_RULES):
        return
    # Rules are tried in order and the first that matches decides, so this one goes first.
    config.CONVERSION_RULES = (config_lib.DoNotConvert(_RULE_PREFIX),) + tuple(config.CONVERSION_RULES)
