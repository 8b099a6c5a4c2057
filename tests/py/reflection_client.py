"""A client nobody on this project wrote the stubs for: it learns mdb's API
by gRPC reflection alone (grpcio + grpcio-reflection from PyPI), then calls
GetStats and ListMachines and prints what it got as JSON."""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main(addr: str) -> None:
    channel = grpc.insecure_channel(addr)
    reflection_db = ProtoReflectionDescriptorDatabase(channel)
    services = reflection_db.get_services()
    pool = descriptor_pool.DescriptorPool(reflection_db)
    service = pool.FindServiceByName("mdb.v1.MachineDb")

    def call(method_name, request_fields):
        method = service.FindMethodByName(method_name)
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        return json_format.MessageToDict(rpc(req_cls(**request_fields), timeout=10))

    out = {
        "services": sorted(services),
        "stats": call("GetStats", {}),
        "games": call("ListMachines", {"use": 4}),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
