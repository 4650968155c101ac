"""`python -m lib_alignment`: the command line."""

from .cli import main

raise SystemExit(main())
