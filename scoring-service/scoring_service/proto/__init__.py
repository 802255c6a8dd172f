"""The Open Inference Protocol's gRPC messages: grpc_predict_v2.proto and the modules generated from it."""
