"""Edge IDS trainer: reproduces the Uni-/Bi-Hybrid RNN IDS on IoTID20 and exports the int8 model."""
