import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Media
import RelayClient
import RelayCore
import RelayProtocol
import ServiceLifecycle

/// A minimal publisher: N cameras as Publish streams on one connection, made by relay-client's own
/// transport (`SharedConnection`: HTTP/2 settings, keepalive), each sending the packets of one file at the
/// file's pace, read into memory once. No capture thread, no queue, no resend, no status, no watchdog:
/// one task per camera sleeps until its next frame is due and writes it; one more reads its acks. Not a
/// strict floor: `Task.sleep` (a dispatch timer, then a pool thread) costs more per frame than a capture
/// thread's usleep when few cameras share the machine (relay-client is 0.92x it at 10 cameras).
struct MinimalPublisher: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "publish", abstract: "Publish a file's packets as N cameras with nothing else: a minimal publisher.")

  @Option(help: "relay-server or relay-transport-floor, host:port")
  var server: String

  @Option(help: "cameras, each a Publish stream on the one connection (as a relay-client gateway)")
  var cameras = 1

  @Option(help: "an H.264 (or any) file FFmpeg demuxes; every camera sends its packets, looped, at its pace")
  var file: String

  @Option(help: "device ids are PREFIX-001, PREFIX-002, ...")
  var devicePrefix = "minimal"

  func validate() throws {
    guard cameras >= 1 else { throw ValidationError("--cameras must be at least 1") }
    guard HostPort(server) != nil else { throw ValidationError("--server \(server): expected host:port") }
  }

  func run() async throws {
    MemoryAllocator.configure()
    let clip = try ClipInMemory(path: file)
    let connection = try SharedConnection(server: HostPort(server)!, security: ClientSecurity())
    let publishing = MinimalCameras(client: connection.client, clip: clip, cameras: cameras, devicePrefix: devicePrefix)
    FileHandle.standardOutput.write(Data("relay-transport-floor publishing \(cameras) cameras to \(server)\n".utf8))
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: connection), .init(service: publishing, successTerminationBehavior: .gracefullyShutdownGroup)],
        gracefulShutdownSignals: [.sigterm, .sigint], logger: .init(label: "relay-transport-floor")))
    try await group.run()
  }
}

/// A file's packets in memory, with the time between them.
struct ClipInMemory: Sendable {
  let codec: CodecDescription
  let packets: [(data: Data, isKeyframe: Bool)]
  let frameInterval: Duration
  /// One frame interval in the codec's time base: pts go up by this, round after round.
  let ticksPerFrame: Int64

  init(path: String) throws {
    let input = try MediaInput(url: path)
    let stream = input.stream
    codec = CodecDescription(
      name: stream.codecName, width: stream.width, height: stream.height, pixelFormat: stream.pixelFormat,
      extradata: stream.extradata, timeBase: Rational(stream.timeBaseNumerator, stream.timeBaseDenominator),
      frameRate: stream.frameRate)
    var packets: [(data: Data, isKeyframe: Bool)] = []
    while let packet = try input.readVideoPacket() { packets.append((packet.data, packet.isKeyframe)) }
    guard !packets.isEmpty else { throw ValidationError("\(path): no video packets") }
    self.packets = packets
    let rate = stream.frameRate > 0 ? stream.frameRate : 30
    frameInterval = .nanoseconds(Int64(1e9 / rate))
    ticksPerFrame = max(1, Int64((codec.timeBase.isValid ? 1 / codec.timeBase.doubleValue : 90_000) / rate))
  }
}

struct MinimalCameras: Service {
  let client: GRPCClient<HTTP2ClientTransport.Posix>
  let clip: ClipInMemory
  let cameras: Int
  let devicePrefix: String

  func run() async throws {
    do {
      try await cancelWhenGracefulShutdown {
        try await withThrowingDiscardingTaskGroup { group in
          for index in 1...cameras {
            let device = "\(devicePrefix)-\(String(format: "%03d", index))"
            // Cameras are not in step: each starts at its own point of one frame interval.
            let offset = clip.frameInterval * Double.random(in: 0..<1)
            group.addTask { try await publish(device: device, startingAfter: offset) }
          }
        }
      }
    } catch let error as RPCError where error.code == .cancelled {  // stopped: the end of a run
    } catch is CancellationError {
    }
  }

  private func publish(device: String, startingAfter offset: Duration) async throws {
    var options = CallOptions.defaults
    options.maxRequestMessageBytes = 64 << 20
    try await Framerelay_V1_FrameRelay.Client(wrapping: client).publish(
      options: options,
      requestProducer: { writer in
        try await writer.write(.with {
          $0.hello = .with {
            $0.deviceID = device
            $0.sessionID = UUID().uuidString
            $0.codec = clip.codec.proto
            $0.sourceKind = .file
            $0.clientTimeMs = WallClock.nowMs()
          }
        })
        let clock = ContinuousClock()
        var due = clock.now + offset
        var sequence: UInt64 = 0
        while true {
          for packet in clip.packets {
            try await Task.sleep(until: due, clock: clock)
            sequence += 1
            try await writer.write(.with {
              $0.frame = .with {
                $0.sequence = sequence
                $0.data = packet.data
                $0.pts = Int64(sequence) * clip.ticksPerFrame
                $0.dts = $0.pts
                $0.keyframe = packet.isKeyframe
                $0.captureTimeMs = WallClock.nowMs()
              }
            })
            due += clip.frameInterval
          }
        }
      },
      onResponse: { response in
        for try await _ in response.messages {}
      })
  }
}
