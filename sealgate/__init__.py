"""sealgate: the command line and the composition of the gateway's parts."""
