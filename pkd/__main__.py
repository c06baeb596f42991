"""`python -m pkd` entry point."""

from pkd.cli import main

raise SystemExit(main())
