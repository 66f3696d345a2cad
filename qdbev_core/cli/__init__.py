"""The ``qdbev`` command line. One module per verb; ``main`` wires them up explicitly."""
