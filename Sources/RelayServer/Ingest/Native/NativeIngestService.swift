import Foundation
import GRPCCore
import Logging
import RelayCore
import RelayProtocol
import ServiceLifecycle

/// `framerelay.v1.FrameRelay/Publish`: hello → accepted, then every frame stored and acked in order.
/// The session rules are NativeSession's; the frames go into the device's DeviceStream.
struct NativeIngestService: Framerelay_V1_FrameRelay.SimpleServiceProtocol {
  let registry: StreamRegistry
  let sessions: NativeSessions
  let configuration: ServerConfiguration
  let logger: Logger

  func publish(
    request: RPCAsyncSequence<Framerelay_V1_PublishRequest, any Error>,
    response: RPCWriter<Framerelay_V1_PublishResponse>,
    context: ServerContext
  ) async throws {
    do {
      // A shutdown ends the stream between frames; the client resumes on its next connection.
      try await cancelWhenGracefulShutdown {
        try await self.serve(request: request, response: response, context: context)
      }
    } catch is CancellationError where Task.isShuttingDownGracefully {
      throw RPCError(code: .unavailable, message: "relay-server is shutting down; reconnect to resume")
    }
  }

  private func serve(
    request: RPCAsyncSequence<Framerelay_V1_PublishRequest, any Error>,
    response: RPCWriter<Framerelay_V1_PublishResponse>,
    context: ServerContext
  ) async throws {
    var messages = request.makeAsyncIterator()
    guard let first = try await messages.next() else { return }
    guard case .hello(let hello) = first.message else {
      throw RPCError(code: .failedPrecondition, message: IngestError.frameBeforeHello.description)
    }
    let (slot, token, resumeAfter) = try begin(hello)
    let stream = slot.stream
    var log = logger
    log[metadataKey: "device"] = "\(stream.id)"
    log.info(
      "publisher connected",
      metadata: [
        "peer": "\(context.remotePeer)", "session": "\(hello.sessionID)", "resume_after": "\(resumeAfter)",
        "codec": "\(hello.codec.name) \(hello.codec.width)x\(hello.codec.height)",
      ])

    var accepted = Framerelay_V1_Accepted()
    accepted.resumeAfter = resumeAfter
    accepted.maxFrameBytes = UInt64(configuration.maxFrameBytes)
    accepted.window = UInt32(configuration.publishWindow)
    accepted.serverTimeMs = WallClock.nowMs()
    try await response.write(.with { $0.message = .accepted(accepted) })

    var endError: String? = nil
    defer { if slot.isCurrent(token) { stream.publisherDisconnected(error: endError) } }
    let metrics = IngestMetrics(protocol: "native", device: stream.id)
    do {
      while let message = try await messages.next() {
        switch message.message {
        case .frame(let frame):
          let arrived = metrics.received()
          guard frame.data.count <= configuration.maxFrameBytes else {
            throw IngestError.frameTooLarge(size: frame.data.count, limit: configuration.maxFrameBytes)
          }
          try slot.store(
            sequence: frame.sequence, data: frame.data, pts: frame.pts, dts: frame.dts, isKeyframe: frame.keyframe,
            captureTimeMs: frame.captureTimeMs, token: token)
          try await response.write(.with {
            $0.message = .ack(.with {
              $0.sequence = frame.sequence
              $0.serverTimeMs = WallClock.nowMs()
            })
          })
          metrics.acked(since: arrived)
        case .framesDropped(let dropped):
          try slot.declareDropped(
            first: dropped.first, last: dropped.last, storedElsewhere: dropped.storedElsewhere, token: token)
          if dropped.storedElsewhere {
            log.notice("frames \(dropped.first)...\(dropped.last) were stored by an earlier server of this session; resuming after them")
          } else {
            log.warning("client dropped frames \(dropped.first)...\(dropped.last) (its queue bound was reached)")
          }
        case .clockSync(let sync):
          slot.setClockOffset(sync.offsetMs, token: token)
          if slot.isCurrent(token) { stream.updateRoundTrip(ms: sync.roundTripMs) }
        case .captureStatus(let status):
          if slot.isCurrent(token) {
            stream.updateCapture(
              state: CaptureState(status.state), lastError: status.lastError, failingStreak: status.failingStreak)
          }
        case .hello:
          throw IngestError.helloTwice
        case .none:
          continue
        }
      }
      log.info("publisher finished")
    } catch let error as IngestError {
      endError = error.description
      log.warning("publisher refused: \(error)")
      throw RPCError(error)
    } catch {
      endError = "stream ended: \(error)"
      log.info("publisher stream ended", metadata: ["error": "\(error)"])
      throw error
    }
  }

  private func begin(_ hello: Framerelay_V1_Hello) throws(RPCError) -> (NativeSessionSlot, UInt64, UInt64) {
    do throws(IngestError) {
      let id: DeviceID
      do { id = try DeviceID(validating: hello.deviceID) } catch { throw .invalidDeviceID(error.description) }
      guard Access.allows(device: id.rawValue) else { throw .deviceNotAllowed(id.rawValue) }
      let codec: CodecDescription
      do { codec = try CodecDescription(validating: hello.codec) } catch { throw .invalidCodec(error.description) }
      let entry: StreamRegistry.Entry
      do { entry = try registry.entryCreatingIfNeeded(id) } catch { throw IngestError(error) }
      let slot = sessions.slot(for: entry.stream)
      let sessionID = hello.sessionID.isEmpty ? UUID().uuidString : hello.sessionID
      let (token, resumeAfter) = slot.begin(sessionID: sessionID)
      var status = DeviceStream.Status()
      status.pid = hello.client.pid
      status.host = hello.client.host
      status.source = hello.source
      entry.stream.publisherConnected(codec: codec, status: status)
      return (slot, token, resumeAfter)
    } catch {
      throw RPCError(error)
    }
  }
}

extension RPCError {
  init(_ error: IngestError) {
    let code: RPCError.Code
    switch error {
    case .frameBeforeHello, .helloTwice, .sequenceWentBackwards, .sequenceSkipped, .badDropRange:
      code = .failedPrecondition
    case .invalidDeviceID, .invalidCodec, .sequenceTooLarge: code = .invalidArgument
    case .frameTooLarge, .tooManyDevices: code = .resourceExhausted
    case .takenOver: code = .aborted
    case .deviceNotAllowed: code = .permissionDenied
    }
    self.init(code: code, message: error.description)
  }
}

extension IngestError {
  init(_ refusal: StreamRegistry.Refusal) {
    switch refusal {
    case .tooManyDevices(let limit): self = .tooManyDevices(limit: limit)
    }
  }
}
