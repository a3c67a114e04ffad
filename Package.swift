// swift-tools-version:6.1
import PackageDescription

// Rooms and their arrows are described in docs/architecture.md; arrows only point down.
let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
let grpcTransport = Target.Dependency.product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport")
let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let certificateReloading = Target.Dependency.product(name: "NIOCertificateReloading", package: "swift-nio-extras")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let jwt = Target.Dependency.product(name: "JWTKit", package: "jwt-kit")
let metrics = Target.Dependency.product(name: "Metrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let nio: [Target.Dependency] = ["NIOCore", "NIOPosix", "NIOHTTP1"].map { .product(name: $0, package: "swift-nio") }

let package = Package(
  name: "FrameRelay",
  // The generated gRPC code is marked available from macOS 15; Linux ignores this.
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "relay-server", targets: ["relay-server"]),
    .executable(name: "relay-client", targets: ["relay-client"]),
    // Only for Tests/Fuzz (a separate package that links the decoders into libFuzzer harnesses).
    .library(
      name: "FrameRelayFuzzable", targets: ["RelayServer", "RelayCore", "RelayProtocol", "Media", "Settings", "Annotations"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
    .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
  ],
  targets: [
    .target(name: "RelayProtocol", dependencies: ["RelayCore", grpcCore, grpcProtobuf, swiftProtobuf]),
    .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat", providers: [
      .apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"]),
    ]),
    .systemLibrary(name: "CFFmpegDevices", pkgConfig: "libavdevice", providers: [.apt(["libavdevice-dev"])]),
    .systemLibrary(name: "CV4L2"),
    .target(name: "Media", dependencies: ["CFFmpeg", "CV4L2"]),
    // v4l2 and lavfi inputs (cameras, the test pattern): the capturing side only.
    .target(name: "MediaDevices", dependencies: ["Media", "CFFmpegDevices"]),
    .target(name: "RelayCore"),
    .target(name: "LogOutput", dependencies: [logging]),
    .target(name: "Settings", dependencies: [
      .product(name: "Configuration", package: "swift-configuration"), .product(name: "Yams", package: "Yams"),
    ]),
    .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .target(name: "Annotations", dependencies: [
      "CSQLite", "RelayCore", "RelayProtocol", grpcCore, grpcTransport, swiftProtobuf, crypto, logging, nioSSL, metrics,
      .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio"),
    ]),
    .target(
      name: "RelayServer",
      dependencies: ["RelayCore", "RelayProtocol", "Media", "Annotations", grpcCore, grpcTransport, grpcProtobuf, swiftProtobuf, logging,
        serviceLifecycle, crypto, nioSSL,
        certificateReloading, x509, jwt, .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdCore", package: "hummingbird"),
        .product(name: "HummingbirdTLS", package: "hummingbird"), metrics, prometheus,
      ] + nio),
    .target(
      name: "RelayClient",
      dependencies: [
        "RelayCore", "RelayProtocol", "Media", "MediaDevices", "CZlib", grpcCore, grpcTransport, logging, serviceLifecycle, nioSSL, x509,
        metrics, .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
      ]),
    .executableTarget(
      name: "relay-server", dependencies: ["RelayServer", "RelayCore", "Annotations", "Settings", "LogOutput", argumentParser, logging, metrics,
        prometheus,
      ],
      path: "relay-server/Sources"),
    .executableTarget(
      name: "relay-client",
      dependencies: [
        "RelayClient", "RelayCore", "Media", "Settings", "LogOutput", argumentParser, logging, serviceLifecycle, metrics,
        prometheus, .product(name: "Hummingbird", package: "hummingbird"),
      ],
      path: "relay-client/Sources"),
    // Benchmarks only: the transport with nothing behind it, serving (Publish, Annotate) or publishing
    // (scripts/bench/*.py --floor; a minimal publisher for scripts/bench/publishers.py --minimal).
    .executableTarget(
      name: "relay-transport-floor",
      dependencies: [
        "RelayServer", "RelayClient", "RelayCore", "RelayProtocol", "Media", argumentParser, logging, prometheus,
        grpcCore, grpcProtobuf, grpcTransport, serviceLifecycle,
      ],
      path: "scripts/bench/transport-floor"),
    .testTarget(name: "RelayCoreTests", dependencies: ["RelayCore"]),
    .testTarget(name: "SettingsTests", dependencies: ["Settings"]),
    .testTarget(name: "MediaTests", dependencies: ["Media", "MediaDevices"]),
    .testTarget(
      name: "RelayServerTests", dependencies: ["RelayServer", "RelayCore", "RelayProtocol", "Media", swiftProtobuf] + nio),
    .testTarget(name: "AnnotationsTests", dependencies: ["Annotations", "RelayProtocol"]),
    .testTarget(name: "RelayClientTests", dependencies: ["RelayClient", "RelayCore"]),
  ]
)
