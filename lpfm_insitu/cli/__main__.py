"""``python -m lpfm_insitu.cli``: the ``lpfm`` command."""

import sys

from .main import main

sys.exit(main())
