"""The Trainer's machinery that adopters do not edit: strategies, loopback clusters, signatures.

`models/trainer.py` (user code) calls into it; it imports only the config and
the feature vocabulary (`models.features`), never the rest of `models/`.
"""
