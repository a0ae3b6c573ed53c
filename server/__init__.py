"""S3 JobService: orchestration, limits, persistence and the pipeline behind the gRPC API."""
