"""Edge: int8-quantized TFLite models for Coral Edge TPU and Raspberry Pi."""
