// swift-tools-version:6.1
// Builds the two protoc plugins (protoc-gen-swift, protoc-gen-grpc-swift-2) from the mirrored packages,
// pinned to the same versions the main package uses, so generated code always matches its runtime.
import PackageDescription

let package = Package(
  name: "ProtocPlugins",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
  ],
  targets: []
)
