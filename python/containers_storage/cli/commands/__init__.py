"""The commands' handlers, a module for each group of commands; :mod:`.table` names every
command, its flags and help, and the ``"module:function"`` that handles it."""
