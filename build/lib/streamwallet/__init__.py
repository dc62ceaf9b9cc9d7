"""streamwallet: the process entry points (CLI), settings and the local stack."""
