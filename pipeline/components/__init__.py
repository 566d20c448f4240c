"""The template's custom TFX components, one module each (component and executor together).

Each exists where TFX has no component that does the job; `pipeline.pipeline`
wires them next to TFX's standard components.
"""
