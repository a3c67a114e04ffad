import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RelayCore
import RelayProtocol
import Synchronization

/// Streams one source to relay-server over `FrameRelay/Publish`: hello, then frames numbered 1, 2, 3, …
/// each kept in the outbox until its ack. Capture never waits for the network: while the server is away
/// frames collect in the outbox (bounded), and each new stream resumes where the server says it is.
public final class Publisher: Sendable {
  private struct State {
    var outbox: Outbox
    var nextSequence: UInt64 = 1
    var stats = PublishStats()
    /// Codecs by generation; a new generation starts when the camera reopens with another format.
    var codecs: [Int: CodecDescription] = [:]
    var codecGeneration = 0
    var lastStatus: Framerelay_V1_CaptureStatus?
    var statusVersion = 0
    var captureEnded = false
    var captureError: String?
    var stopping = false
    var drainDeadlinePassed = false
    // The stream attempt that is current; callbacks of abandoned attempts check it.
    var attempt: UInt64 = 0
    var failures = 0
    var failedAtNs: UInt64?
    var accepted: Framerelay_V1_Accepted?
    var responseEnded = false
    var lastProgressNs: UInt64 = 0
    var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var nextWaiter: UInt64 = 0
  }

  private struct StreamEnded: Error {}
  private struct StreamStalled: Error, CustomStringConvertible {
    let description: String
  }

  let configuration: PublisherConfiguration
  private let logger: Logger
  private let capture: Capture
  private let sessionID = UUID().uuidString
  private let state: Mutex<State>
  private let startedNs = WallClock.monotonicNs()

  public init(configuration: PublisherConfiguration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
    self.capture = Capture(
      spec: configuration.source, maxFrames: configuration.maxFrames, backoff: configuration.cameraBackoff,
      logger: logger)
    self.state = Mutex(
      State(outbox: Outbox(limits: .init(maxBytes: configuration.queueMaxBytes, maxSeconds: configuration.queueMaxSeconds))))
  }

  /// Stops capturing and finishes once the frames captured so far are acked or the stop timeout passes.
  public func stop() {
    let first = state.withLock { state -> Bool in
      defer { state.stopping = true }
      return !state.stopping
    }
    guard first else { return }
    logger.info("stopping: waiting up to \(configuration.stopDrainTimeout) for unacknowledged frames")
    capture.stop()
    armDrainDeadline(configuration.stopDrainTimeout)
    wake()
  }

