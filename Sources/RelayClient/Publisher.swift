import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import RelayProtocol
import Synchronization

/// Streams one source to relay-server over `FrameRelay/Publish`: hello, then frames numbered 1, 2, 3, …
/// each kept until its ack. A broken stream is reopened with back-off and the same session id, and the
/// server's resume point says what to resend.
public final class Publisher: Sendable {
  private struct State {
    var inFlight = InFlightFrames()
    var nextSequence: UInt64 = 1
    var stats = PublishStats()
    var codec: CodecDescription?
    var lastStatus: Framerelay_V1_CaptureStatus?
    /// Set for the stream that is open now.
    var accepted: Framerelay_V1_Accepted?
    var responseEnded = false
    var newCodec: CodecDescription?
    var captureEnded = false
    var captureError: String?
    var stopping = false
    var drainDeadlinePassed = false
    var waiter: CheckedContinuation<Void, any Error>?
  }

  private struct StreamEnded: Error {}

  let configuration: PublisherConfiguration
  private let logger: Logger
  private let capture: Capture
  private let sessionID = UUID().uuidString
  private let state = Mutex(State())
  private let startedNs = WallClock.monotonicNs()

  public init(configuration: PublisherConfiguration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
    self.capture = Capture(
      spec: configuration.source, maxFrames: configuration.maxFrames, backoff: configuration.cameraBackoff,
      logger: logger)
  }

  /// Stops capturing and finishes once in-flight frames are acked or the stop timeout passes.
  public func stop() {
    let first = state.withLock { state -> Bool in
      defer { state.stopping = true }
      return !state.stopping
    }
    guard first else { return }
    logger.info("stopping: waiting up to \(configuration.stopDrainTimeout) for in-flight frames")
    capture.stop()
    armDrainDeadline(configuration.stopDrainTimeout)
  }

