"""What a node of ``sealgate serve`` can do (``--role``); see sealgate.serve."""

ROLES = ("relay", "web", "jobs")
