"""The key directory: tenants, domains, users, keys, certificates and CA backends."""
