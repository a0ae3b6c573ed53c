"""Object storage: the port (``port``), the key layout (``keys``) and two adapters (``local``, ``s3``)."""
