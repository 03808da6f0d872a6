"""The pure core: commands, events, member and program state, ``decide``, ``evolve``, stream names and the
query functions every reader shares. No I/O, no clock: it imports only the standard library, pydantic and
:mod:`policies`."""
