"""The program's rules as pure functions of a ``Policy`` and their inputs: no clock, no I/O."""
