"""The neutral core every component shares: the IoTID20 column schema, the preprocessing spec and transform,
windows, the int8 interpreter interface, artifact names, typed config, private state directories, the on-disk
outbox, store-and-forward and the MQTT connection. It imports nothing else of ours (see DESIGN.md)."""
