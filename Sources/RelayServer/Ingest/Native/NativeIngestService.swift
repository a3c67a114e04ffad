import Foundation
import GRPCCore
import Logging
import RelayCore
import RelayProtocol

/// `framerelay.v1.FrameRelay/Publish`: hello → accepted, then every frame stored and acked in order.
struct IngestService: Framerelay_V1_FrameRelay.SimpleServiceProtocol {
  let registry: DeviceRegistry
  let configuration: ServerConfiguration
  let logger: Logger

  func publish(
    request: RPCAsyncSequence<Framerelay_V1_PublishRequest, any Error>,
    response: RPCWriter<Framerelay_V1_PublishResponse>,
    context: ServerContext
  ) async throws {
    var messages = request.makeAsyncIterator()
    guard let first = try await messages.next() else { return }
    guard case .hello(let hello) = first.message else {
      throw RPCError(code: .failedPrecondition, message: IngestError.frameBeforeHello.description)
    }
    let (entry, token, resumeAfter) = try begin(hello)
    let device = entry.device
    var log = logger
    log[metadataKey: "device"] = "\(device.id)"
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
    defer { device.endSession(token: token, error: endError) }
    do {
      while let message = try await messages.next() {
        switch message.message {
        case .frame(let frame):
          try store(frame, in: device, token: token)
          try await response.write(.with { $0.message = .ack(.with { $0.sequence = frame.sequence }) })
        case .framesDropped(let dropped):
          try device.declareDropped(first: dropped.first, last: dropped.last, token: token)
          log.warning("client dropped frames \(dropped.first)...\(dropped.last) (its queue bound was reached)")
        case .clockSync(let sync):
          device.setClockOffset(sync.offsetMs, token: token)
        case .captureStatus(let status):
          device.updateCapture(
            state: CaptureState(status.state), lastError: status.lastError, failingStreak: status.failingStreak,
            token: token)
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

  private func begin(_ hello: Framerelay_V1_Hello) throws(RPCError) -> (DeviceRegistry.Entry, UInt64, UInt64) {
    do throws(IngestError) {
      let id: DeviceID
      do { id = try DeviceID(validating: hello.deviceID) } catch { throw .invalidDeviceID(error.description) }
      let codec = try CodecDescription(validating: hello.codec)
      let entry = try registry.entryCreatingIfNeeded(id)
      var status = Device.Status()
      status.pid = hello.client.pid
      status.host = hello.client.host
      status.source = hello.source
      let sessionID = hello.sessionID.isEmpty ? UUID().uuidString : hello.sessionID
      let (token, resumeAfter) = entry.device.beginSession(id: sessionID, codec: codec, status: status)
      return (entry, token, resumeAfter)
    } catch {
      throw RPCError(error)
    }
  }

  private func store(_ frame: Framerelay_V1_Frame, in device: Device, token: UInt64) throws(IngestError) {
    guard frame.data.count <= configuration.maxFrameBytes else {
      throw .frameTooLarge(size: frame.data.count, limit: configuration.maxFrameBytes)
    }
    try device.store(
      sequence: frame.sequence, data: frame.data, pts: frame.pts, dts: frame.dts, isKeyframe: frame.keyframe,
      captureTimeMs: frame.captureTimeMs, token: token)
  }
}

extension RPCError {
  init(_ error: IngestError) {
    let code: RPCError.Code
    switch error {
    case .frameBeforeHello, .helloTwice, .sequenceWentBackwards, .sequenceSkipped, .badDropRange:
      code = .failedPrecondition
    case .invalidDeviceID, .invalidCodec: code = .invalidArgument
    case .frameTooLarge, .tooManyDevices: code = .resourceExhausted
    case .takenOver: code = .aborted
    }
    self.init(code: code, message: error.description)
  }
}

extension CaptureState {
  init(_ state: Framerelay_V1_CaptureStatus.State) {
    switch state {
    case .reconnecting: self = .reconnecting
    case .failed: self = .failed
    case .stopped: self = .stopped
    default: self = .running
    }
  }
}

extension CodecDescription {
  init(validating codec: Framerelay_V1_CodecDescription) throws(IngestError) {
    guard !codec.name.isEmpty else { throw .invalidCodec("codec.name is empty (e.g. h264, hevc, mjpeg, rawvideo)") }
    guard codec.width > 0, codec.height > 0, codec.width <= 16384, codec.height <= 16384 else {
      throw .invalidCodec("codec size \(codec.width)x\(codec.height) is not a picture size")
    }
    guard codec.timeBaseNum > 0, codec.timeBaseDen > 0 else {
      throw .invalidCodec("codec time base \(codec.timeBaseNum)/\(codec.timeBaseDen) must be positive")
    }
    self.init(
      name: codec.name, width: Int(codec.width), height: Int(codec.height), pixelFormat: codec.pixFmt,
      extradata: codec.extradata, timeBase: Rational(codec.timeBaseNum, codec.timeBaseDen),
      frameRate: codec.frameRate.isFinite ? codec.frameRate : 0)
  }
}
