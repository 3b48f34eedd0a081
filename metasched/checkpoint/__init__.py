"""Checkpointing of long tasks (CRIU for command tasks); see docs/checkpointing.md."""
