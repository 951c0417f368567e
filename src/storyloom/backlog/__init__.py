"""Backlog state below the pipeline: item transitions, flapping, the item alerts, task claims, contract drift.

The runner, the scheduler, cancel and resume all move items through `transitions.change_status`.
"""
