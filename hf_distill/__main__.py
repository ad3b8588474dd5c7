"""`python -m hf_distill` (and `accelerate launch -m hf_distill distill ...`): the `hf-distill` command."""

import sys

from .cli import main

sys.exit(main())
