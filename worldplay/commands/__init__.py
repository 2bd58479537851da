"""One module per `worldplay` subcommand, named after it: `add_arguments(parser)` and `run(args) -> int`."""
