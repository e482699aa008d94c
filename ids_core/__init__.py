"""The neutral core every component shares: the IoTID20 column schema, the preprocessing spec and transform,
windows, artifact names, typed config, the on-disk outbox. It imports nothing else of ours."""
