import ArgumentParser
import Foundation
import GRPCCore
import GRPCProtobuf
import Logging
import Prometheus
import RelayCore
import RelayProtocol
import RelayServer

/// The floor the benchmarks measure relay-server against: Publish and Annotate served through the very
/// transport, HTTP/2 settings, malloc settings and handler threads relay-server uses, with nothing behind
/// them. Each frame is decoded and acked, then dropped (no ring, no metrics); each annotation answered
/// at once (no SQLite, no fsync). What relay-server costs above this is FrameRelay's own; what this costs
/// is grpc-swift-2, NIO, SwiftProtobuf and the kernel's, which no FrameRelay change can go below.
@main
struct TransportFloor: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "relay-transport-floor",
    abstract: "For the benchmarks only: the transport serving with nothing behind it (the floor), or a minimal publisher. Not for use.",
    subcommands: [ServeFloor.self, MinimalPublisher.self], defaultSubcommand: ServeFloor.self)
}

/// Serving: Publish and Annotate answered with nothing behind them (the default subcommand).
struct ServeFloor: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve", abstract: "Publish and Annotate with nothing behind them: the serving side's floor.")

  @Option(help: "host:port to listen on; port 0 picks a free one")
  var listen = "127.0.0.1:0"

  @Option(help: "frames a publisher may have unacknowledged (as relay-server's --window)")
  var window = ServerConfiguration().publishWindow

  @Option(help: "HTTP/2 streams open at once on one connection (as relay-server's)")
  var maxStreamsPerConnection = ServerConfiguration().maxStreamsPerConnection

  func run() async throws {
    guard let address = HostPort(listen) else {
      throw ValidationError("--listen \(listen): expected host:port, e.g. 127.0.0.1:0")
    }
    MemoryAllocator.configure()
    var configuration = ServerConfiguration()
    configuration.listen = [address]
    configuration.publishWindow = window
    configuration.maxStreamsPerConnection = maxStreamsPerConnection
    let logger = Logger(label: "relay-transport-floor")
    let server = RelayServer(configuration: configuration, prometheus: PrometheusCollectorRegistry(), logger: logger)
    try await server.serveAlone([FloorServices(configuration: configuration)]) { bound in
      FileHandle.standardOutput.write(Data("relay-transport-floor listening on \(bound)\n".utf8))
    }
  }
}

struct FloorServices: RegistrableRPCService {
  let configuration: ServerConfiguration

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Framerelay_V1_FrameRelay.Method.Publish.descriptor,
      deserializer: ProtobufDeserializer<Framerelay_V1_PublishRequest>(),
      serializer: ProtobufSerializer<Framerelay_V1_PublishResponse>()
    ) { request, _ in
      StreamingServerResponse { response in
        try await publish(request.messages, response)
        return [:]
      }
    }
    router.registerHandler(
      forMethod: Chrys_Cloud_Videostreaming_V1beta1_Image.Method.Annotate.descriptor,
      deserializer: ProtobufDeserializer<Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest>(),
      serializer: ProtobufSerializer<Chrys_Cloud_Videostreaming_V1beta1_AnnotateResponse>()
    ) { _, _ in
      StreamingServerResponse(single: ServerResponse(message: Chrys_Cloud_Videostreaming_V1beta1_AnnotateResponse()))
    }
  }

  /// hello → accepted, then each frame → its ack, as relay-server answers a new session.
  private func publish(
    _ requests: RPCAsyncSequence<Framerelay_V1_PublishRequest, any Error>,
    _ response: RPCWriter<Framerelay_V1_PublishResponse>
  ) async throws {
    var messages = requests.makeAsyncIterator()
    guard case .hello = try await messages.next()?.message else {
      throw RPCError(code: .failedPrecondition, message: "the first Publish message must be a hello")
    }
    try await response.write(.with {
      $0.accepted = .with {
        $0.maxFrameBytes = UInt64(configuration.maxFrameBytes)
        $0.window = UInt32(configuration.publishWindow)
        $0.serverTimeMs = WallClock.nowMs()
      }
    })
    while let message = try await messages.next() {
      guard case .frame(let frame) = message.message else { continue }
      try await response.write(.with {
        $0.ack = .with {
          $0.sequence = frame.sequence
          $0.serverTimeMs = WallClock.nowMs()
        }
      })
    }
  }
}
