"""The subcommands of ``python eval/figures.py``, one module each: a ``Config`` dataclass (its
flags, parsed by :func:`agents.cli.parse_config`) and ``main(cfg)``. Module ``<name>`` is
subcommand ``<name>`` with ``-`` for ``_`` (``what_where`` is ``figures.py what-where``)."""
