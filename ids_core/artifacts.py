"""File names of a training run's artifacts and of a model bundle's members, spelled once.

A trainer run directory (``runs/<profile>/``) holds ``model_int8.tflite``; inside a bundle (and so in an
installed bundle slot) the same model is ``model.tflite``. Everything else keeps its name.
"""

from __future__ import annotations

from types import MappingProxyType

SHIPPED_MODEL = "model_int8.tflite"  # the int8 model in a trainer run directory
FLOAT_MODEL = "model_float.tflite"
BUNDLE_MODEL = "model.tflite"  # the same model inside a bundle / a bundle slot
SPEC = "spec.json"
SELFTEST_INPUTS = "selftest_inputs.npy"
SELFTEST_OUTPUTS = "selftest_outputs.npy"
AGENT_CONFIG_FRAGMENT = "agent-config.yaml"  # optional bundle member: agent settings that travel with the model
# The optional attack-category model (ids_core.category): same names in a run directory and in a bundle.
CATEGORY_MODEL = "category_int8.tflite"
CATEGORY_SPEC = "category.json"
CATEGORY_SELFTEST_INPUTS = "category_selftest_inputs.npy"
CATEGORY_SELFTEST_OUTPUTS = "category_selftest_outputs.npy"
CATEGORY_FILES: tuple[str, ...] = (CATEGORY_MODEL, CATEGORY_SPEC, CATEGORY_SELFTEST_INPUTS, CATEGORY_SELFTEST_OUTPUTS)
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"

# The model file a model directory may hold, in order of preference (a run directory, a bundle slot).
MODEL_FILES: tuple[str, ...] = (SHIPPED_MODEL, BUNDLE_MODEL)

# Trainer run file → bundle member.
RUN_TO_BUNDLE: MappingProxyType[str, str] = MappingProxyType(
    {
        SHIPPED_MODEL: BUNDLE_MODEL,
        SPEC: SPEC,
        SELFTEST_INPUTS: SELFTEST_INPUTS,
        SELFTEST_OUTPUTS: SELFTEST_OUTPUTS,
    }
)

# Optional trainer run files → bundle members: all of a group or none (a run without a category model).
OPTIONAL_RUN_TO_BUNDLE: MappingProxyType[str, str] = MappingProxyType({name: name for name in CATEGORY_FILES})
