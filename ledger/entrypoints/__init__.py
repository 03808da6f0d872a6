"""How the ledger is reached: the gRPC services (:mod:`ledger.entrypoints.grpc`) and the command line."""