  public func run() async throws -> PublishSummary {
    capture.start()
    guard let codec = try await firstCodec() else {
      let error = state.withLock { $0.captureError } ?? "the source ended before its first frame"
      throw PublishError.source(error)
    }
    state.withLock { $0.codec = codec }
    logger.info(
      "capturing", metadata: ["source": "\(configuration.source.kindAndLabel.label)", "codec": "\(codec.name) \(codec.width)x\(codec.height)"])

    let transport = try HTTP2ClientTransport.Posix(
      target: .dns(host: configuration.server.host, port: configuration.server.port),
      transportSecurity: .plaintext, config: transportConfig)
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await StatusReporter(publisher: self).run() }
      try await withGRPCClient(transport: transport) { client in
        try await publishUntilDone(Framerelay_V1_FrameRelay.Client(wrapping: client))
      }
      group.cancelAll()
    }
    if let error = state.withLock({ $0.captureError }) { logger.error("source failed: \(error)") }
    return summary
  }

  // MARK: Streams

  private func publishUntilDone(_ relay: Framerelay_V1_FrameRelay.Client<HTTP2ClientTransport.Posix>) async throws {
    var failures = 0
    while true {
      do {
        try await publishOnce(relay)
        failures = 0
        let next = state.withLock { state -> CodecDescription? in
          defer { state.newCodec = nil }
          if let codec = state.newCodec { state.codec = codec }
          return state.newCodec
        }
        if next == nil { return }
        logger.info("codec changed: starting a new stream with a new hello")
      } catch {
        if let fatal = PublishError(fatal: error) { throw fatal }
        if isDone { return }
        let delay = configuration.reconnectBackoff.delay(attempt: failures)
        failures += 1
        logger.error(
          "cannot reach relay-server at \(configuration.server): \(Self.reason(error)); retrying in \(String(format: "%.1f", delay))s")
        try await sleep(seconds: delay)
        state.withLock { $0.stats.reconnects += 1 }
      }
    }
  }

  private func publishOnce(_ relay: Framerelay_V1_FrameRelay.Client<HTTP2ClientTransport.Posix>) async throws {
    state.withLock { state in
      state.accepted = nil
      state.responseEnded = false
    }
    var options = CallOptions.defaults
    options.waitForReady = false  // fail fast and say so, rather than hang on an unreachable server
    options.maxRequestMessageBytes = configuration.maxMessageBytes
    options.maxResponseMessageBytes = 1 << 20
    try await relay.publish(
      options: options,
      requestProducer: { writer in try await self.produce(into: writer) },
      onResponse: { response in try await self.consume(response) })
  }

  /// The request side: hello, clock sync, resend, then frames as the window allows.
  private func produce(into writer: RPCWriter<Framerelay_V1_PublishRequest>) async throws {
    let (codec, lastStatus) = state.withLock { ($0.codec!, $0.lastStatus) }
    let helloSentMs = WallClock.nowMs()
    try await writer.write(.with { $0.message = .hello(hello(codec, sentAtMs: helloSentMs)) })
    try await waitUntil { $0.accepted != nil }
    let accepted = state.withLock { $0.accepted! }
    let offset = ClockOffset(sentAtMs: helloSentMs, serverTimeMs: accepted.serverTimeMs, receivedAtMs: WallClock.nowMs())
    try await writer.write(
      .with { $0.message = .clockSync(.with { $0.offsetMs = offset.offsetMs; $0.roundTripMs = offset.roundTripMs }) })
    if let lastStatus { try await writer.write(.with { $0.message = .captureStatus(lastStatus) }) }

    let window = max(1, min(configuration.window, Int(accepted.window == 0 ? UInt32(configuration.window) : accepted.window)))
    let resend = state.withLock { state in
      _ = state.inFlight.acknowledge(upTo: accepted.resumeAfter)
      return state.inFlight.resend(after: accepted.resumeAfter, now: WallClock.monotonicNs())
    }
    if !resend.isEmpty { logger.info("resending \(resend.count) unacknowledged frames after \(accepted.resumeAfter)") }
    for entry in resend { try await writer.write(Self.frameMessage(entry)) }

    let maxBytes = configuration.maxInFlightBytes
    events: while !state.withLock({ $0.captureEnded }) {
      try await waitUntil { $0.inFlight.count < window && ($0.inFlight.byteCount < maxBytes || $0.inFlight.isEmpty) }
      guard let event = try await capture.events.next() else { break }
      switch event {
      case .packet(let packet):
        let entry = state.withLock { state in
          let entry = InFlightFrames.Entry(sequence: state.nextSequence, packet: packet, sentAtNs: WallClock.monotonicNs())
          state.nextSequence += 1
          state.inFlight.append(entry)
          state.stats.framesSent += 1
          state.stats.bytesSent += packet.data.count
          return entry
        }
        try await writer.write(Self.frameMessage(entry))
      case .status(let capture, let error, let streak):
        let status = Framerelay_V1_CaptureStatus.with {
          $0.state = .init(capture)
          $0.lastError = error
          $0.failingStreak = streak
        }
        state.withLock { $0.lastStatus = status }
        try await writer.write(.with { $0.message = .captureStatus(status) })
      case .opened(let newCodec):
        if newCodec != codec {
          state.withLock { $0.newCodec = newCodec }
          break events
        }
      case .ended(let error):
        state.withLock { state in
          state.captureEnded = true
          state.captureError = error
        }
        armDrainDeadline(configuration.endDrainTimeout)
      }
    }
    // Half-close only once the server has everything (or we gave up waiting).
    try await waitUntil { $0.inFlight.isEmpty || $0.drainDeadlinePassed }
    if state.withLock({ $0.captureEnded }) {
      let status = Framerelay_V1_CaptureStatus.with { $0.state = .stopped }
      try await writer.write(.with { $0.message = .captureStatus(status) })
    }
  }

  /// The response side: accepted, then acks.
  private func consume(_ response: StreamingClientResponse<Framerelay_V1_PublishResponse>) async throws {
    defer {
      state.withLock { $0.responseEnded = true }
      wake()
    }
    for try await message in response.messages {
      switch message.message {
      case .accepted(let accepted):
        state.withLock { $0.accepted = accepted }
      case .ack(let ack):
        let now = WallClock.monotonicNs()
        state.withLock { state in
          let before = state.inFlight.byteCount
          let sent = state.inFlight.acknowledge(upTo: ack.sequence)
          state.stats.framesAcked += sent.count
          state.stats.bytesAcked += before - state.inFlight.byteCount
          for sentAt in sent { state.stats.roundTrips.record(Double(now &- sentAt) / 1e6) }
        }
      case .none:
        continue
      }
      wake()
    }
  }

  // MARK: Waiting

  /// Waits until `condition` holds; throws if the stream's response side ended first.
  private func waitUntil(_ condition: @escaping @Sendable (State) -> Bool) async throws {
    while true {
      let ready = try state.withLock { state throws -> Bool in
        if condition(state) { return true }
        if state.responseEnded { throw StreamEnded() }
        return false
      }
      if ready { return }
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
          let now = state.withLock { state -> Bool in
            if condition(state) || state.responseEnded || Task.isCancelled { return true }
            state.waiter = continuation
            return false
          }
          if now { continuation.resume() }
        }
      } onCancel: {
        let waiter = state.withLock { state in
          defer { state.waiter = nil }
          return state.waiter
        }
        waiter?.resume(throwing: CancellationError())
      }
      try Task.checkCancellation()
    }
  }

  private func wake() {
    let waiter = state.withLock { state in
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  private func armDrainDeadline(_ timeout: Duration) {
    Task {
      try? await Task.sleep(for: timeout)
      state.withLock { $0.drainDeadlinePassed = true }
      wake()
    }
  }

  /// Capture is over (or we were told to stop) and the server has everything, or we stopped waiting.
  /// Stopping counts even while disconnected, when nobody reads the capture's end event.
  private var isDone: Bool {
    state.withLock { ($0.captureEnded || $0.stopping) && ($0.inFlight.isEmpty || $0.drainDeadlinePassed) }
  }

  private func sleep(seconds: Double) async throws {
    let deadline = WallClock.monotonicNs() + UInt64(seconds * 1e9)
    while WallClock.monotonicNs() < deadline && !isDone {
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  private func firstCodec() async throws -> CodecDescription? {
    while let event = try await capture.events.next() {
      switch event {
      case .opened(let codec):
        return codec
      case .status(_, let error, _):
        logger.warning("camera not ready: \(error)")
      case .ended(let error):
        state.withLock { $0.captureError = error }
        return nil
      case .packet:
        continue
      }
    }
    return nil
  }

  // MARK: Messages and figures

  private func hello(_ codec: CodecDescription, sentAtMs: Int64) -> Framerelay_V1_Hello {
    .with {
      $0.deviceID = configuration.device.rawValue
      $0.sessionID = sessionID
      $0.codec = .with {
        $0.name = codec.name
        $0.width = Int32(codec.width)
        $0.height = Int32(codec.height)
        $0.pixFmt = codec.pixelFormat
        $0.extradata = codec.extradata
        $0.timeBaseNum = codec.timeBase.numerator
        $0.timeBaseDen = codec.timeBase.denominator
        $0.frameRate = codec.frameRate
      }
      let (kind, label) = configuration.source.kindAndLabel
      $0.sourceKind = .init(kind)
      $0.source = label
      $0.client = .with {
        $0.host = ProcessInfo.processInfo.hostName
        $0.pid = getpid()
        $0.version = configuration.clientVersion
      }
      $0.clientTimeMs = sentAtMs
    }
  }

  private static func frameMessage(_ entry: InFlightFrames.Entry) -> Framerelay_V1_PublishRequest {
    .with {
      $0.message = .frame(
        .with {
          $0.sequence = entry.sequence
          $0.data = entry.packet.data
          $0.pts = entry.packet.pts
          $0.dts = entry.packet.dts
          $0.keyframe = entry.packet.isKeyframe
          $0.captureTimeMs = entry.packet.captureTimeMs
        })
    }
  }

  private static func reason(_ error: any Error) -> String {
    guard let rpc = error as? RPCError else { return "\(error)" }
    if let cause = rpc.cause { return "\(rpc.message) (\(cause))" }
    return rpc.message
  }

  var snapshot: (stats: PublishStats, inFlight: Int, elapsedSeconds: Double) {
    state.withLock { ($0.stats, $0.inFlight.count, Double(WallClock.monotonicNs() - startedNs) / 1e9) }
  }

  public var summary: PublishSummary {
    let (stats, _, seconds) = snapshot
    return PublishSummary(
      device: configuration.device.rawValue, framesSent: stats.framesSent, framesAcked: stats.framesAcked,
      bytesSent: stats.bytesSent, seconds: seconds, fps: seconds > 0 ? Double(stats.framesAcked) / seconds : 0,
      ackRttP50Ms: stats.roundTrips.percentile(50) ?? 0, ackRttP99Ms: stats.roundTrips.percentile(99) ?? 0,
      reconnects: stats.reconnects)
  }

  private var transportConfig: HTTP2ClientTransport.Posix.Config {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.http2.targetWindowSize = 16 << 20
    config.http2.maxFrameSize = 1 << 20
    config.backoff = .init(initial: .milliseconds(250), max: .seconds(5), multiplier: 2, jitter: 0.2)
    config.connection.keepalive = .init(time: .seconds(10), timeout: .seconds(5), allowWithoutCalls: true)
    return config
  }
}

/// Why a publish run ended with a failure.
public enum PublishError: Error, CustomStringConvertible {
  case source(String)
  case refused(RPCError)

  /// Errors no retry can fix: the server refuses what we send.
  init?(fatal error: any Error) {
    guard let rpc = error as? RPCError else { return nil }
    switch rpc.code {
    case .invalidArgument, .resourceExhausted, .permissionDenied, .unauthenticated, .unimplemented:
      self = .refused(rpc)
    default:
      return nil
    }
  }

  public var description: String {
    switch self {
    case .source(let message): return "cannot capture: \(message)"
    case .refused(let error): return "relay-server refused the stream (\(error.code)): \(error.message)"
    }
  }
}

extension Framerelay_V1_CaptureStatus.State {
  init(_ state: CaptureState) {
    switch state {
    case .running: self = .running
    case .reconnecting: self = .reconnecting
    case .failed: self = .failed
    case .stopped: self = .stopped
    }
  }
}

extension Framerelay_V1_SourceKind {
  init(_ kind: SourceKindLabel) {
    switch kind {
    case .rtsp: self = .rtsp
    case .file: self = .file
    case .testPattern: self = .testPattern
    case .synthetic: self = .synthetic
    }
  }
}
