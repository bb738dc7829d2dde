"""Directory import: the addresses a customer's own directory lists (Microsoft Graph, CSV).

``sync`` compares and writes (any source), ``graph`` and ``csv_source`` read the sources,
``settings`` keeps a tenant's Graph credentials, ``run`` ties them together for the CLI
and the daily job.
"""
