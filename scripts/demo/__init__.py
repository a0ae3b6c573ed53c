"""``make demo``: the main job, end to end, through the public REST API.

Starts the embedded stack (``python -m stack.serve``: SQLite, local objects, the local Triton) as a
subprocess on free loopback ports, runs an interior album and a seller album exactly as the app does
(anonymous sign-in, create job, presigned uploads, confirm, analyze, execute, watch, download), prints
a summary, writes the output sets and before/after contact sheets to ``./demo-output/``, and stops the
stack with SIGTERM.
"""
