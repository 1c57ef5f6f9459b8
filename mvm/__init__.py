"""The ``mvm`` command line: a thin dispatcher over the public functions of the packages."""
