"""The pods' liveness, readiness and startup probe once their service serves TLS.

The kubelet's own gRPC probe speaks plaintext only, so a service with `--tls-cert` cannot
answer it. This asks the standard gRPC health service (which needs no token) over TLS,
with the image's Python and the services' own TLS code, presenting the pod's certificate
in case the service demands one (mTLS). Exit 0 when the service answers SERVING; 1
otherwise, with the reason on stderr, which the kubelet shows in the pod's events.

    python /etc/privaudit/probe/health_probe.py --address 127.0.0.1:50052 \
        --tls-ca ca.crt --tls-cert tls.crt --tls-key tls.key --tls-server-name NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privaudit.services.common.channels import ChannelSecurity, open_channel
from privaudit.services.common.tls import ClientTLS, TLSConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health check of a privaudit service over TLS")
    parser.add_argument("--address", required=True, help="host:port the service listens on")
    parser.add_argument("--tls-ca", type=Path, required=True, help="PEM CA bundle the service's certificate chains to")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate to present (mTLS), with --tls-key")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--tls-server-name", help="the name the service's certificate carries")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        tls = ClientTLS.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    except TLSConfigError as error:
        print(f"health probe: {error}", file=sys.stderr)
        return 1
    with open_channel(args.address, security=ChannelSecurity(tls)) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        except grpc.RpcError as error:
            print(f"health probe: {args.address}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        print(f"health probe: {args.address} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
