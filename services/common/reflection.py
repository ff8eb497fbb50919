"""gRPC server reflection, both versions: grpc.reflection.v1 and the older v1alpha.

grpcio-reflection (1.85) implements only v1alpha, while newer clients (grpcurl from 1.8.8, grpcui,
Postman) ask for v1 first. The two protocols differ only in their package name: same messages, same
field numbers, same single method. So one v1alpha servicer answers both, and v1's descriptor
(v1alpha's file under v1's package) is added to the pool so that clients can also describe the v1
service itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
SERVICE_NAMES = (V1_SERVICE_NAME, reflection.SERVICE_NAME)


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, derived from v1alpha's descriptor."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.options.Clear()  # v1alpha's Java/Go package names and its `deprecated` mark

    def moved(type_name: str) -> str:
        return type_name.replace(f".{V1ALPHA_PACKAGE}.", f".{V1_PACKAGE}.")

    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # message fields only; setting it on a scalar is an error
                field.type_name = moved(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type, method.output_type = moved(method.input_type), moved(method.output_type)
    return proto


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(service_names: Sequence[str], server: grpc.Server) -> None:
    """Serves reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    servicer = reflection.ReflectionServicer([*service_names, *SERVICE_NAMES], pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    # v1 on the wire is v1alpha's messages: the same servicer, with v1alpha's (de)serializers.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        ),
    }),))
