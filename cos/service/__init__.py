"""gRPC servicers: translate protos to domain calls and errors to status codes."""
