"""The CLI's commands (pkd.cli parses the arguments and calls one): `run` for one run, `compare` for many."""
