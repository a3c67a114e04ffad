import Foundation
import GRPCCore
import Logging
import RelayCore
import RelayProtocol
import ServiceLifecycle

/// The minimal "video over gRPC" protocol (`/video/Analyse`): each request is one raw frame with no
/// header, each reply the frame's sequence number in the call (1, 2, 3, …), sent once it is stored.
/// The frames' shape is configuration (`--simple-shape`, `--simple-pixel-format`); the device is the
/// call's `x-device-id` metadata, else `--simple-default-device`.
struct SimpleIngestService: video.SimpleServiceProtocol {
  static let deviceMetadataKey = "x-device-id"

  let registry: StreamRegistry
  let configuration: ServerConfiguration
  let logger: Logger

  func analyse(
    request: RPCAsyncSequence<MsgRequest, any Error>,
    response: RPCWriter<MsgReply>,
    context: ServerContext
  ) async throws {
    // The metadata-aware overload below is the one gRPC calls.
    throw RPCError(code: .internalError, message: "analyse without metadata")
  }

  func analyse(
    request: StreamingServerRequest<MsgRequest>,
    context: ServerContext
  ) async throws -> StreamingServerResponse<MsgReply> {
    let deviceID = request.metadata[stringValues: Self.deviceMetadataKey].first(where: { _ in true })
    let stream = try begin(deviceID: deviceID, context: context)
    return StreamingServerResponse { writer in
      do {
        try await cancelWhenGracefulShutdown {
          try await serve(request.messages, into: writer, stream: stream)
        }
      } catch is CancellationError where Task.isShuttingDownGracefully {
        throw RPCError(code: .unavailable, message: "relay-server is shutting down")
      }
      return [:]
    }
  }

  private func begin(deviceID raw: String?, context: ServerContext) throws(RPCError) -> DeviceStream {
    let id: DeviceID
    do {
      id = try DeviceID(validating: raw ?? configuration.simpleDefaultDevice)
    } catch {
      throw RPCError(code: .invalidArgument, message: "\(Self.deviceMetadataKey) metadata: \(error.description)")
    }
    guard Access.allows(device: id.rawValue) else { throw RPCError(IngestError.deviceNotAllowed(id.rawValue)) }
    let entry: StreamRegistry.Entry
    do { entry = try registry.entryCreatingIfNeeded(id) } catch { throw RPCError(IngestError(error)) }
    let shape = configuration.simpleShape
    var status = DeviceStream.Status()
    status.source = "\(context.remotePeer)"
    entry.stream.publisherConnected(
      codec: CodecDescription(
        name: CodecDescription.rawVideo, width: shape.width, height: shape.height,
        pixelFormat: shape.pixelFormat.rawValue, timeBase: Rational(1, 1000)),
      status: status)
    logger.info(
      "simple-protocol client connected",
      metadata: ["device": "\(id)", "peer": "\(context.remotePeer)", "shape": "\(shape)"])
    return entry.stream
  }

  private func serve(
    _ frames: RPCAsyncSequence<MsgRequest, any Error>, into writer: RPCWriter<MsgReply>, stream: DeviceStream
  ) async throws {
    let shape = configuration.simpleShape
    var sequence: UInt64 = 0
    var endError: String?
    defer { stream.publisherDisconnected(error: endError) }
    let metrics = IngestMetrics(protocol: "simple", device: stream.id)
    for try await frame in frames {
      let arrived = metrics.received()
      sequence += 1
      guard frame.img.count == shape.frameBytes else {
        let message = """
          frame \(sequence) has \(frame.img.count) bytes; this server expects \(shape.frameBytes) \
          (--simple-shape \(shape.height)x\(shape.width)\(shape.pixelFormat.channels == 3 ? "x3" : "") \
          --simple-pixel-format \(shape.pixelFormat.rawValue)); start relay-server with the shape your client sends
          """
        endError = message
        logger.warning("simple-protocol frame refused: \(message)", metadata: ["device": "\(stream.id)"])
        throw RPCError(code: .invalidArgument, message: message)
      }
      let now = WallClock.nowMs()
      stream.append(
        .init(sequence: sequence, data: frame.img, pts: now, dts: now, isKeyframe: true, timestampMs: now))
      try await writer.write(.with { $0.reply = Int32(truncatingIfNeeded: sequence) })
      metrics.acked(since: arrived)
    }
  }
}
