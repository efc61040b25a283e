"""`python -m readings_service` runs the command line."""

from readings_service.cli import main

main()
