"""`python -m polymkt_dagster.cli ...`: the same as the `polymkt` console script."""

from polymkt_dagster.cli.main import main

main()
