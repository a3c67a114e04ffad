// swift-tools-version:6.1
import PackageDescription

// libFuzzer harnesses for every decoder of untrusted bytes (issue 14, "Hostile input, measured").
// A package of its own, so the root package's build and tests never see it; scripts/fuzz builds it
// with -sanitize=fuzzer,address and runs each harness. See README.md.
//
// The same dependency URLs as the root package, so SwiftPM takes one copy of each (pinned by the
// root's Package.resolved, which scripts/fuzz copies here).
let relay = Target.Dependency.product(name: "FrameRelayFuzzable", package: "FrameRelay")
let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")

/// One executable per harness: a file defining LLVMFuzzerTestOneInput, and <Module>_main (the entry
/// point SwiftPM links `main` to) handing the command line to libFuzzer's driver (CFuzzDriver).
func harness(_ name: String, _ extra: [Target.Dependency] = []) -> Target {
  .executableTarget(name: name, dependencies: ["FuzzSupport", "CFuzzDriver", relay, grpcCore, swiftProtobuf, logging] + extra)
}

let package = Package(
  name: "FrameRelayFuzz",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "FrameRelay", path: "../.."),
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
  ],
  targets: [
    .target(name: "CFuzzDriver"),
    .target(name: "FuzzSupport", dependencies: [relay, grpcCore, swiftProtobuf, logging]),
    harness("FuzzNative"),
    harness("FuzzAVA"),
    harness("FuzzSimple"),
    harness("FuzzImageAPI"),
    harness("FuzzAuth", [crypto]),
    harness("FuzzSettings"),
    harness("FuzzLiveDecoder"),
  ]
)
