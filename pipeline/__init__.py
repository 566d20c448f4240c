"""The TFX pipeline definition, its typed config, and the project CLI."""
