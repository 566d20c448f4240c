"""Transform's `preprocessing_fn`, referenced by the pipeline as
`models.preprocessing.preprocessing_fn`.

Every raw column named in `models.features` is handled here:
- numeric: missing values imputed with the training mean, then z-scored;
- categorical: missing values imputed with `MISSING_CATEGORY`, then a
  vocabulary maps values to ids: the declared values (`features.CATEGORY_VALUES`) and the missing
  token first, in that order, then values new to the declaration by frequency; values unseen in
  training go to one OOV bucket;
- label: class names map to ids in the order of `features.LABEL_CLASSES`, whatever their
  frequency in the training data (a class not listed would get an id after them).

The edge preprocessing spec reproduces these steps on a device, so keep the two
in step (`edge.spec` derives its numbers from the Transform graph itself).
"""

import tensorflow as tf
import tensorflow_transform as tft

from models import features


def preprocessing_fn(inputs):
    """Maps raw features (dense or sparse) to dense transformed features of shape [N, 1]."""
    outputs = {}
    for key in features.NUMERIC_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = scale_numeric(inputs[key])
    for key in features.CATEGORICAL_FEATURE_KEYS:
        filled = densify(inputs[key], features.MISSING_CATEGORY)
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            filled,
            num_oov_buckets=features.NUM_OOV_BUCKETS,
            vocab_filename=features.vocabulary_name(key),
            # Ids stable across training windows, whatever the frequencies (see the docstring).
            reserved_tokens=list(features.CATEGORY_VALUES.get(key, ())) + [features.MISSING_CATEGORY],
        )
    # The label is absent at serving time; Transform prunes this output then.
    if features.LABEL_KEY in inputs:
        label = densify(inputs[features.LABEL_KEY], "")
        # Reserved tokens keep their order at the start of the vocabulary: class ids then follow
        # LABEL_CLASSES, not which class happens to be the majority in this training data.
        outputs[features.transformed_name(features.LABEL_KEY)] = tft.compute_and_apply_vocabulary(
            label, vocab_filename=features.LABEL_VOCABULARY,
            reserved_tokens=[str(name) for name in features.LABEL_CLASSES])
    return outputs


def scale_numeric(raw):
    """Imputes missing values with the mean of the present ones, then z-scores.

    Mean and variance are computed over present values only, so imputation does
    not shrink the variance; an imputed value maps to exactly 0.
    """
    if isinstance(raw, tf.sparse.SparseTensor):
        raw = tf.SparseTensor(raw.indices, tf.cast(raw.values, tf.float32), raw.dense_shape)
    else:
        raw = tf.cast(raw, tf.float32)
    values = densify(raw, float("nan"))
    present = tf.logical_not(tf.math.is_nan(values))
    present_values = tf.boolean_mask(values, present)
    mean = tft.mean(present_values)
    std = tf.sqrt(tft.var(present_values))
    safe_std = tf.where(std > 0, std, tf.ones_like(std))
    return tf.where(present, (values - mean) / safe_std, tf.zeros_like(values))


def densify(tensor, default_value):
    """A [N, 1] dense tensor from a dense [N], [N, 1] or sparse [N, <=1] input."""
    if isinstance(tensor, tf.sparse.SparseTensor):
        batch = tensor.dense_shape[0]
        return tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, tensor.values, [batch, 1]), default_value)
    if tensor.shape.rank == 1:
        return tf.expand_dims(tensor, -1)
    return tensor
