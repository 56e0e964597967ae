"""One module per subcommand.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
A command parses nothing itself beyond its arguments, calls one library function and renders
the result; errors a user can fix are raised as ``UsageError``/``ConfigError``/
``ResultsFileError`` and become one line on stderr with exit status 2.
"""

COMMANDS = ("compare", "cases", "report", "gate", "doctor", "sweep", "predict", "faq",
            "history", "trace")
