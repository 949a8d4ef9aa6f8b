"""`meshd demo`: a whole mesh in network namespaces on this machine, with a traffic test."""
