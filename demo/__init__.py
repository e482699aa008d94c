"""The main job on one machine: train → broker → agent → flows in → scored summary.

An orchestrator: it runs every component through its own entry point in a child process, as a user would,
so it depends on none of them in code (only on ``ids_core`` for artifact names).
"""
