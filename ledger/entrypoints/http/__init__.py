"""JSON over HTTP (the Connect protocol's unary calls) for callers that cannot speak gRPC."""
