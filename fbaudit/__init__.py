"""fbaudit: change audit and log shipping for Firebird 3.0, 4.0 and 5.0.

The package is four layers; a module imports only from its own layer or a lower one, never in a
cycle, and never a ``_private`` name of another module (tests/test_layers.py keeps it so;
docs/architecture.md draws it)::

    front ends       cli  api  demo
                        |
    features         capture  baseline  transfer  rotation  status
                     history  versions  prune  checkpoint  schedule
                        |
    shared services  objects (fbaudit's objects in a database)   forms (logged value forms, key codec)
                     sources (Result, open, for each source, the worker pool)   staging (packets not shipped)
                        |
    foundation       errors  config  registry  yamlio  runtime  db  idents  templates  catalog
                     logs  progress  joblock  bulk

Every command is a library function (``fbaudit.capture.enable``, ``fbaudit.transfer.transfer``,
``fbaudit.history.history`` ...); ``cli`` and ``api`` call the same functions.
"""