  public func run() async throws -> PublishSummary {
    capture.start()
    guard let codec = try await firstCodec() else {
      let error = state.withLock { $0.captureError } ?? "the source ended before its first frame"
      throw PublishError.source(error)
    }
    logger.info(
      "capturing",
      metadata: ["source": "\(configuration.source.kindAndLabel.label)", "codec": "\(codec.name) \(codec.width)x\(codec.height)"])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await StatusReporter(publisher: self).run() }
      group.addTask {
        do { try await self.pumpCapture() } catch is CancellationError {}  // the run is over
      }
      try await publishUntilDone()
      group.cancelAll()
    }
    if let error = state.withLock({ $0.captureError }) { logger.error("source failed: \(error)") }
    return summary
  }

  // MARK: Capture → outbox

  private func firstCodec() async throws -> CodecDescription? {
    while let event = try await capture.events.next() {
      switch event {
      case .opened(let codec):
        state.withLock { $0.codecs[0] = codec }
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

  /// Moves everything the capture thread produces into the outbox, whether or not a stream is open.
  private func pumpCapture() async throws {
    while case let events = try await capture.events.nextBatch(), !events.isEmpty {
      for event in events {
        if try await take(event) == .ended { return }
      }
      wake()
    }
  }

  private enum Taken { case more, ended }

  private func take(_ event: Capture.Event) async throws -> Taken {
    switch event {
    case .packet(let packet):
      if !configuration.source.isLive {
        // A file or synthetic source can wait: hold the reader back rather than drop frames
        // (after letting the producer see what this batch already added).
        wake()
        try await waitUntil(whileStreaming: false) { $0.outbox.hasRoom(for: packet.data.count) || $0.stopping }
      }
      let dropped = state.withLock { state -> Int in
        let entry = Outbox.Entry(sequence: state.nextSequence, packet: packet, codecGeneration: state.codecGeneration)
        state.nextSequence += 1
        state.stats.framesCaptured += 1
        let dropped = state.outbox.append(entry)
        state.stats.framesDropped = state.outbox.droppedFrames
        return dropped
      }
      if dropped > 0 {
        logger.warning(
          "queue bound reached (\(configuration.queueMaxBytes) bytes / \(configuration.queueMaxSeconds) s): dropped \(dropped) frames, oldest GOP first")
      }
    case .opened(let codec):
      state.withLock { state in
        if state.codecs[state.codecGeneration] != codec {
          state.codecGeneration += 1
          state.codecs[state.codecGeneration] = codec
        }
      }
    case .status(let capture, let error, let streak):
      state.withLock { state in
        state.lastStatus = .with {
          $0.state = .init(capture)
          $0.lastError = error
          $0.failingStreak = streak
        }
        state.statusVersion += 1
      }
    case .ended(let error):
      state.withLock { state in
        state.captureEnded = true
        state.captureError = error
        state.lastStatus = .with { $0.state = error == nil ? .stopped : .failed; $0.lastError = error ?? "" }
        state.statusVersion += 1
      }
      armDrainDeadline(configuration.endDrainTimeout)
      wake()
      return .ended
    }
    return .more
  }

  // MARK: Streams

  private func publishUntilDone() async throws {
    while !isDone {
      let attempt = state.withLock { state -> UInt64 in
        state.attempt += 1
        state.accepted = nil
        state.responseEnded = false
        state.lastProgressNs = WallClock.monotonicNs()
        return state.attempt
      }
      do {
        try await runAttempt(attempt)
      } catch {
        if let fatal = PublishError(fatal: error) { throw fatal }
        if isDone { return }
        let delay = state.withLock { state -> Double in
          if state.failedAtNs == nil { state.failedAtNs = WallClock.monotonicNs() }
          state.failures += 1
          return configuration.reconnectBackoff.delay(attempt: state.failures - 1)
        }
        logger.error(
          "cannot reach relay-server at \(configuration.server): \(Self.reason(error)); retrying in \(String(format: "%.1f", delay))s")
        try await sleep(seconds: delay)
      }
    }
  }

  /// One connection and one stream, watched. When the watchdog gives up, the attempt is cancelled and
  /// left to finish on its own: a connect hanging under a silent partition must not hold us up.
  private func runAttempt(_ attempt: UInt64) async throws {
    let stream = Task {
      try await withGRPCClient(transport: try self.makeTransport()) { client in
        try await self.publishOnce(Framerelay_V1_FrameRelay.Client(wrapping: client), attempt: attempt)
      }
    }
    let watchdog = Task { try await self.watchStream() }
    defer { watchdog.cancel() }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let outcome = FirstOutcome(continuation)
        Task {
          do {
            try await stream.value
            outcome.resume(with: .success(()))
          } catch {
            outcome.resume(with: .failure(error))
          }
        }
        Task {
          do {
            try await watchdog.value
          } catch is CancellationError {
          } catch {
            stream.cancel()
            outcome.resume(with: .failure(error))
          }
        }
      }
    } onCancel: {
      stream.cancel()
    }
  }

  /// One stream: hello, accepted, then frames until the capture ends, the codec changes, or it breaks.
  private func publishOnce(
    _ relay: Framerelay_V1_FrameRelay.Client<HTTP2ClientTransport.Posix>, attempt: UInt64
  ) async throws {
    var options = CallOptions.defaults
    options.waitForReady = false  // fail fast and say so, rather than hang on an unreachable server
    options.maxRequestMessageBytes = configuration.maxMessageBytes
    options.maxResponseMessageBytes = 1 << 20
    try await relay.publish(
      options: options,
      requestProducer: { writer in try await self.produce(into: writer) },
      onResponse: { response in try await self.consume(response, attempt: attempt) })
  }

  /// Fails the stream when no `accepted` comes in time, or when frames are in flight and no ack comes.
  private func watchStream() async throws {
    while true {
      try await Task.sleep(for: .milliseconds(200))
      let (accepted, inFlight, idleNs) = state.withLock {
        ($0.accepted != nil, $0.outbox.inFlightCount, WallClock.monotonicNs() - $0.lastProgressNs)
      }
      let idle = Duration.nanoseconds(Int64(idleNs))
      if !accepted && idle > configuration.helloTimeout {
        throw StreamStalled(description: "no answer to the hello within \(configuration.helloTimeout)")
      }
      if accepted && inFlight > 0 && idle > configuration.ackTimeout {
        throw StreamStalled(description: "no ack for \(configuration.ackTimeout) with \(inFlight) frames in flight")
      }
    }
  }

  /// The request side: hello, clock sync, then frames from the outbox as the window allows.
  private func produce(into writer: RPCWriter<Framerelay_V1_PublishRequest>) async throws {
    // The hello describes the oldest frame still to send, so frames resent after a reconnect keep
    // the codec they were captured with.
    let (generation, codec) = state.withLock { state in
      let generation = state.outbox.oldest?.codecGeneration ?? state.codecGeneration
      return (generation, state.codecs[generation]!)
    }
    let helloSentMs = WallClock.nowMs()
    try await writer.write(.with { $0.message = .hello(hello(codec, sentAtMs: helloSentMs)) })
    try await waitUntil { $0.accepted != nil }
    let accepted = state.withLock { $0.accepted! }
    let offset = ClockOffset(sentAtMs: helloSentMs, serverTimeMs: accepted.serverTimeMs, receivedAtMs: WallClock.nowMs())
    try await writer.write(
      .with { $0.message = .clockSync(.with { $0.offsetMs = offset.offsetMs; $0.roundTripMs = offset.roundTripMs }) })

    let (resending, reconnectMs) = state.withLock { state -> (Int, Int?) in
      // Frames the server stored although their acks never reached us count as acked.
      let before = state.outbox.byteCount
      state.stats.framesAcked += state.outbox.restart(after: accepted.resumeAfter)
      state.stats.bytesAcked += before - state.outbox.byteCount
      state.stats.framesDropped = state.outbox.droppedFrames
      state.failures = 0
      defer { state.failedAtNs = nil }
      guard let failedAt = state.failedAtNs else { return (state.outbox.count, nil) }
      let ms = Int((WallClock.monotonicNs() - failedAt) / 1_000_000)
      state.stats.reconnects += 1
      state.stats.reconnectMs.append(ms)
      return (state.outbox.count, ms)
    }
    if let reconnectMs {
      logger.notice("reconnected to relay-server at \(configuration.server) after \(reconnectMs) ms; resending \(resending) frames")
    }

    let window = max(1, min(configuration.window, accepted.window == 0 ? configuration.window : Int(accepted.window)))
    let maxBytes = configuration.maxInFlightBytes
    var lastSent = accepted.resumeAfter
    var statusSent = -1
    while true {
      let sentVersion = statusSent
      try await waitUntil { state in
        let canSend = state.outbox.nextUnsent != nil && state.outbox.inFlightCount < window
          && (state.outbox.inFlightBytes < maxBytes || state.outbox.inFlightCount == 0)
        return canSend || state.statusVersion != sentVersion || Self.isFinished(state)
      }
      let (status, version) = state.withLock { ($0.lastStatus, $0.statusVersion) }
      if version != statusSent, let status {
        try await writer.write(.with { $0.message = .captureStatus(status) })
      }
      statusSent = version
      if state.withLock({ Self.isFinished($0) }) { return }
      let next = state.withLock { state -> Outbox.Entry? in
        guard let entry = state.outbox.nextUnsent, entry.codecGeneration == generation else { return nil }
        guard state.outbox.inFlightCount < window else { return nil }
        return state.outbox.takeNextUnsent(now: WallClock.monotonicNs())
      }
      guard let entry = next else {
        if state.withLock({ $0.outbox.nextUnsent.map { $0.codecGeneration != generation } ?? false }) {
          // The camera changed format: let this stream's frames be acked, then start a new stream.
          try await waitUntil { $0.outbox.inFlightCount == 0 }
          logger.info("the source's format changed: starting a new stream with a new hello")
          return
        }
        continue
      }
      if entry.sequence > lastSent + 1 {
        try await writer.write(
          .with { $0.message = .framesDropped(.with { $0.first = lastSent + 1; $0.last = entry.sequence - 1 }) })
      }
      state.withLock { state in
        state.stats.framesSent += 1
        state.stats.bytesSent += entry.packet.data.count
      }
      try await writer.write(Self.frameMessage(entry))
      lastSent = entry.sequence
    }
  }

  /// Capture is over and everything is acked, or we stopped waiting.
  private static func isFinished(_ state: State) -> Bool {
    (state.captureEnded || state.stopping) && (state.outbox.isEmpty || state.drainDeadlinePassed)
  }

  /// The response side: accepted, then acks.
  private func consume(_ response: StreamingClientResponse<Framerelay_V1_PublishResponse>, attempt: UInt64) async throws {
    defer {
      state.withLock { if $0.attempt == attempt { $0.responseEnded = true } }
      wake()
    }
    for try await message in response.messages {
      let now = WallClock.monotonicNs()
      switch message.message {
      case .accepted(let accepted):
        state.withLock {
          guard $0.attempt == attempt else { return }
          $0.accepted = accepted
          $0.lastProgressNs = now
        }
      case .ack(let ack):
        state.withLock { state in
          let before = state.outbox.byteCount
          let sent = state.outbox.acknowledge(upTo: ack.sequence)
          state.stats.framesAcked += sent.count
          state.stats.bytesAcked += before - state.outbox.byteCount
          state.lastProgressNs = now
          for sentAt in sent { state.stats.roundTrips.record(Double(now &- sentAt) / 1e6) }
        }
      case .none:
        continue
      }
      wake()
    }
  }

  // MARK: Waiting

  /// Waits until `condition` holds. A stream's side (`whileStreaming`) also stops waiting, with
  /// StreamEnded, when the stream's response side has ended.
  private func waitUntil(whileStreaming: Bool = true, _ condition: @escaping @Sendable (State) -> Bool) async throws {
    let ended: @Sendable (State) -> Bool = { whileStreaming && $0.responseEnded }
    while true {
      let ready = try state.withLock { state throws -> Bool in
        if condition(state) { return true }
        if ended(state) { throw StreamEnded() }
        return false
      }
      if ready { return }
      let id = state.withLock { state -> UInt64 in
        state.nextWaiter += 1
        return state.nextWaiter
      }
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
          let now = state.withLock { state -> Bool in
            if condition(state) || ended(state) || Task.isCancelled { return true }
            state.waiters[id] = continuation
            return false
          }
          if now { continuation.resume() }
        }
      } onCancel: {
        let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
        waiter?.resume(throwing: CancellationError())
      }
      try Task.checkCancellation()
    }
  }

  /// Something changed: every waiter looks at its condition again.
  private func wake() {
    let waiters = state.withLock { state in
      defer { state.waiters.removeAll() }
      return state.waiters.values
    }
    for waiter in waiters { waiter.resume() }
  }

  private func armDrainDeadline(_ timeout: Duration) {
    Task {
      try? await Task.sleep(for: timeout)
      state.withLock { $0.drainDeadlinePassed = true }
      wake()
    }
  }

  private var isDone: Bool { state.withLock { Self.isFinished($0) } }

  private func sleep(seconds: Double) async throws {
    let deadline = WallClock.monotonicNs() + UInt64(seconds * 1e9)
    while WallClock.monotonicNs() < deadline && !isDone {
      try await Task.sleep(for: .milliseconds(50))
    }
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

  private static func frameMessage(_ entry: Outbox.Entry) -> Framerelay_V1_PublishRequest {
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

  var snapshot: (stats: PublishStats, inFlight: Int, queued: Int, elapsedSeconds: Double) {
    state.withLock {
      ($0.stats, $0.outbox.inFlightCount, $0.outbox.count, Double(WallClock.monotonicNs() - startedNs) / 1e9)
    }
  }

  public var summary: PublishSummary {
    let (stats, _, _, seconds) = snapshot
    return PublishSummary(
      device: configuration.device.rawValue, framesCaptured: stats.framesCaptured,
      framesDropped: stats.framesDropped, framesSent: stats.framesSent, framesAcked: stats.framesAcked,
      bytesSent: stats.bytesSent, seconds: seconds, fps: seconds > 0 ? Double(stats.framesAcked) / seconds : 0,
      ackRttP50Ms: stats.roundTrips.percentile(50) ?? 0, ackRttP99Ms: stats.roundTrips.percentile(99) ?? 0,
      reconnects: stats.reconnects, reconnectMs: stats.reconnectMs)
  }

  /// One connection per stream attempt: a fresh connect after a partition heals is faster and more
  /// predictable than waiting out a half-dead connection's own back-off.
  private func makeTransport() throws -> HTTP2ClientTransport.Posix {
    var config = HTTP2ClientTransport.Posix.Config.defaults
    config.http2.targetWindowSize = 16 << 20
    config.http2.maxFrameSize = 1 << 20
    config.backoff = .init(initial: .milliseconds(250), max: .seconds(2), multiplier: 2, jitter: 0.2)
    config.connection.keepalive = .init(time: .seconds(5), timeout: .seconds(3), allowWithoutCalls: true)
    return try HTTP2ClientTransport.Posix(
      target: .dns(host: configuration.server.host, port: configuration.server.port),
      transportSecurity: .plaintext, config: config)
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
    case .v4l2: self = .v4L2
    case .file: self = .file
    case .testPattern: self = .testPattern
    case .synthetic: self = .synthetic
    }
  }
}

/// Resumes a continuation with the first outcome offered and ignores the rest.
private final class FirstOutcome: Sendable {
  private let continuation: Mutex<CheckedContinuation<Void, any Error>?>

  init(_ continuation: CheckedContinuation<Void, any Error>) {
    self.continuation = Mutex(continuation)
  }

  func resume(with result: Result<Void, any Error>) {
    let first = continuation.withLock { continuation in
      defer { continuation = nil }
      return continuation
    }
    first?.resume(with: result)
  }
}
