"""Runner files: each builds the config and hands `create_pipeline(config)` to one orchestrator."""
