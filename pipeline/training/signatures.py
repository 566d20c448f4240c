"""All serving signatures of the exported model, in one module.

- `serving_default`: serialized `tf.Example`s (no label) -> `classes`, `scores`.
  TF Serving's classify API and TFMA use it.
- `serving_raw`: one tensor per raw feature, for JSON clients, each of the
  schema's type: INT features int64 (`features.MISSING_INT` = missing), FLOAT
  features float32 (NaN = missing), BYTES features strings ("" = missing) ->
  `scores`, `classes`, `class_ids`, `predicted_class`. So GetModelMetadata
  tells a client the same types as the schema and the tf.Example parser.
- `transform_features`: serialized `tf.Example`s (with label) -> transformed
  features, the preprocessing TFMA applies before computing metrics.

Serving, batch prediction, evaluation and edge export all go through these.
"""

import tensorflow as tf

from models import features
from pipeline.training import autograph

SERVING_DEFAULT = "serving_default"
SERVING_RAW = "serving_raw"
TRANSFORM_FEATURES = "transform_features"


def make_signatures(model: tf.keras.Model, tf_transform_output) -> dict:
    """Concrete functions for `model.save(..., signatures=...)`.

    `model.tft_layer` is set here so the Transform graph is saved with the model.
    """
    autograph.skip_tf_keras_conversion()
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    # Serving parses only model inputs: not the label, not passthrough columns such as the span key.
    serving_spec = {k: v for k, v in raw_spec.items() if k in features.feature_keys()}
    label_names = tf.constant(tf_transform_output.vocabulary_by_name(features.LABEL_VOCABULARY))

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        model_inputs = {features.transformed_name(k): transformed[features.transformed_name(k)]
                        for k in features.feature_keys()}
        return model(model_inputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        scores = predict(tf.io.parse_example(examples, serving_spec))
        classes = tf.tile(tf.expand_dims(label_names, 0), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    # Each input has the type Transform's feature spec (the schema) gives it, as in a tf.Example.
    raw_inputs = [tf.TensorSpec([None], serving_spec[k].dtype, name=k) for k in features.feature_keys()]

    @tf.function(input_signature=raw_inputs)
    def serve_raw(*tensors):
        columns = dict(zip(features.feature_keys(), tensors))
        scores = predict(raw_to_sparse(columns, serving_spec))
        class_ids = tf.argmax(scores, axis=-1)
        return {
            "scores": scores,
            "classes": tf.tile(tf.expand_dims(label_names, 0), [tf.shape(scores)[0], 1]),
            "class_ids": class_ids,
            "predicted_class": tf.gather(label_names, class_ids),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_examples.get_concrete_function(),
        SERVING_RAW: serve_raw.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }


def raw_to_sparse(columns, raw_spec):
    """Dense raw columns (NaN, `features.MISSING_INT` or "" for missing) to the tensors Transform expects.

    Columns that the schema makes optional become SparseTensors without the
    missing entries, exactly as parsing a `tf.Example` that lacks them would.
    """
    result = {}
    for key, column in columns.items():
        spec = raw_spec[key]
        if spec.dtype == tf.string:
            present = tf.not_equal(column, "")
        elif spec.dtype.is_integer:
            present = tf.not_equal(column, tf.constant(features.MISSING_INT, column.dtype))
        else:
            present = tf.logical_not(tf.math.is_nan(column))
        if isinstance(spec, tf.io.VarLenFeature):
            indices = tf.where(present)
            batch = tf.shape(column, out_type=tf.int64)[0]
            result[key] = tf.SparseTensor(
                indices=tf.concat([indices, tf.zeros_like(indices)], axis=1),
                values=tf.gather_nd(column, indices),
                dense_shape=[batch, 1])
        else:
            result[key] = tf.reshape(column, [-1] + list(spec.shape))
    return result
