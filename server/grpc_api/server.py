"""Builds the gRPC server: JobService, AdminService, the standard health service and reflection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.s3.v1 import admin_pb2, admin_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from server.grpc_api.admin_servicer import AdminService
from server.grpc_api.interceptors import DomainErrorInterceptor
from server.grpc_api.servicer import JobService
from server.metrics.rpc import RpcMetrics
from server.service.bundle import Services

SERVICE_NAME = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass
class GrpcServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def start(self) -> None:
        self.server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float) -> None:
        """Stop taking calls, let running ones finish within ``grace_s``, then cancel the rest."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def build_grpc_server(
    services: Services, *, bind: str, max_workers: int = 32, metrics: RpcMetrics | None = None
) -> GrpcServer:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[DomainErrorInterceptor(metrics)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(services), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(services.admin, services.jobs), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {bind}")
    return GrpcServer(server, port, health_servicer)
