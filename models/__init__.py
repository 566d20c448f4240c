"""Model code: the feature vocabulary, preprocessing, the Keras model and its signatures."""
