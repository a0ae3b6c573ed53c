"""The processes: ``python -m stack.serve`` (the whole stack), ``python -m stack.worker`` (pipeline
workers), ``python -m stack.ctl`` (``s3ctl``, operator commands), and the stack runner and
composition root they share (``stack.runtime``, ``stack.wiring``).

The top layer: it imports ``server`` and ``gateway_rest`` and wires them together; nothing imports it.
"""
