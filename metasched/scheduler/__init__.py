"""The global scheduler: a synchronous core, the service loop around it, and its Ray actor."""
