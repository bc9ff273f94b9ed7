"""Old import path (lpfm_insitu 0.1), kept for user scripts: the module is now ``lpfm_insitu.model.inference``."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("lpfm_insitu.model.inference")
